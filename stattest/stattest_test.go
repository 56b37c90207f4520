package stattest

import (
	"math"
	"testing"
)

func TestMannWhitneyMatchesKnownValues(t *testing.T) {
	// x entirely above y: U = n1*n2, effect 1.
	u, _, p, eff := MannWhitney([]float64{10, 11, 12, 13, 14, 15, 16, 17}, []float64{1, 2, 3, 4, 5, 6, 7, 8})
	if u != 64 || eff != 1 || p > 0.001 {
		t.Fatalf("separated samples: U=%v effect=%v p=%v", u, eff, p)
	}
	// Identical samples: U = n1*n2/2, no evidence.
	same := []float64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	u, z, p, eff := MannWhitney(same, same)
	if u != 50 || eff != 0.5 || z > 0 || p < 0.5 {
		t.Fatalf("identical samples: U=%v z=%v p=%v effect=%v", u, z, p, eff)
	}
	// Textbook example (ties): x={1,2,2,3}, y={2,3,4,5}: ranks of x 1,3,3,5.5 → R=12.5, U=2.5.
	u, _, _, _ = MannWhitney([]float64{1, 2, 2, 3}, []float64{2, 3, 4, 5})
	if u != 2.5 {
		t.Fatalf("tied samples: U=%v, want 2.5", u)
	}
}

func TestProportionTest(t *testing.T) {
	for _, tc := range []struct {
		name           string
		x1, n1, x2, n2 uint64
		wantSig        bool
	}{
		{"10% vs 1% on 1000 each is significant", 100, 1000, 10, 1000, true},
		{"2% vs 1% on 100 each is not", 2, 100, 1, 100, false},
		{"no errors on either side", 0, 500, 0, 500, false},
		{"candidate better than stable", 1, 1000, 50, 1000, false},
		{"6 rare errors against none is chance, exactly", 6, 330, 0, 300, false},
		{"15 errors against none is not", 15, 330, 0, 300, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			z, p := ProportionTest(tc.x1, tc.n1, tc.x2, tc.n2)
			if (p < 0.01) != tc.wantSig || math.IsNaN(z) {
				t.Fatalf("z=%v p=%v, want significant=%v", z, p, tc.wantSig)
			}
		})
	}
}

func TestFisherUpperMatchesHandComputedTails(t *testing.T) {
	// 2x2 table [[3,1],[1,3]]: P(X>=3) = (16+1)/70.
	if got := FisherUpper(3, 4, 4, 8); math.Abs(got-17.0/70) > 1e-12 {
		t.Fatalf("P(X>=3) = %v, want %v", got, 17.0/70)
	}
	// All errors in the first group of 330 out of 630: (330/630)^6 roughly.
	if got := FisherUpper(6, 330, 6, 630); got < 0.015 || got > 0.025 {
		t.Fatalf("P(X>=6) = %v, want about 0.02", got)
	}
	if got := FisherUpper(0, 10, 3, 20); math.Abs(got-1) > 1e-12 {
		t.Fatalf("P(X>=0) = %v, want 1", got)
	}
}

func TestBinomialUpperMatchesClosedForms(t *testing.T) {
	for _, tc := range []struct {
		x, n uint64
		p    float64
		want float64
	}{
		{0, 10, 0.3, 1},
		{1, 10, 0.3, 1 - math.Pow(0.7, 10)},
		{10, 10, 0.3, math.Pow(0.3, 10)},
		{2, 30, 0.05, 1 - math.Pow(0.95, 30) - 30*0.05*math.Pow(0.95, 29)},
		{1, 10, 0, 0},
		{11, 10, 0.5, 0},
	} {
		if got := BinomialUpper(tc.x, tc.n, tc.p); math.Abs(got-tc.want) > 1e-12 {
			t.Errorf("P(X>=%d | n=%d, p=%v) = %v, want %v", tc.x, tc.n, tc.p, got, tc.want)
		}
	}
}

func TestDifferenceLowerBoundMatchesNewcombe(t *testing.T) {
	// Newcombe (1998), Statistics in Medicine 17:873, table II example:
	// 56/70 vs 48/80, 95% interval by method 10 is 0.0524 to 0.3339.
	if got := DifferenceLowerBound(56, 70, 48, 80, 0.025); math.Abs(got-0.0524) > 0.00005 {
		t.Fatalf("lower bound %v, want 0.0524", got)
	}
	if got := DifferenceLowerBound(1, 0, 1, 10, 0.01); got != -1 {
		t.Fatalf("no candidate requests: lower bound %v, want -1", got)
	}
}

func TestBinomialLowerMirrorsUpper(t *testing.T) {
	// P(X <= 0) for Binomial(10, 0.3) is 0.7^10; P(X <= 10) is 1.
	if got := BinomialLower(0, 10, 0.3); math.Abs(got-math.Pow(0.7, 10)) > 1e-12 {
		t.Fatalf("P(X<=0) = %v, want %v", got, math.Pow(0.7, 10))
	}
	if got := BinomialLower(10, 10, 0.3); got != 1 {
		t.Fatalf("P(X<=10) = %v, want 1", got)
	}
	// P(X <= x) + P(X >= x+1) = 1.
	if got := BinomialLower(3, 20, 0.25) + BinomialUpper(4, 20, 0.25); math.Abs(got-1) > 1e-12 {
		t.Fatalf("tails add to %v, want 1", got)
	}
}

func TestRateChangeDetectsRealChangesOnly(t *testing.T) {
	for _, tc := range []struct {
		name            string
		n1, n2          uint64
		t1, t2          float64
		wantDir         int
		wantSignificant bool
	}{
		{"doubling over ten minutes each", 6000, 12000, 600, 600, 1, true},
		{"halving", 6000, 3000, 600, 600, -1, true},
		{"3% more is noise at this volume", 600, 618, 600, 600, 1, false},
		{"same rate over windows of different length", 600, 1200, 600, 1200, 0, false},
		{"nothing on either side", 0, 0, 600, 600, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, dir := TwoSided(RateChange(tc.n1, tc.t1, tc.n2, tc.t2))
			if (p < 0.01) != tc.wantSignificant || (tc.wantSignificant && dir != tc.wantDir) {
				t.Fatalf("p=%v direction=%d, want significant=%v direction %d", p, dir, tc.wantSignificant, tc.wantDir)
			}
		})
	}
}

func TestProportionChangeIsFisherBothWays(t *testing.T) {
	up, down := ProportionChange(10, 1000, 100, 1000)
	if up > 1e-6 || down < 0.99 {
		t.Fatalf("1%% -> 10%%: up p=%v down p=%v", up, down)
	}
	// The same table read the other way round swaps the tails.
	up2, down2 := ProportionChange(100, 1000, 10, 1000)
	if math.Abs(up2-down) > 1e-12 || math.Abs(down2-up) > 1e-12 {
		t.Fatalf("swapped groups: up %v down %v, want %v %v", up2, down2, down, up)
	}
	if _, p := ProportionTest(100, 1000, 10, 1000); math.Abs(p-up) > 1e-12 {
		t.Fatalf("ProportionTest p=%v, want the same Fisher tail %v", p, up)
	}
}
