package diagnose

// processRules read the process, the Go runtime and client-side evidence.
func processRules() []Rule {
	return []Rule{
		cpuHotPath{},
		cpuThrottled{},
		gcPressure{},
		memoryLeak{},
		lockContention{},
	}
}
