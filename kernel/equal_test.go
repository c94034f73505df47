package kernel

import (
	"fmt"
	"math"
	"math/big"
	"math/rand/v2"
	"testing"
)

// exactFMA32 is a*b+c rounded once to float32, computed with math/big.
func exactFMA32(a, b, c float32) float32 {
	x := new(big.Float).SetPrec(0).SetMode(big.ToNearestEven)
	x.SetFloat64(float64(a))
	x.SetPrec(400)
	x.Mul(x, new(big.Float).SetFloat64(float64(b)))
	x.Add(x, new(big.Float).SetFloat64(float64(c)))
	if x.Sign() == 0 {
		// The sign of an exact zero follows IEEE: +0 unless both terms are -0.
		return float32(float64(a)*float64(b) + float64(c))
	}
	f, _ := x.Float32()
	return f
}

func TestFMA32(t *testing.T) {
	rng := newRNG(11)
	cases := [][3]float32{
		// 1+2^-11+2^-24 plus a tiny term: double rounding through float64 would round to even.
		{1 + 1.0/4096, 1 + 1.0/4096, 0x1p-70},
		{1 + 1.0/4096, 1 + 1.0/4096, -0x1p-70},
		{-(1 + 1.0/4096), 1 + 1.0/4096, 0x1p-70},
		{0, 5, -0}, {-0, 5, 0}, {1e-30, 1e-30, 1e-45}, {3, 1.0 / 3, -1}, {0x1p-149, 0.5, 0},
	}
	for i := 0; i < 200000; i++ {
		r := func() float32 {
			return float32(math.Ldexp(rng.Float64()*2-1, rng.IntN(40)-20))
		}
		a, b := r(), r()
		c := -float32(float64(a) * float64(b)) // near-cancellation
		if i%2 == 0 {
			c = r()
		}
		if i%3 == 0 {
			c = float32(float64(c) * 0x1p-30)
		}
		cases = append(cases, [3]float32{a, b, c})
	}
	for _, x := range cases {
		got := fma32(x[0], x[1], x[2])
		if want := exactFMA32(x[0], x[1], x[2]); math.Float32bits(got) != math.Float32bits(want) {
			t.Fatalf("fma32(%g, %g, %g) = %g, exact %g", x[0], x[1], x[2], got, want)
		}
		if haveCFMA {
			if want := cFMA(x[0], x[1], x[2]); math.Float32bits(got) != math.Float32bits(want) {
				t.Fatalf("fma32(%g, %g, %g) = %g, C fmaf %g", x[0], x[1], x[2], got, want)
			}
		}
	}
	// The first case is the classic double-rounding trap: check it is one.
	x := cases[0]
	if float32(math.FMA(float64(x[0]), float64(x[1]), float64(x[2]))) == fma32(x[0], x[1], x[2]) {
		t.Error("test case 0 does not exercise double rounding")
	}
}

// shapesUnderTest returns every R and every C in 1..256 at least once, a grid
// of edge sizes and random shapes.
func shapesUnderTest(short bool) [][2]int {
	var s [][2]int
	edge := []int{1, 2, 3, 5, 7, 8, 9, 15, 16, 17, 31, 33, 64, 65, 127, 128, 129, 200, 255, 256}
	if short {
		edge = []int{1, 3, 8, 9, 17, 64, 129, 256}
	}
	for _, r := range edge {
		for _, c := range edge {
			s = append(s, [2]int{r, c})
		}
	}
	if short {
		return s
	}
	perm := newRNG(5).Perm(256)
	for r := 1; r <= 256; r++ {
		s = append(s, [2]int{r, perm[r-1] + 1})
	}
	return s
}

// guardedTile builds a tile inside a larger buffer: a stride wider than the
// tile and NaN guards before, between and after its rows, plus guard bytes
// after the mask. The kernel would fail on a NaN it read.
type guardedTile struct {
	buf     []float32
	maskBuf []byte
	tile    Tile
}

const guardBefore = 16

