package kernel

import (
	"math"
	"testing"
)

// Tests of the AVX2 set-up, check and finish helpers against the Go loops,
// on the values the dynamics rarely produce: signed zeros, NaN, infinities,
// subnormals, foods that need the power-of-two rescale, -0 activations.

// TestErrorsSameOnEveryPath: the vectorised weight check finds every bad
// weight the Go loop finds (in the 8-wide part and in the tail of a row, with
// strides) and the error names the same element.
func TestErrorsSameOnEveryPath(t *testing.T) {
	if !Available(AVX2) {
		t.Skip("avx2 not available")
	}
	nan, inf := float32(math.NaN()), float32(math.Inf(1))
	for _, cols := range []int{1, 7, 8, 13, 16, 256} {
		for _, stride := range []int{cols, cols + 3} {
			rows := 5
			for _, pos := range []int{0, cols - 1, cols / 2, (rows-1)*stride + cols - 1} {
				for _, bad := range []float32{nan, inf, -inf, 3e38} {
					w := make([]float32, (rows-1)*stride+cols)
					for x := range w {
						w[x] = float32(x%7) - 3
					}
					w[pos] = bad
					var act []float32
					if bad == 3e38 {
						act = make([]float32, cols)
						for i := range act {
							act[i] = 10
						}
					}
					errs := make([]string, len(cImpls())+1)
					for x, impl := range append([]Impl{Generic}, cImpls()...) {
						k, err := New(impl, DefaultParams())
						if err != nil {
							t.Fatal(err)
						}
						err = k.Run([]Tile{{W: w, Rows: rows, Cols: cols, Stride: stride, Act: act}})
						if err == nil {
							t.Fatalf("%s cols %d stride %d pos %d value %g: no error", impl, cols, stride, pos, bad)
						}
						errs[x] = err.Error()
					}
					for x, impl := range cImpls() {
						if errs[0] != errs[x+1] {
							t.Fatalf("cols %d stride %d pos %d: generic %q, %v %q", cols, stride, pos, errs[0], impl, errs[x+1])
						}
					}
				}
			}
		}
	}
}

// TestFinishSpecialValues compares the two finishes on fabricated D_T holding
// signed zeros, NaN, infinities and subnormals (masks, survivors, rescues,
// figures, Tile.D), in both modes.
func TestFinishSpecialValues(t *testing.T) {
	if !Available(AVX2) {
		t.Skip("avx2 not available")
	}
	rng := newRNG(5)
	specials := []float32{0, float32(math.Copysign(0, -1)), float32(math.NaN()), float32(math.Inf(1)), 1e-45, 1e-40, 3e38}
	for trial := 0; trial < 300; trial++ {
		R, C := 1+rng.IntN(40), 1+rng.IntN(40)
		if trial%10 == 0 {
			R, C = 1+rng.IntN(256), 1+rng.IntN(256)
		}
		cp := pad8(C)
		stride := C + rng.IntN(3)
		w := make([]float32, (R-1)*stride+C)
		d := make([]float32, R*cp)
		var sum float32
		n := 0
		for o := 0; o < R; o++ {
			for i := 0; i < C; i++ {
				if rng.IntN(6) != 0 {
					w[o*stride+i] = float32(rng.NormFloat64())
					if w[o*stride+i] == 0 {
						w[o*stride+i] = 1
					}
					n++
				}
				v := float32(rng.ExpFloat64())
				if trial%3 == 0 && rng.IntN(5) == 0 {
					v = specials[rng.IntN(len(specials))]
				}
				if trial%3 == 1 && rng.IntN(3) == 0 {
					v = specials[rng.IntN(2)] // signed zeros only: the range is 0
				}
				d[o*cp+i] = v
				if v <= math.MaxFloat32 {
					sum += v
				}
			}
		}
		if n == 0 {
			continue
		}
		for _, mode := range []Mode{Natural, Sparsity} {
			p := DefaultParams()
			if mode == Sparsity {
				p.Mode, p.Sparsity = Sparsity, 0.4
			}
			var got [2]Tile
			for x, impl := range []Impl{Generic, AVX2} {
				k, err := New(impl, p)
				if err != nil {
					t.Fatal(err)
				}
				k.arena = append([]float32(nil), d...)
				mask := make([]byte, R*C)
				for x := range mask {
					mask[x] = 0xA5 * byte(x&1) // the AVX2 finish must write every byte
				}
				if impl == Generic {
					clear(mask)
				}
				outD := make([]float32, R*C)
				for x := range outD {
					outD[x] = -7
				}
				if impl == Generic {
					clear(outD)
				}
				tl := Tile{W: w, Rows: R, Cols: C, Stride: stride, Mask: mask, D: outD}
				tl.Stats = TileStats{Weights: R * C, ZeroBefore: R*C - n}
				j := job{D: 0, Rows: int32(R), Cp: int32(cp), Rp: int32(pad8(R)), N: int32(n), SumD: sum}
				k.finish(&tl, &j, 0)
				got[x] = tl
			}
			g, a := &got[0], &got[1]
			if !sameStats(g.Stats, a.Stats) {
				t.Fatalf("trial %d %v %dx%d: stats generic %+v, avx2 %+v", trial, mode, R, C, g.Stats, a.Stats)
			}
			if string(g.Mask) != string(a.Mask) {
				t.Fatalf("trial %d %v %dx%d: masks differ", trial, mode, R, C)
			}
			for x := range g.D {
				if math.Float32bits(g.D[x]) != math.Float32bits(a.D[x]) {
					t.Fatalf("trial %d %v: Tile.D[%d] generic %g, avx2 %g", trial, mode, x, g.D[x], a.D[x])
				}
			}
		}
	}
}

