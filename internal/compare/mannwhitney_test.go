package compare

import (
	"math"
	"math/rand/v2"
	"testing"
)

func TestMannWhitneyKnownValues(t *testing.T) {
	tests := []struct {
		name  string
		x, y  []float64
		wantU float64
		wantP float64
		tol   float64
	}{
		{
			// Only 1 of C(10,5) = 252 orderings is this extreme; two-sided 2/252.
			name: "separated", x: []float64{1, 2, 3, 4, 5}, y: []float64{6, 7, 8, 9, 10},
			wantU: 0, wantP: 2.0 / 252, tol: 1e-12,
		},
		{
			// R's ?wilcox.test example: W = 35, one-sided p = 0.1272
			// (confirmed by enumerating all C(15,10) orderings).
			name:  "R documentation example",
			x:     []float64{0.80, 0.83, 1.89, 1.04, 1.45, 1.38, 1.91, 1.64, 0.73, 1.46},
			y:     []float64{1.15, 0.88, 0.90, 0.74, 1.21},
			wantU: 35, wantP: 0.2544122544122544, tol: 1e-9,
		},
		{
			// Ties: normal approximation with tie and continuity corrections,
			// computed independently (R gives the same with exact = FALSE).
			name: "ties", x: []float64{1, 2, 2, 3, 4}, y: []float64{2, 3, 4, 4, 5, 6},
			wantU: 5.5, wantP: 0.09337724360511555, tol: 1e-9,
		},
		{
			name: "ties within a side", x: []float64{10, 10, 10, 11}, y: []float64{10, 10, 12, 12, 13},
			wantU: 5, wantP: 0.2249158840159619, tol: 1e-9,
		},
		{
			name: "all equal", x: []float64{3, 3, 3}, y: []float64{3, 3},
			wantU: 3, wantP: 1, tol: 0,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u, p := MannWhitney(tt.x, tt.y)
			if u != tt.wantU {
				t.Errorf("U = %v, want %v", u, tt.wantU)
			}
			if math.Abs(p-tt.wantP) > tt.tol {
				t.Errorf("p = %.12g, want %.12g", p, tt.wantP)
			}
			// Swapping the samples mirrors U and keeps p.
			u2, p2 := MannWhitney(tt.y, tt.x)
			if want := float64(len(tt.x)*len(tt.y)) - u; u2 != want {
				t.Errorf("swapped U = %v, want %v", u2, want)
			}
			if math.Abs(p2-p) > 1e-12 {
				t.Errorf("swapped p = %v, want %v", p2, p)
			}
		})
	}
}

func TestMannWhitneyEmpty(t *testing.T) {
	if _, p := MannWhitney(nil, []float64{1}); !math.IsNaN(p) {
		t.Fatalf("p = %v for an empty sample, want NaN", p)
	}
}

// The exact distribution must sum to one and agree with the normal
// approximation where both apply.
func TestExactAgreesWithNormal(t *testing.T) {
	for _, n := range [][2]int{{3, 4}, {10, 10}, {20, 35}, {49, 49}} {
		d := uDistribution(n[0], n[1])
		sum := 0.0
		for _, p := range d {
			sum += p
		}
		if math.Abs(sum-1) > 1e-9 {
			t.Errorf("%v: distribution sums to %v", n, sum)
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 20 {
		n1, n2 := 30+rng.IntN(15), 30+rng.IntN(15)
		x, y := make([]float64, n1), make([]float64, n2)
		for j := range x {
			x[j] = rng.Float64()
		}
		for j := range y {
			y[j] = rng.Float64() + 0.1*float64(i%4)
		}
		u, exact := MannWhitney(x, y)
		approx := normalP(u, float64(n1), float64(n2), 0)
		if math.Abs(exact-approx) > 0.01 {
			t.Errorf("n=%d,%d U=%v: exact p %v, normal %v", n1, n2, u, exact, approx)
		}
	}
}