func newGuarded(rng *rand.Rand, rows, cols int, kind int) *guardedTile {
	stride := cols + rng.IntN(9)
	buf := make([]float32, guardBefore+rows*stride+16)
	for i := range buf {
		buf[i] = float32(math.NaN())
	}
	d := dist(kind % 3)
	for o := 0; o < rows; o++ {
		for i := 0; i < cols; i++ {
			v := sample(rng, d)
			switch {
			case kind%5 == 3 && rng.IntN(4) == 0: // partly zero
				v = 0
			case kind%7 == 4 && o%3 == 1: // zero rows
				v = 0
			case kind%11 == 5: // very different row scales
				v *= float32(math.Exp2(float64(o%13) - 6))
			}
			buf[guardBefore+o*stride+i] = v
		}
	}
	g := &guardedTile{buf: buf, maskBuf: make([]byte, rows*cols+32)}
	for i := range g.maskBuf {
		g.maskBuf[i] = 0xA5
	}
	g.tile = Tile{W: buf[guardBefore : guardBefore+(rows-1)*stride+cols], Rows: rows, Cols: cols, Stride: stride, Mask: g.maskBuf[:rows*cols]}
	if kind%4 == 2 {
		g.tile.Act = make([]float32, cols)
		for i := range g.tile.Act {
			g.tile.Act[i] = float32(rng.ExpFloat64())
		}
	}
	return g
}

func (g *guardedTile) check() error {
	t := &g.tile
	for x := 0; x < guardBefore; x++ {
		if !math.IsNaN(float64(g.buf[x])) {
			return fmt.Errorf("guard before W overwritten")
		}
	}
	for o := 0; o < t.Rows; o++ {
		for i := t.Cols; i < t.Stride && (o < t.Rows-1 || i < t.Cols); i++ {
			if !math.IsNaN(float64(g.buf[guardBefore+o*t.Stride+i])) {
				return fmt.Errorf("guard in row %d overwritten", o)
			}
		}
	}
	for _, v := range g.buf[guardBefore+(t.Rows-1)*t.Stride+t.Cols:] {
		if !math.IsNaN(float64(v)) {
			return fmt.Errorf("guard after W overwritten")
		}
	}
	for _, b := range g.maskBuf[t.Rows*t.Cols:] {
		if b != 0xA5 {
			return fmt.Errorf("guard after Mask overwritten")
		}
	}
	if &t.Mask[0] != &g.maskBuf[0] {
		return fmt.Errorf("mask reallocated although it was long enough")
	}
	return nil
}

type result struct {
	mask  []byte
	stats TileStats
	d     []uint32 // bits of D_T, rows x cols
}

// runAll runs impl (with params p) on copies of the tiles and returns the
// results, checking the guards of the caller's buffers and of the arena.
func runAll(t *testing.T, impl Impl, p Params, gts []*guardedTile) []result {
	t.Helper()
	k, err := New(impl, p)
	if err != nil {
		t.Fatal(err)
	}
	res := make([]result, len(gts))
	k.debugD = func(tile int, d []float32, cp int) {
		tl := &gts[tile].tile
		bits := make([]uint32, tl.Rows*tl.Cols)
		for o := 0; o < tl.Rows; o++ {
			for i := 0; i < tl.Cols; i++ {
				bits[o*tl.Cols+i] = math.Float32bits(d[o*cp+i])
			}
		}
		res[tile].d = bits
	}
	tiles := make([]Tile, len(gts))
	for i, g := range gts {
		for x := range g.tile.Mask {
			g.tile.Mask[x] = 0xA5
		}
		tiles[i] = g.tile
	}
	if err := k.Run(tiles); err != nil {
		t.Fatal(err)
	}
	if err := k.checkGuards(); err != nil {
		t.Fatal(err)
	}
	for i, g := range gts {
		g.tile.Mask = tiles[i].Mask
		if err := g.check(); err != nil {
			t.Fatalf("%s: tile %d (%dx%d): %v", impl, i, g.tile.Rows, g.tile.Cols, err)
		}
		res[i].mask = append([]byte(nil), tiles[i].Mask...)
		res[i].stats = tiles[i].Stats
	}
	return res
}

