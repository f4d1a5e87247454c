package capacity

import (
	"fmt"
	"math"
	"slices"
	"strings"
)

// Thresholds of the USL fit's reliability. docs/capacity.md explains them.
const (
	// uslMinPoints: three parameters need more than three points to leave
	// any degree of freedom for judging the fit (issue 5: "fewer than 4
	// distinct steps").
	uslMinPoints = 4
	// uslMinR2: below 0.9 the model explains too little of the variation in
	// throughput to be quoted (issue 5 brief).
	uslMinR2 = 0.9
	// uslMinSpan: points whose concurrency spans less than a factor of 2
	// cannot separate σ from κ; any coefficient would be an extrapolation.
	uslMinSpan = 2.0
	// uslDistinct: concurrencies within 2% of each other are one level.
	uslDistinct = 0.02
	// uslPeakReach: a peak N* beyond twice the highest measured concurrency
	// is an extrapolation, not an observation.
	uslPeakReach = 2.0
	// uslMaxKappa bounds κ: κ = 1 already halves throughput at N = 2.
	uslMaxKappa = 1.0
	// uslAtBound: σ within this of 1, or κ within this relative distance of
	// uslMaxKappa, sits at its bound.
	uslAtBound = 1e-3
)

// Point is one (concurrency, throughput) observation.
type Point struct {
	N float64 // concurrency: requests in flight (Little's law)
	X float64 // throughput, requests per second
}

// USLFit is a Universal Scalability Law fit,
// X(N) = λN / (1 + σ(N−1) + κN(N−1)).
type USLFit struct {
	Sigma  float64 // contention: the serial share
	Kappa  float64 // coherency: the cost of keeping N workers consistent
	Lambda float64 // throughput of one worker without contention, req/s
	R2     float64
	Points int // distinct concurrency levels fitted
	// Reliable is false when the numbers must not be trusted; Note says why.
	Reliable bool
	Note     string
	// MaxN is the highest concurrency fitted; peaks beyond uslPeakReach x
	// MaxN are extrapolations.
	MaxN float64
}

// Throughput is the model's X(n).
func (f USLFit) Throughput(n float64) float64 { return uslX(f.Lambda, f.Sigma, f.Kappa, n) }

func uslX(lambda, sigma, kappa, n float64) float64 {
	return lambda * n / (1 + sigma*(n-1) + kappa*n*(n-1))
}

// PeakN is N* = sqrt((1−σ)/κ), the concurrency of the highest throughput;
// +Inf when κ = 0 (throughput never falls).
func (f USLFit) PeakN() float64 {
	if f.Kappa <= 0 {
		return math.Inf(1)
	}
	return math.Sqrt(math.Max(1-f.Sigma, 0) / f.Kappa)
}

// PeakThroughput is X(N*), or the asymptote λ/σ when κ = 0 (+Inf when σ is
// 0 too). ok is false when the fit is unreliable or the peak lies beyond
// uslPeakReach times the highest measured concurrency (an extrapolation).
func (f USLFit) PeakThroughput() (x float64, ok bool) {
	n := f.PeakN()
	if math.IsInf(n, 1) {
		x = math.Inf(1)
		if f.Sigma > 0 {
			x = f.Lambda / f.Sigma
		}
	} else {
		x = f.Throughput(n)
	}
	return x, f.Reliable && n <= uslPeakReach*f.MaxN
}

// Coefficient names a USL coefficient for Without.
type Coefficient int

// Coefficients.
const (
	Contention Coefficient = iota // σ
	Coherency                     // κ
)

// Without estimates the peak throughput if the named coefficient were
// removed (a fix that ends contention, or coherency traffic), for
// expected-gain estimates. ok is false when the fit is unreliable or the
// answer is unbounded (removing κ with σ = 0, or σ with κ = 0).
func (f USLFit) Without(c Coefficient) (x float64, ok bool) {
	if !f.Reliable {
		return 0, false
	}
	g := f
	switch c {
	case Contention:
		g.Sigma = 0
	case Coherency:
		g.Kappa = 0
	default:
		return 0, false
	}
	g.MaxN = math.Inf(1) // a hypothetical: its peak is an estimate by definition
	x, _ = g.PeakThroughput()
	return x, !math.IsInf(x, 0) && !math.IsNaN(x)
}

