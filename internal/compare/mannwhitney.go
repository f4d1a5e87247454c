package compare

import (
	"math"
	"slices"
)

// exactMaxN: below this many values on each side and without ties, the
// p-value comes from the exact distribution of U (as R's wilcox.test does
// below 50); above it the normal approximation is within 1e-3 of exact.
const exactMaxN = 50

// MannWhitney is the two-sided Mann–Whitney U test of x against y: u is
// U of x (the number of pairs where x's value is larger, ties counting
// one half) and p the probability of a U at least as far from n·m/2 if
// both samples came from one distribution. Small samples without ties use
// the exact distribution; otherwise the normal approximation with tie and
// continuity corrections. With an empty sample p is NaN.
func MannWhitney(x, y []float64) (u, p float64) {
	n1, n2 := len(x), len(y)
	if n1 == 0 || n2 == 0 {
		return math.NaN(), math.NaN()
	}
	type obs struct {
		v     float64
		fromX bool
	}
	all := make([]obs, 0, n1+n2)
	for _, v := range x {
		all = append(all, obs{v, true})
	}
	for _, v := range y {
		all = append(all, obs{v, false})
	}
	slices.SortFunc(all, func(a, b obs) int {
		switch {
		case a.v < b.v:
			return -1
		case a.v > b.v:
			return 1
		}
		return 0
	})
	// Average ranks over ties; collect tie sizes for the variance correction.
	rankSumX, tieTerm, ties := 0.0, 0.0, false
	for i := 0; i < len(all); {
		j := i + 1
		for j < len(all) && all[j].v == all[i].v {
			j++
		}
		rank := float64(i+j+1) / 2 // ranks i+1 .. j, averaged
		for k := i; k < j; k++ {
			if all[k].fromX {
				rankSumX += rank
			}
		}
		if t := float64(j - i); t > 1 {
			ties = true
			tieTerm += t*t*t - t
		}
		i = j
	}
	fn1, fn2 := float64(n1), float64(n2)
	u = rankSumX - fn1*(fn1+1)/2
	if !ties && n1 < exactMaxN && n2 < exactMaxN {
		return u, exactP(u, n1, n2)
	}
	return u, normalP(u, fn1, fn2, tieTerm)
}

// normalP is the two-sided p-value of U = u by the normal approximation
// with the tie correction (tieTerm = Σ t³−t over groups of t tied values)
// and a continuity correction, as R's wilcox.test computes it.
func normalP(u, n1, n2, tieTerm float64) float64 {
	n := n1 + n2
	sigma := math.Sqrt(n1 * n2 / 12 * ((n + 1) - tieTerm/(n*(n-1))))
	if sigma == 0 || math.IsNaN(sigma) {
		return 1 // every value is the same
	}
	z := u - n1*n2/2
	if z != 0 {
		z -= math.Copysign(0.5, z)
	}
	z /= sigma
	return math.Min(1, math.Erfc(math.Abs(z)/math.Sqrt2)) // 2·(1 − Φ(|z|))
}

// exactP is the two-sided p-value of U = u for samples of n1 and n2
// without ties: 2·min(P(U ≤ u), P(U ≥ u)), from the distribution of U
// counted by the recurrence f(n1, n2, k) = f(n1−1, n2, k−n2) + f(n1, n2−1, k).
func exactP(u float64, n1, n2 int) float64 {
	dist := uDistribution(n1, n2)
	k := int(math.Round(u))
	lower, upper := 0.0, 0.0
	for i, pr := range dist {
		if i <= k {
			lower += pr
		}
		if i >= k {
			upper += pr
		}
	}
	return math.Min(1, 2*math.Min(lower, upper))
}

// uDistribution returns P(U = k) for k = 0..n1·n2 under the null
// hypothesis, computed in probabilities (not counts) so that it cannot
// overflow: P_{i,j}(k) = i/(i+j)·P_{i−1,j}(k−j) + j/(i+j)·P_{i,j−1}(k).
func uDistribution(n1, n2 int) []float64 {
	size := n1*n2 + 1
	// prev[j] holds P_{i-1,j}; cur[j] builds P_{i,j}.
	prev := make([][]float64, n2+1)
	for j := range prev {
		prev[j] = make([]float64, size)
		prev[j][0] = 1 // with no x values, U = 0
	}
	for i := 1; i <= n1; i++ {
		cur := make([][]float64, n2+1)
		cur[0] = make([]float64, size)
		cur[0][0] = 1 // with no y values, U = 0
		for j := 1; j <= n2; j++ {
			c := make([]float64, size)
			fi, fj := float64(i), float64(j)
			wx, wy := fi/(fi+fj), fj/(fi+fj)
			// The largest value is from x (probability i/(i+j)): it beats
			// all j values of y.
			for k := j; k < size; k++ {
				c[k] += wx * prev[j][k-j]
			}
			for k := 0; k < size; k++ {
				c[k] += wy * cur[j-1][k]
			}
			cur[j] = c
		}
		prev = cur
	}
	return prev[n2]
}