// TestImplsBitIdentical compares every available implementation with the
// pure-Go reference, bit for bit (mask, figures and D_T), on seeded tiles of
// every row count and every column count from 1 to 256 (and a grid of edge
// shapes), with strides, zeros, activation scales and guard values.
func TestImplsBitIdentical(t *testing.T) {
	short := testing.Short() || raceEnabled
	shapes := shapesUnderTest(short)
	rng := newRNG(21)
	var gts []*guardedTile
	for x, s := range shapes {
		gts = append(gts, newGuarded(rng, s[0], s[1], x))
	}
	p := DefaultParams()
	ps := DefaultParams()
	ps.Mode, ps.Sparsity = Sparsity, 0.37
	for _, params := range []Params{p, ps} {
		ref := runAll(t, Generic, params, gts)
		for _, impl := range []Impl{AVX2, AVX512} {
			if !Available(impl) {
				t.Logf("%s not available, only the reference ran", impl)
				continue
			}
			got := runAll(t, impl, params, gts)
			for i := range gts {
				tl := &gts[i].tile
				if got[i].stats != ref[i].stats {
					t.Fatalf("%s %v tile %d %dx%d: stats %+v, reference %+v", impl, params.Mode, i, tl.Rows, tl.Cols, got[i].stats, ref[i].stats)
				}
				for x := range ref[i].d {
					if got[i].d[x] != ref[i].d[x] {
						t.Fatalf("%s tile %d %dx%d: D_T[%d] = %g, reference %g", impl, i, tl.Rows, tl.Cols, x,
							math.Float32frombits(got[i].d[x]), math.Float32frombits(ref[i].d[x]))
					}
				}
				if string(got[i].mask) != string(ref[i].mask) {
					t.Fatalf("%s tile %d %dx%d: mask differs from the reference", impl, i, tl.Rows, tl.Cols)
				}
			}
		}
		// Sanity of the reference itself: masks are 0/1, kills only on non-zero
		// weights, counts match, D_T finite and >= 0.
		for i, g := range gts {
			tl := &g.tile
			n, zero := 0, 0
			for o := 0; o < tl.Rows; o++ {
				for c := 0; c < tl.Cols; c++ {
					m := ref[i].mask[o*tl.Cols+c]
					w := tl.W[o*tl.Stride+c]
					if m > 1 || m == 1 && w == 0 {
						t.Fatalf("tile %d: mask %d on weight %g", i, m, w)
					}
					n += int(m)
					if w == 0 {
						zero++
					}
				}
			}
			if n != ref[i].stats.Killed || zero != ref[i].stats.ZeroBefore || ref[i].stats.Weights != tl.Rows*tl.Cols {
				t.Fatalf("tile %d: stats %+v, counted killed %d zero %d", i, ref[i].stats, n, zero)
			}
			for _, b := range ref[i].d {
				if v := math.Float32frombits(b); !(v >= 0 && v <= math.MaxFloat32) {
					t.Fatalf("tile %d: D_T value %g", i, v)
				}
			}
		}
	}
}

// TestImplsBitIdenticalParams compares every available implementation with
// the reference, bit for bit, under constants other than the defaults:
// exponents with an integer part above 1 and with every fraction bit down to
// 2^-8 (the longest square-root chain), a single step and a single CG
// iteration, longer runs, h = 1 and small theta, on a grid of edge shapes.
func TestImplsBitIdenticalParams(t *testing.T) {
	rng := newRNG(23)
	var gts []*guardedTile
	for x, s := range shapesUnderTest(true) {
		if x%3 == 0 || s[0] == 256 {
			gts = append(gts, newGuarded(rng, s[0], s[1], x))
		}
	}
	var sets []Params
	for _, c := range []struct {
		g     float32
		T, K  int
		h     float32
		theta float32
	}{
		{1, 1, 1, 0.5, 0.29},
		{2.5, 2, 3, 1, 0.5},
		{3 + 255.0/256, 3, 1, 0.25, 0.1},
		{1 + 1.0/256, 7, 4, 0.75, 0.9},
		{1.625, 4, 2, 0.5, 0.29},
	} {
		p := DefaultParams()
		p.G, p.Steps, p.CGIters, p.H, p.Theta = c.g, c.T, c.K, c.h, c.theta
		sets = append(sets, p)
	}
	ps := sets[2]
	ps.Mode, ps.Sparsity = Sparsity, 0.6
	sets = append(sets, ps)
	for _, params := range sets {
		ref := runAll(t, Generic, params, gts)
		for _, impl := range cImpls() {
			got := runAll(t, impl, params, gts)
			for i := range gts {
				tl := &gts[i].tile
				if !sameStats(got[i].stats, ref[i].stats) || string(got[i].mask) != string(ref[i].mask) {
					t.Fatalf("%s %v tile %d %dx%d: stats %+v, reference %+v (or masks differ)", impl, params, i, tl.Rows, tl.Cols, got[i].stats, ref[i].stats)
				}
				for x := range ref[i].d {
					if got[i].d[x] != ref[i].d[x] {
						t.Fatalf("%s %v tile %d %dx%d: D_T[%d] = %g, reference %g", impl, params, i, tl.Rows, tl.Cols, x,
							math.Float32frombits(got[i].d[x]), math.Float32frombits(ref[i].d[x]))
					}
				}
			}
		}
	}
}

