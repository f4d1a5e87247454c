package diagnose

// dbRules read PostgreSQL evidence (and pool metrics).
func dbRules() []Rule {
	return []Rule{}
}