// TestPrepareSpecialValues runs every path on tiles whose food needs the
// power-of-two rescale, holds subnormals and signed zeros, or has -0 and 0
// activations, and compares masks, figures and D_T bit for bit.
func TestPrepareSpecialValues(t *testing.T) {
	if !Available(AVX2) {
		t.Skip("avx2 not available")
	}
	rng := newRNG(9)
	negz := float32(math.Copysign(0, -1))
	for trial := 0; trial < 60; trial++ {
		R, C := 1+rng.IntN(70), 1+rng.IntN(70)
		stride := C + rng.IntN(4)
		w := make([]float32, (R-1)*stride+C)
		scale := []float32{1, 1e30, 1e-30, 1e-42}[trial%4]
		for o := 0; o < R; o++ {
			for i := 0; i < C; i++ {
				v := float32(rng.NormFloat64()) * scale
				switch rng.IntN(8) {
				case 0:
					v = 0
				case 1:
					v = negz
				case 2:
					v = 1e-45
				}
				w[o*stride+i] = v
			}
		}
		var act []float32
		if trial%3 != 0 {
			act = make([]float32, C)
			for i := range act {
				act[i] = float32(rng.ExpFloat64())
				switch rng.IntN(6) {
				case 0:
					act[i] = 0
				case 1:
					act[i] = negz
				}
			}
		}
		for _, mode := range []Mode{Natural, Sparsity} {
			for _, c := range cImpls() {
				prepareSpecialCompare(t, trial, mode, c, w, R, C, stride, act)
			}
		}
	}
}

// prepareSpecialCompare runs Generic and the C implementation c on one tile
// of TestPrepareSpecialValues and compares masks, figures and D_T.
func prepareSpecialCompare(t *testing.T, trial int, mode Mode, c Impl, w []float32, R, C, stride int, act []float32) {
	t.Helper()
	p := DefaultParams()
	if mode == Sparsity {
		p.Mode, p.Sparsity = Sparsity, 0.3
	}
	var got [2]Tile
	var dt [2][]uint32
	for x, impl := range []Impl{Generic, c} {
		k, err := New(impl, p)
		if err != nil {
			t.Fatal(err)
		}
		k.debugD = func(_ int, d []float32, _ int) {
			for _, v := range d {
				dt[x] = append(dt[x], math.Float32bits(v))
			}
		}
		ts := []Tile{{W: w, Rows: R, Cols: C, Stride: stride, Act: act, D: make([]float32, R*C)}}
		if err := k.Run(ts); err != nil {
			t.Fatal(err)
		}
		if err := k.checkGuards(); err != nil {
			t.Fatal(err)
		}
		got[x] = ts[0]
	}
	g, a := &got[0], &got[1]
	if !sameStats(g.Stats, a.Stats) || string(g.Mask) != string(a.Mask) || len(dt[0]) != len(dt[1]) {
		t.Fatalf("trial %d %v %dx%d: generic %+v, %v %+v (or masks differ)", trial, mode, R, C, g.Stats, c, a.Stats)
	}
	for x := range dt[0] {
		if dt[0][x] != dt[1][x] {
			t.Fatalf("trial %d %v %v: arena D_T[%d] differs", trial, mode, c, x)
		}
	}
	for x := range g.D {
		if math.Float32bits(g.D[x]) != math.Float32bits(a.D[x]) {
			t.Fatalf("trial %d %v %v: Tile.D[%d] differs", trial, mode, c, x)
		}
	}
}

// cImpls returns the C implementations available here.
func cImpls() []Impl {
	var out []Impl
	for _, i := range []Impl{AVX2, AVX512} {
		if Available(i) {
			out = append(out, i)
		}
	}
	return out
}

// sameStats compares figures with the floats bit for bit (NaN equals NaN).
func sameStats(a, b TileStats) bool {
	f := func(x, y float32) bool { return math.Float32bits(x) == math.Float32bits(y) }
	return a.Weights == b.Weights && a.ZeroBefore == b.ZeroBefore && a.Killed == b.Killed && a.Rescued == b.Rescued &&
		f(a.MeanD, b.MeanD) && f(a.MinD, b.MinD) && f(a.MaxD, b.MaxD) && f(a.Threshold, b.Threshold)
}
