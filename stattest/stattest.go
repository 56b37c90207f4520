// Package stattest holds the significance tests meshlens decides with: the
// rollout judge's comparison of a canary with its stable version and the
// graph diff's comparison of two windows use the same functions, so a change
// the diff calls significant is one the judge would have acted on.
package stattest

import (
	"math"
	"slices"

	"gonum.org/v1/gonum/mathext"
	"gonum.org/v1/gonum/stat/distuv"
)

// ProportionTest compares error rates, H1: p1 > p2. z is the pooled
// two-proportion z statistic, reported for reading; p is the one-sided
// p-value of Fisher's exact test. Errors are rare events and the judge runs
// on small windows, where the normal approximation is too eager: 6 errors in
// 330 requests against none in 300 gives p≈0.003 by z but 0.02 exactly, and
// across many canaries that difference is the difference between zero and
// several false rollbacks.
func ProportionTest(x1, n1, x2, n2 uint64) (z, p float64) {
	if n1 == 0 || n2 == 0 {
		return 0, 1
	}
	p1, p2 := float64(x1)/float64(n1), float64(x2)/float64(n2)
	pool := float64(x1+x2) / float64(n1+n2)
	se := math.Sqrt(pool * (1 - pool) * (1/float64(n1) + 1/float64(n2)))
	if se == 0 {
		return 0, 1 // both all-success or both all-failure: no evidence of a difference
	}
	z = (p1 - p2) / se
	return z, FisherUpper(x1, n1, x1+x2, n1+n2)
}

// FisherUpper is P(X >= x) for X hypergeometric: n draws from a population
// of size total holding k errors — the one-sided p-value of Fisher's exact
// test that the first group has more errors than chance would give it.
func FisherUpper(x, n, k, total uint64) float64 {
	lchoose := func(a, b uint64) float64 {
		la, _ := math.Lgamma(float64(a) + 1)
		lb, _ := math.Lgamma(float64(b) + 1)
		lab, _ := math.Lgamma(float64(a-b) + 1)
		return la - lb - lab
	}
	hi := min(n, k)
	var p float64
	for i := x; i <= hi; i++ {
		if k-i > total-n {
			continue // impossible: more errors left than the other group holds
		}
		p += math.Exp(lchoose(k, i) + lchoose(total-k, n-i) - lchoose(total, n))
	}
	return min(p, 1)
}

// BinomialUpper is P(X >= x) for X ~ Binomial(n, p): the one-sided exact
// p-value of H1 "the true rate is above p" after x events in n trials.
func BinomialUpper(x, n uint64, p float64) float64 {
	switch {
	case x == 0:
		return 1
	case x > n:
		return 0
	case p <= 0:
		return 0 // any event disproves a rate of zero
	case p >= 1:
		return 1
	}
	// P(X >= x) = I_p(x, n-x+1), the regularised incomplete beta function.
	return mathext.RegIncBeta(float64(x), float64(n-x+1), p)
}

// DifferenceLowerBound is the lower end of the one-sided 1-alpha confidence
// interval for p1 - p2 by Newcombe's hybrid score method (his method 10):
// Wilson intervals for each rate, combined. Unlike the Wald interval it
// stays sensible for rare events and small samples, where the judge lives.
func DifferenceLowerBound(x1, n1, x2, n2 uint64, alpha float64) float64 {
	if n1 == 0 || n2 == 0 {
		return -1 // no evidence: the widest bound (JSON has no infinity)
	}
	z := distuv.UnitNormal.Quantile(1 - alpha)
	p1, p2 := float64(x1)/float64(n1), float64(x2)/float64(n2)
	l1, _ := Wilson(p1, float64(n1), z)
	_, u2 := Wilson(p2, float64(n2), z)
	return p1 - p2 - math.Sqrt((p1-l1)*(p1-l1)+(u2-p2)*(u2-p2))
}

// Wilson is the Wilson score interval of a proportion p observed in n
// trials, at normal quantile z.
func Wilson(p, n, z float64) (lo, hi float64) {
	z2 := z * z
	centre := (p + z2/(2*n)) / (1 + z2/n)
	half := z * math.Sqrt(p*(1-p)/n+z2/(4*n*n)) / (1 + z2/n)
	return max(centre-half, 0), min(centre+half, 1)
}

// MannWhitney is the one-sided Mann-Whitney U test of H1: x tends to be
// larger than y, with the normal approximation and tie correction. effect is
// U/(n1·n2), the probability that a sample of x exceeds one of y.
func MannWhitney(x, y []float64) (u, z, p, effect float64) {
	n1, n2 := len(x), len(y)
	if n1 == 0 || n2 == 0 {
		return 0, 0, 1, 0.5
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
	var rankX, tieSum float64
	for i := 0; i < len(all); {
		j := i
		for j < len(all) && all[j].v == all[i].v {
			j++
		}
		rank := float64(i+j+1) / 2 // mean of ranks i+1..j
		t := float64(j - i)
		tieSum += t*t*t - t
		for k := i; k < j; k++ {
			if all[k].fromX {
				rankX += rank
			}
		}
		i = j
	}
	fn1, fn2 := float64(n1), float64(n2)
	u = rankX - fn1*(fn1+1)/2
	n := fn1 + fn2
	sigma := math.Sqrt(fn1 * fn2 / 12 * ((n + 1) - tieSum/(n*(n-1))))
	effect = u / (fn1 * fn2)
	if sigma == 0 {
		return u, 0, 1, effect
	}
	z = (u - fn1*fn2/2 - 0.5) / sigma // continuity correction toward H0
	return u, z, 1 - distuv.UnitNormal.CDF(z), effect
}

// BinomialLower is P(X <= x) for X ~ Binomial(n, p): the one-sided exact
// p-value of H1 "the true rate is below p".
func BinomialLower(x, n uint64, p float64) float64 {
	if x >= n {
		return 1
	}
	return BinomialUpper(n-x, n, 1-p) // X <= x exactly when n-X >= n-x
}

// RateChange compares two Poisson counts observed over exposures t1 and t2
// (seconds): n2 over t2 against n1 over t1. Conditional on n1+n2, n2 is
// binomial with p = t2/(t1+t2) when the rates are equal, so the exact
// binomial test applies. up is the one-sided p-value of H1: the second rate
// is higher; down of H1: it is lower.
func RateChange(n1 uint64, t1 float64, n2 uint64, t2 float64) (up, down float64) {
	if n1+n2 == 0 || t1 <= 0 || t2 <= 0 {
		return 1, 1
	}
	p := t2 / (t1 + t2)
	return BinomialUpper(n2, n1+n2, p), BinomialLower(n2, n1+n2, p)
}

// ProportionChange compares the share x2/n2 with x1/n1 by Fisher's exact
// test, each direction one-sided: up is the p-value of H1: the second share
// is higher, down of H1: it is lower.
func ProportionChange(x1, n1, x2, n2 uint64) (up, down float64) {
	if n1 == 0 || n2 == 0 || x1 > n1 || x2 > n2 {
		return 1, 1
	}
	k, total := x1+x2, n1+n2
	return FisherUpper(x2, n2, k, total), FisherUpper(x1, n1, k, total)
}

// TwoSided turns the two one-sided p-values of a test into the two-sided
// one (twice the smaller, at most 1) and the direction it points: +1 when
// up is the smaller, -1 when down is, 0 when neither is below 1.
func TwoSided(up, down float64) (p float64, direction int) {
	switch {
	case up < down:
		return min(1, 2*up), 1
	case down < up:
		return min(1, 2*down), -1
	}
	return min(1, 2*up), 0
}