// FitUSL fits the USL to points by least squares on throughput: λ in closed
// form for given (σ, κ), (σ, √κ) by Nelder–Mead (nelderMead) from several starts, σ in
// [0, 1] and κ in [0, uslMaxKappa]. It never fails: a fit that cannot be
// trusted says so in Reliable and Note.
func FitUSL(points []Point) USLFit {
	pts := make([]Point, 0, len(points))
	for _, p := range points {
		if finite(p.N) && finite(p.X) && p.N > 0 && p.X > 0 {
			pts = append(pts, p)
		}
	}
	slices.SortFunc(pts, func(a, b Point) int { return cmpFloat(a.N, b.N) })
	f := USLFit{Points: distinctN(pts)}
	var why []string
	if len(pts) < 3 {
		f.Note = fmt.Sprintf("%d usable points: nothing to fit", len(pts))
		if len(pts) > 0 {
			f.Lambda = pts[0].X / pts[0].N
			f.MaxN = pts[len(pts)-1].N
		}
		return f
	}
	f.MaxN = pts[len(pts)-1].N

	sigma, kappa := fitSigmaKappa(pts)
	f.Sigma, f.Kappa = sigma, kappa
	f.Lambda = bestLambda(pts, sigma, kappa)
	f.R2 = rSquared(pts, f)
	if !finite(f.R2) || !finite(f.Lambda) {
		// magnitudes beyond float64 (only from nonsensical input)
		f.R2 = 0
		why = append(why, "the fit overflowed")
	}

	if f.Points < uslMinPoints {
		why = append(why, fmt.Sprintf("%d distinct concurrency levels (need %d)", f.Points, uslMinPoints))
	}
	if span := f.MaxN / pts[0].N; span < uslMinSpan {
		why = append(why, fmt.Sprintf("concurrency spans only %.2gx (need %gx)", span, uslMinSpan))
	}
	if f.R2 < uslMinR2 {
		why = append(why, fmt.Sprintf("r² %.2f below %g", f.R2, uslMinR2))
	}
	if f.Sigma >= 1-uslAtBound {
		why = append(why, "σ at its bound 1")
	}
	if f.Kappa >= uslMaxKappa*(1-uslAtBound) {
		why = append(why, fmt.Sprintf("κ at its bound %g", uslMaxKappa))
	}
	f.Reliable = len(why) == 0
	if !f.Reliable {
		f.Note = strings.Join(why, "; ")
		return f
	}
	if n := f.PeakN(); n > uslPeakReach*f.MaxN {
		if math.IsInf(n, 1) {
			f.Note = "no coherency cost measured: the peak is not defined"
		} else {
			f.Note = fmt.Sprintf("peak N*=%.3g lies beyond %gx the highest measured concurrency %.3g: an extrapolation", n, uslPeakReach, f.MaxN)
		}
	}
	return f
}

func cmpFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// distinctN counts concurrency levels more than uslDistinct apart (pts sorted).
func distinctN(pts []Point) int {
	n, last := 0, 0.0
	for _, p := range pts {
		if n == 0 || p.N > last*(1+uslDistinct) {
			n++
			last = p.N
		}
	}
	return n
}

// bestLambda is the least-squares λ for given σ, κ: X = λ g(N) is linear in λ.
func bestLambda(pts []Point, sigma, kappa float64) float64 {
	var num, den float64
	for _, p := range pts {
		g := uslX(1, sigma, kappa, p.N)
		num += p.X * g
		den += g * g
	}
	if den == 0 {
		return 0
	}
	return num / den
}

func sse(pts []Point, lambda, sigma, kappa float64) float64 {
	var s float64
	for _, p := range pts {
		d := p.X - uslX(lambda, sigma, kappa, p.N)
		s += d * d
	}
	return s
}

func rSquared(pts []Point, f USLFit) float64 {
	var mean float64
	for _, p := range pts {
		mean += p.X
	}
	mean /= float64(len(pts))
	var tot float64
	for _, p := range pts {
		tot += (p.X - mean) * (p.X - mean)
	}
	if tot == 0 {
		return 0 // throughput did not vary: nothing was explained
	}
	return 1 - sse(pts, f.Lambda, f.Sigma, f.Kappa)/tot
}

// clampSK maps optimiser coordinates to bounded (σ, κ): σ clamped to [0, 1],
// κ = s² clamped to [0, uslMaxKappa].
func clampSK(x []float64) (sigma, kappa float64) {
	sigma = math.Min(math.Max(x[0], 0), 1)
	kappa = math.Min(x[1]*x[1], uslMaxKappa)
	return sigma, kappa
}

