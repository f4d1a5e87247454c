package diagnose

import (
	"fmt"
	"math"

	"github.com/chokepoint/chokepoint/internal/report"
)

// Rules returns every rule, in the order they run. Each family of rules
// registers in its own file (rules_process.go, rules_client.go, rules_db.go, rules_trace.go).
func Rules() []Rule {
	var rules []Rule
	rules = append(rules, processRules()...)
	rules = append(rules, clientRules()...)
	rules = append(rules, dbRules()...)
	rules = append(rules, traceRules()...)
	return rules
}

// capacityBase is the throughput a gain estimate starts from: the highest
// rate that met the objective, else the best achieved rate.
func capacityBase(in *Input) float64 {
	if in.Capacity.MaxRPS != nil {
		return *in.Capacity.MaxRPS
	}
	best := 0.0
	for _, s := range in.Steps {
		best = math.Max(best, s.AchievedRPS)
	}
	return best
}

// amdahlGain estimates capacity when a share s of the limiting resource's
// work is made `speedup` times cheaper: capacity / (1 - s + s/speedup).
func amdahlGain(in *Input, share, speedup float64, what string) *report.ExpectedGain {
	base := capacityBase(in)
	if base <= 0 || share <= 0 || share >= 1 || speedup <= 1 {
		return nil
	}
	to := base / (1 - share + share/speedup)
	return &report.ExpectedGain{Metric: "max_rps", From: round1(base), To: round1(to),
		Method: fmt.Sprintf("Amdahl's law: %s is %.0f%% of the limiting resource; making it %.0fx cheaper leaves %.0f%% of the work per request", what, share*100, speedup, (1-share+share/speedup)*100)}
}

func round1(v float64) float64 { return math.Round(v*10) / 10 }

func pct(v float64) string { return fmt.Sprintf("%.0f%%", v*100) }

// clamp01 bounds v to [0,1].
func clamp01(v float64) float64 { return math.Max(0, math.Min(1, v)) }