// TestMaskStride runs every implementation on tiles whose mask is a window
// of a wider buffer (MaskStride) and checks that the mask equals the
// unstrided one element for element, that no byte between or after the
// rows is written, and that a mask too short or too narrow is refused.
func TestMaskStride(t *testing.T) {
	rng := newRNG(33)
	var gts []*guardedTile
	for x, s := range shapesUnderTest(true) {
		gts = append(gts, newGuarded(rng, s[0], s[1], x))
	}
	ps := DefaultParams()
	ps.Mode, ps.Sparsity = Sparsity, 0.37
	for _, params := range []Params{DefaultParams(), ps} {
		for _, impl := range []Impl{Generic, AVX2, AVX512} {
			if !Available(impl) {
				continue
			}
			want := runAll(t, impl, params, gts)
			k, err := New(impl, params)
			if err != nil {
				t.Fatal(err)
			}
			tiles := make([]Tile, len(gts))
			bufs := make([][]byte, len(gts))
			for i, g := range gts {
				tl := g.tile
				tl.MaskStride = tl.Cols + 1 + i%40
				bufs[i] = make([]byte, (tl.Rows-1)*tl.MaskStride+tl.Cols+16)
				for x := range bufs[i] {
					bufs[i][x] = 0xA5
				}
				tl.Mask = bufs[i][:(tl.Rows-1)*tl.MaskStride+tl.Cols]
				tiles[i] = tl
			}
			if err := k.Run(tiles); err != nil {
				t.Fatal(err)
			}
			for i := range tiles {
				tl := &tiles[i]
				if tl.Stats != want[i].stats {
					t.Fatalf("%s %v tile %d %dx%d: stats %+v with a mask stride, %+v without", impl, params.Mode, i, tl.Rows, tl.Cols, tl.Stats, want[i].stats)
				}
				for x, b := range bufs[i] {
					o, c := x/tl.MaskStride, x%tl.MaskStride
					if o < tl.Rows && c < tl.Cols {
						if b != want[i].mask[o*tl.Cols+c] {
							t.Fatalf("%s %v tile %d %dx%d: mask (%d,%d) = %d with a stride, %d without", impl, params.Mode, i, tl.Rows, tl.Cols, o, c, b, want[i].mask[o*tl.Cols+c])
						}
					} else if b != 0xA5 {
						t.Fatalf("%s %v tile %d %dx%d: byte %d outside the tile written", impl, params.Mode, i, tl.Rows, tl.Cols, x)
					}
				}
			}
		}
	}
	g := gts[len(gts)-1]
	for _, c := range []struct {
		name   string
		stride int
		short  int
	}{{"narrow", g.tile.Cols - 1, 0}, {"short", g.tile.Cols + 3, 1}} {
		tl := g.tile
		tl.MaskStride = c.stride
		tl.Mask = make([]byte, (tl.Rows-1)*max(c.stride, 0)+tl.Cols-c.short)
		k, _ := New(Generic, DefaultParams())
		if err := k.Run([]Tile{tl}); err == nil {
			t.Errorf("%s mask (stride %d, %d bytes) accepted", c.name, c.stride, len(tl.Mask))
		}
	}
}
