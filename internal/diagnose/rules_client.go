package diagnose

// clientRules read client-side evidence (latency, errors, bytes) with the
// process and machine.
func clientRules() []Rule {
	return []Rule{
		concurrencyLimit{},
		ioDisk{},
		netConnectionLimit{},
		errorsUnderLoad{},
		payloadLarge{},
	}
}
