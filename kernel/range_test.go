package kernel

import (
	"math"
	"testing"
)

// solveEverywhere runs a copy of the tile on every implementation, checks that they
// agree bit for bit (mask, figures, D_T) and returns the generic result.
func solveEverywhere(t *testing.T, p Params, w []float32, rows, cols int) Tile {
	t.Helper()
	var first Tile
	for x, impl := range impls() {
		k, err := New(impl, p)
		if err != nil {
			t.Fatal(err)
		}
		ts := []Tile{{W: w, Rows: rows, Cols: cols, D: make([]float32, rows*cols)}}
		if err := k.Run(ts); err != nil {
			t.Fatal(err)
		}
		if err := k.checkGuards(); err != nil {
			t.Fatal(err)
		}
		if x == 0 {
			first = ts[0]
			continue
		}
		if !sameStats(first.Stats, ts[0].Stats) || first.Stats.Clamped != ts[0].Stats.Clamped ||
			first.Stats.Unsolved != ts[0].Stats.Unsolved || string(first.Mask) != string(ts[0].Mask) {
			t.Fatalf("%v differs from generic: %+v vs %+v", impl, ts[0].Stats, first.Stats)
		}
		for i := range first.D {
			if math.Float32bits(first.D[i]) != math.Float32bits(ts[0].D[i]) {
				t.Fatalf("%v: D_T[%d] differs from generic", impl, i)
			}
		}
	}
	return first
}

func rangeParams() []Params {
	sp := DefaultParams()
	sp.Mode, sp.Sparsity = Sparsity, 0.5
	return []Params{DefaultParams(), sp}
}

// TestHugeWeight puts one weight of 1e20..3e38 into Gaussian tiles. Every
// tile must be solved (finite D_T, kills, no row or column dead), and every
// tile that needed the range fallback must have the same mask whatever the
// outlier's size (beyond the clamp its size no longer counts), which is
// also the mask of the whole tile scaled down by a power of two.
func TestHugeWeight(t *testing.T) {
	huge := []float32{1e20, 1e21, 1e22, 1e23, 1e25, 1e28, 1e30, 1e35, 1e38, 3e38, math.MaxFloat32}
	seeds := []uint64{1, 2}
	if testing.Short() || raceEnabled {
		seeds = seeds[:1]
	}
	for _, p := range rangeParams() {
		for _, seed := range seeds {
			var ref *Tile
			fallbacks := 0
			for _, big := range huge {
				w := genW(newRNG(7000+seed), gauss, 256, 256)
				w[4321] = big
				tl := solveEverywhere(t, p, w, 256, 256)
				st := tl.Stats
				t.Logf("%v seed %d w=%g: killed %d of %d, clamped %d", p.Mode, seed, big, st.Killed, st.Weights, st.Clamped)
				if st.Unsolved || st.Killed == 0 || !finite(st.MeanD) {
					t.Fatalf("%v w=%g: tile not pruned: %+v", p.Mode, big, st)
				}
				for _, d := range tl.D {
					if !finite(d) {
						t.Fatalf("%v w=%g: non-finite D_T", p.Mode, big)
					}
				}
				if p.Mode == Natural {
					aliveCheck(t, "huge", &tl)
				}
				if st.Clamped == 0 {
					continue
				}
				fallbacks++
				if ref == nil {
					ref = &tl
				} else if string(tl.Mask) != string(ref.Mask) {
					t.Errorf("%v w=%g: clamped mask differs from the one at a smaller outlier", p.Mode, big)
				}
				scaled := make([]float32, len(w))
				for x := range w {
					scaled[x] = w[x] * 0x1p-100
				}
				if s := solveEverywhere(t, p, scaled, 256, 256); string(s.Mask) != string(tl.Mask) || s.Stats.Clamped != st.Clamped {
					t.Errorf("%v w=%g: the tile scaled by 2^-100 has another mask", p.Mode, big)
				}
			}
			if fallbacks == 0 {
				t.Errorf("%v seed %d: no outlier needed the range fallback; the test no longer covers it", p.Mode, seed)
			}
		}
	}
}

// TestWholeTileScaledToFloatMax scales a whole tile by powers of two up to
// a maximum just under MaxFloat32 (and down): mask and D_T must stay the
// same bit for bit, as the power-of-two rescale of the set-up is exact.
func TestWholeTileScaledToFloatMax(t *testing.T) {
	const rows, cols = 128, 200
	w := genW(newRNG(7100), laplace, rows, cols)
	var maxW float32
	for _, v := range w {
		maxW = max(maxW, abs32(v))
	}
	top := 127 - math.Ilogb(float64(maxW)) // 2^top * maxW < 2^128
	for _, p := range rangeParams() {
		base := solveEverywhere(t, p, w, rows, cols)
		for _, e := range []int{-100, -64, 20, 65, 100, top - 1, top} {
			s := make([]float32, len(w))
			for x := range w {
				s[x] = float32(math.Ldexp(float64(w[x]), e))
			}
			got := solveEverywhere(t, p, s, rows, cols)
			if string(got.Mask) != string(base.Mask) || got.Stats.Killed != base.Stats.Killed || got.Stats.Clamped != 0 {
				t.Errorf("%v 2^%d: mask differs (killed %d, want %d)", p.Mode, e, got.Stats.Killed, base.Stats.Killed)
			}
			for x := range got.D {
				if math.Float32bits(got.D[x]) != math.Float32bits(base.D[x]) {
					t.Fatalf("%v 2^%d: D_T[%d] differs", p.Mode, e, x)
				}
			}
		}
	}
}

// TestTinyRows gives some rows weights 1e-30 times the others: the other
// end of the range, which must be solved too.
func TestTinyRows(t *testing.T) {
	for _, p := range rangeParams() {
		for _, tiny := range []float32{1e-20, 1e-30, 1e-38} {
			w := genW(newRNG(7200), gauss, 256, 256)
			for x := 0; x < 64*256; x++ {
				w[x] *= tiny
			}
			tl := solveEverywhere(t, p, w, 256, 256)
			t.Logf("%v tiny %g: %+v", p.Mode, tiny, tl.Stats)
			if tl.Stats.Unsolved || tl.Stats.Killed == 0 || !finite(tl.Stats.MeanD) {
				t.Errorf("%v tiny %g: tile not pruned: %+v", p.Mode, tiny, tl.Stats)
			}
		}
	}
}