// fitSigmaKappa minimises the squared error over (σ, κ) with λ profiled out.
func fitSigmaKappa(pts []Point) (float64, float64) {
	var scale float64
	for _, p := range pts {
		scale += p.X * p.X
	}
	obj := func(x []float64) float64 {
		s, k := clampSK(x)
		// a small penalty outside the box keeps the simplex near it
		out := math.Max(-x[0], 0) + math.Max(x[0]-1, 0)
		return sse(pts, bestLambda(pts, s, k), s, k)/scale + out*out
	}
	starts := [][]float64{{0.05, 0.01}, {0.01, 0.001}, {0.3, 0.1}}
	if s, k, ok := linearStart(pts); ok {
		starts = append([][]float64{{s, math.Sqrt(k)}}, starts...)
	}
	best, bestF := []float64{0, 0}, obj([]float64{0, 0})
	for _, x0 := range starts {
		x, fx := nelderMead(obj, x0)
		if fx < bestF {
			best, bestF = x, fx
		}
	}
	return clampSK(best)
}

// linearStart solves the linearised USL N/X = a + b(N−1) + cN(N−1) by
// ordinary least squares (a = 1/λ, b = σ/λ, c = κ/λ): a starting point.
func linearStart(pts []Point) (sigma, kappa float64, ok bool) {
	var m [3][4]float64
	for _, p := range pts {
		row := [3]float64{1, p.N - 1, p.N * (p.N - 1)}
		y := p.N / p.X
		for i := range 3 {
			for j := range 3 {
				m[i][j] += row[i] * row[j]
			}
			m[i][3] += row[i] * y
		}
	}
	// Gaussian elimination with partial pivoting
	for c := range 3 {
		piv := c
		for r := c + 1; r < 3; r++ {
			if math.Abs(m[r][c]) > math.Abs(m[piv][c]) {
				piv = r
			}
		}
		if math.Abs(m[piv][c]) < 1e-300 {
			return 0, 0, false
		}
		m[c], m[piv] = m[piv], m[c]
		for r := range 3 {
			if r == c {
				continue
			}
			k := m[r][c] / m[c][c]
			for j := c; j < 4; j++ {
				m[r][j] -= k * m[c][j]
			}
		}
	}
	a, b, cc := m[0][3]/m[0][0], m[1][3]/m[1][1], m[2][3]/m[2][2]
	if !(a > 0) || !finite(b) || !finite(cc) {
		return 0, 0, false
	}
	return math.Min(math.Max(b/a, 0), 1), math.Min(math.Max(cc/a, 0), uslMaxKappa), true
}

// Nelder–Mead settings: the standard coefficients (Nelder & Mead 1965;
// reflection 1, expansion 2, contraction ½, shrink ½), an initial simplex of
// nmStep around the start, and a stop when the simplex's values agree to
// nmTol or after nmMaxIter iterations (a 2-D problem converges in a few
// hundred).
const (
	nmStep    = 0.05
	nmTol     = 1e-15
	nmMaxIter = 2000
)

// nelderMead minimises f over two dimensions from x0. Hand-written rather
// than gonum/optimize: that package drags gonum/stat and golang.org/x/tools
// into the module for a 2-D problem.
func nelderMead(f func([]float64) float64, x0 []float64) ([]float64, float64) {
	type vertex struct {
		x  [2]float64
		fx float64
	}
	eval := func(x [2]float64) vertex { return vertex{x, f(x[:])} }
	s := [3]vertex{
		eval([2]float64{x0[0], x0[1]}),
		eval([2]float64{x0[0] + nmStep, x0[1]}),
		eval([2]float64{x0[0], x0[1] + nmStep}),
	}
	lerp := func(a, b [2]float64, t float64) [2]float64 { // a + t(b−a)
		return [2]float64{a[0] + t*(b[0]-a[0]), a[1] + t*(b[1]-a[1])}
	}
	for range nmMaxIter {
		slices.SortFunc(s[:], func(a, b vertex) int { return cmpFloat(a.fx, b.fx) })
		if math.Abs(s[2].fx-s[0].fx) <= nmTol*(math.Abs(s[0].fx)+nmTol) {
			break
		}
		c := lerp(s[0].x, s[1].x, 0.5) // centroid of the best two
		r := eval(lerp(c, s[2].x, -1))
		switch {
		case r.fx < s[0].fx:
			if e := eval(lerp(c, s[2].x, -2)); e.fx < r.fx {
				s[2] = e
			} else {
				s[2] = r
			}
		case r.fx < s[1].fx:
			s[2] = r
		default:
			var k vertex
			if r.fx < s[2].fx {
				k = eval(lerp(c, r.x, 0.5)) // outside contraction
			} else {
				k = eval(lerp(c, s[2].x, 0.5)) // inside contraction
			}
			if k.fx < math.Min(r.fx, s[2].fx) {
				s[2] = k
				continue
			}
			for i := 1; i < 3; i++ { // shrink towards the best
				s[i] = eval(lerp(s[0].x, s[i].x, 0.5))
			}
		}
	}
	slices.SortFunc(s[:], func(a, b vertex) int { return cmpFloat(a.fx, b.fx) })
	return s[0].x[:], s[0].fx
}
