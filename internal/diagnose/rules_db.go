package diagnose

// dbRules read PostgreSQL evidence (and client-side pool metrics).
func dbRules() []Rule {
	return []Rule{
		dbMissingIndex{},
		dbSlowQuery{},
		dbPoolExhausted{},
		dbLockWait{},
		dbConnectionsSaturated{},
		dbConnectionChurn{},
	}
}
