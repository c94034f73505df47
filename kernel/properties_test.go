package kernel

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/golden.json")

// impls returns the implementations available here (Generic first).
func impls() []Impl {
	out := []Impl{Generic}
	for _, i := range []Impl{AVX2, AVX512} {
		if Available(i) {
			out = append(out, i)
		}
	}
	return out
}

// fastest is the implementation used by the statistical property tests (all
// implementations are bit-identical, see TestImplsBitIdentical).
func fastest(t *testing.T, p Params) *Kernel {
	t.Helper()
	k, err := New(Auto, p)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func gaussTiles(seed uint64, d dist, count, rows, cols int) []Tile {
	rng := newRNG(seed)
	ts := make([]Tile, count)
	for i := range ts {
		ts[i] = Tile{W: genW(rng, d, rows, cols), Rows: rows, Cols: cols}
	}
	return ts
}

func propTiles() int {
	if testing.Short() || raceEnabled {
		return 2
	}
	return 16
}

// The kill rate is killed weights / all weights of the tiles (Rows*Cols each,
// no zero weights in these tiles).
func TestNaturalGaussianKillRate22_2PercentOfAllTileWeights(t *testing.T) {
	ts := gaussTiles(1000, gauss, propTiles(), 256, 256)
	if err := fastest(t, DefaultParams()).Run(ts); err != nil {
		t.Fatal(err)
	}
	kl, w := killFrac(ts)
	rate := 100 * float64(kl) / float64(w)
	t.Logf("Gaussian 256x256 x %d: killed %d of %d tile weights = %.3f %%", len(ts), kl, w, rate)
	if math.Abs(rate-22.2) > 0.5 {
		t.Errorf("kill rate %.3f %% of all %d tile weights, want 22.2 +- 0.5 %%", rate, w)
	}
}

func TestHeavyTailsKillMore(t *testing.T) {
	k := fastest(t, DefaultParams())
	rates := map[dist]float64{}
	for _, d := range []dist{gauss, laplace, student3} {
		ts := gaussTiles(2000+uint64(d), d, propTiles(), 256, 256)
		if err := k.Run(ts); err != nil {
			t.Fatal(err)
		}
		kl, w := killFrac(ts)
		rates[d] = 100 * float64(kl) / float64(w)
		t.Logf("%v: %.3f %% of %d tile weights", d, rates[d], w)
	}
	if !(rates[laplace] > rates[gauss]+1 && rates[student3] > rates[gauss]+1) {
		t.Errorf("heavy tails should kill clearly more than Gaussian: %v", rates)
	}
}

func TestScaleInvariance(t *testing.T) {
	base := gaussTiles(3000, gauss, 4, 256, 256)
	base = append(base, gaussTiles(3001, laplace, 2, 77, 190)...)
	k := fastest(t, DefaultParams())
	if err := k.Run(base); err != nil {
		t.Fatal(err)
	}
	for _, c := range []float32{2, 0.25, 0x1p70, 0x1p-70, 3.7, 0.013, 1234.5} {
		scaled := make([]Tile, len(base))
		for i, b := range base {
			w := make([]float32, len(b.W))
			for x := range w {
				w[x] = b.W[x] * c
			}
			scaled[i] = Tile{W: w, Rows: b.Rows, Cols: b.Cols}
		}
		if err := k.Run(scaled); err != nil {
			t.Fatal(err)
		}
		for i := range base {
			if string(scaled[i].Mask) != string(base[i].Mask) {
				diff := 0
				for x := range base[i].Mask {
					if scaled[i].Mask[x] != base[i].Mask[x] {
						diff++
					}
				}
				t.Errorf("c=%g tile %d: mask differs in %d of %d weights", c, i, diff, len(base[i].Mask))
			}
		}
	}
}

// aliveCheck fails if a row or column that has non-zero weights keeps none.
func aliveCheck(t *testing.T, name string, tl *Tile) {
	t.Helper()
	s := tl.stride()
	for o := 0; o < tl.Rows; o++ {
		nz, alive := 0, 0
		for i := 0; i < tl.Cols; i++ {
			if tl.W[o*s+i] != 0 {
				nz++
				if tl.Mask[o*tl.Cols+i] == 0 {
					alive++
				}
			}
		}
		if nz > 0 && alive == 0 {
			t.Fatalf("%s: row %d dies", name, o)
		}
	}
	for i := 0; i < tl.Cols; i++ {
		nz, alive := 0, 0
		for o := 0; o < tl.Rows; o++ {
			if tl.W[o*s+i] != 0 {
				nz++
				if tl.Mask[o*tl.Cols+i] == 0 {
					alive++
				}
			}
		}
		if nz > 0 && alive == 0 {
			t.Fatalf("%s: column %d dies", name, i)
		}
	}
}

func TestNoRowOrColumnDies(t *testing.T) {
	k := fastest(t, DefaultParams())
	// On full tiles of the test distributions the dynamics alone keep every
	// row and column alive: the alive rule never fires.
	for _, d := range []dist{gauss, laplace, student3} {
		ts := gaussTiles(4000+uint64(d), d, propTiles()/2+1, 256, 256)
		rng := newRNG(4100 + uint64(d))
		ts = append(ts, Tile{W: rowScaled(rng, 256, 256), Rows: 256, Cols: 256})
		if err := k.Run(ts); err != nil {
			t.Fatal(err)
		}
		for i := range ts {
			aliveCheck(t, fmt.Sprintf("%v tile %d", d, i), &ts[i])
			if ts[i].Stats.Rescued != 0 {
				t.Errorf("%v tile %d: the alive rule fired %d times on a full tile", d, i, ts[i].Stats.Rescued)
			}
		}
	}
	// Small and narrow tiles, where the rule is needed, and a tile with one
	// starving row (its weights 1e-4 of the others').
	rng := newRNG(4200)
	var ts []Tile
	for _, s := range [][2]int{{1, 1}, {1, 9}, {9, 1}, {2, 2}, {3, 5}, {5, 3}, {16, 2}, {2, 16}, {40, 256}, {256, 7}} {
		for r := 0; r < 3; r++ {
			ts = append(ts, Tile{W: genW(rng, dist(r), s[0], s[1]), Rows: s[0], Cols: s[1]})
		}
	}
	weak := genW(rng, gauss, 64, 64)
	for i := 0; i < 64; i++ {
		weak[5*64+i] *= 1e-4
	}
	ts = append(ts, Tile{W: weak, Rows: 64, Cols: 64})
	if err := k.Run(ts); err != nil {
		t.Fatal(err)
	}
	rescued := 0
	for i := range ts {
		aliveCheck(t, fmt.Sprintf("small tile %d (%dx%d)", i, ts[i].Rows, ts[i].Cols), &ts[i])
		rescued += ts[i].Stats.Rescued
	}
	// The weak row must still drain its share of the flow, so the mould keeps
	// its tubes where magnitude pruning would remove the whole row.
	wt := &ts[len(ts)-1]
	killed5 := 0
	for i := 0; i < 64; i++ {
		killed5 += int(wt.Mask[5*64+i])
	}
	if wt.Stats.Rescued != 0 || killed5 > 32 {
		t.Errorf("weak row: %d of 64 killed, %d rescued by the rule", killed5, wt.Stats.Rescued)
	}
	t.Logf("weak row (weights 1e-4 of the others): %d of 64 killed", killed5)
	t.Logf("alive rule fired %d times on %d small or weak-row tiles", rescued, len(ts))
}

func TestRowScaledDiffersFromMagnitudePruning(t *testing.T) {
	rng := newRNG(5000)
	ts := make([]Tile, 4)
	for i := range ts {
		ts[i] = Tile{W: rowScaled(rng, 256, 256), Rows: 256, Cols: 256}
	}
	iid := gaussTiles(5001, gauss, 2, 256, 256)
	k := fastest(t, DefaultParams())
	all := append(ts, iid...)
	if err := k.Run(all); err != nil {
		t.Fatal(err)
	}
	ts, iid = all[:len(ts)], all[len(ts):]
	for i := range ts {
		ov := magnitudeOverlap(&ts[i])
		t.Logf("row-scaled tile %d: %.1f %% of its kills are also magnitude-pruning kills", i, 100*ov)
		if ov > 0.8 {
			t.Errorf("row-scaled tile %d: overlap with magnitude pruning %.3f, want < 0.8", i, ov)
		}
	}
	for i := range iid {
		if ov := magnitudeOverlap(&iid[i]); ov < 0.9 {
			t.Errorf("i.i.d. tile %d: overlap with magnitude pruning %.3f, expected > 0.9", i, ov)
		}
	}
}

func TestSparsityExactCount(t *testing.T) {
	rng := newRNG(6000)
	for _, s := range []float64{0, 0.001, 0.1, 0.222, 0.5, 0.9, 1} {
		p := DefaultParams()
		p.Mode, p.Sparsity = Sparsity, s
		var gts []*guardedTile
		for x, sh := range [][2]int{{256, 256}, {1, 1}, {7, 13}, {100, 37}, {256, 3}, {64, 64}} {
			gts = append(gts, newGuarded(rng, sh[0], sh[1], x))
		}
		for _, impl := range impls() {
			res := runAll(t, impl, p, gts)
			for i, g := range gts {
				tl, r := &g.tile, res[i]
				n := tl.Rows * tl.Cols
				target := int(math.Round(s * float64(n)))
				want := max(0, target-r.stats.ZeroBefore)
				if r.stats.Killed != want {
					t.Fatalf("%v s=%v tile %d (%dx%d, %d zero): killed %d, want %d = round(s*%d) - zero", impl, s, i, tl.Rows, tl.Cols, r.stats.ZeroBefore, r.stats.Killed, want, n)
				}
				// The kills are the non-zero weights with the smallest D_T.
				maxKilled, minKept := float32(-1), float32(math.Inf(1))
				count := 0
				for o := 0; o < tl.Rows; o++ {
					for c := 0; c < tl.Cols; c++ {
						x := o*tl.Cols + c
						if tl.W[o*tl.Stride+c] == 0 {
							if r.mask[x] != 0 {
								t.Fatal("a zero weight is marked as a kill")
							}
							continue
						}
						d := math.Float32frombits(r.d[x])
						if r.mask[x] == 1 {
							count++
							maxKilled = max(maxKilled, d)
						} else {
							minKept = min(minKept, d)
						}
					}
				}
				if count != r.stats.Killed || maxKilled > minKept {
					t.Fatalf("%v s=%v tile %d: %d marked, max killed D %g > min kept D %g", impl, s, i, count, maxKilled, minKept)
				}
			}
		}
	}
}

func TestZeroTiles(t *testing.T) {
	k := fastest(t, DefaultParams())
	rng := newRNG(7000)
	mk := func(rows, cols int, keep func(o, i int) bool) Tile {
		w := genW(rng, gauss, rows, cols)
		for o := 0; o < rows; o++ {
			for i := 0; i < cols; i++ {
				if !keep(o, i) {
					w[o*cols+i] = 0
				}
			}
		}
		return Tile{W: w, Rows: rows, Cols: cols}
	}
	neg := make([]float32, 9)
	for i := range neg {
		neg[i] = float32(math.Copysign(0, -1))
	}
	ts := []Tile{
		mk(256, 256, func(o, i int) bool { return false }),                     // all zero
		{W: neg, Rows: 3, Cols: 3},                                             // all -0
		mk(256, 256, func(o, i int) bool { return (o+i)%2 == 0 }),              // checkerboard: two components
		mk(128, 128, func(o, i int) bool { return (o < 64) == (i < 64) }),      // block diagonal
		mk(100, 80, func(o, i int) bool { return o%4 != 0 && i%5 != 0 }),       // zero rows and columns
		mk(64, 64, func(o, i int) bool { return o == i }),                      // a matching: every node degree 1
		mk(50, 60, func(o, i int) bool { return o < 10 && i < 10 || o == 49 }), // dense corner plus one full row
	}
	if err := k.Run(ts); err != nil {
		t.Fatal(err)
	}
	for x := 0; x < 2; x++ {
		if ts[x].Stats.Killed != 0 || ts[x].Stats.ZeroBefore != ts[x].Stats.Weights {
			t.Errorf("all-zero tile %d: %+v", x, ts[x].Stats)
		}
	}
	for x := 2; x < len(ts); x++ {
		tl := &ts[x]
		zero := 0
		for o := 0; o < tl.Rows; o++ {
			for i := 0; i < tl.Cols; i++ {
				if tl.W[o*tl.Cols+i] == 0 {
					zero++
					if tl.Mask[o*tl.Cols+i] != 0 {
						t.Fatalf("tile %d: zero weight marked", x)
					}
				}
			}
		}
		st := tl.Stats
		nonzero := st.Weights - zero
		if st.ZeroBefore != zero || math.IsNaN(float64(st.MeanD)) || math.IsNaN(float64(st.MaxD)) {
			t.Fatalf("tile %d: stats %+v", x, st)
		}
		aliveCheck(t, fmt.Sprintf("partly zero tile %d", x), tl)
		t.Logf("tile %d: killed %d of %d non-zero (%.1f %%), %d rescued", x, st.Killed, nonzero, 100*float64(st.Killed)/float64(nonzero), st.Rescued)
	}
	// Checkerboard and block-diagonal tiles are two copies of the same kind of
	// network: their kill rate over the non-zero weights is near the dense one.
	for _, x := range []int{2, 3} {
		nonzero := ts[x].Stats.Weights - ts[x].Stats.ZeroBefore
		if r := float64(ts[x].Stats.Killed) / float64(nonzero); r < 0.15 || r > 0.30 {
			t.Errorf("tile %d: kill rate over non-zero weights %.3f, want near 0.22", x, r)
		}
	}
}

func TestActivationScale(t *testing.T) {
	rng := newRNG(8000)
	w := genW(rng, gauss, 128, 200)
	ones := make([]float32, 200)
	act := make([]float32, 200)
	for i := range ones {
		ones[i] = 1
		act[i] = float32(math.Exp2(4*rng.Float64() - 2))
	}
	ts := []Tile{{W: w, Rows: 128, Cols: 200}, {W: w, Rows: 128, Cols: 200, Act: ones}, {W: w, Rows: 128, Cols: 200, Act: act}}
	if err := fastest(t, DefaultParams()).Run(ts); err != nil {
		t.Fatal(err)
	}
	if string(ts[0].Mask) != string(ts[1].Mask) {
		t.Error("activation scale 1 changes the mask")
	}
	if string(ts[0].Mask) == string(ts[2].Mask) {
		t.Error("a varied activation scale does not change the mask")
	}
}

func TestErrors(t *testing.T) {
	k := fastest(t, DefaultParams())
	nan := float32(math.NaN())
	bad := []Tile{
		{W: make([]float32, 4), Rows: 0, Cols: 4},
		{W: make([]float32, 257), Rows: 1, Cols: 257},
		{W: make([]float32, 3), Rows: 2, Cols: 2},
		{W: make([]float32, 8), Rows: 2, Cols: 4, Stride: 3},
		{W: make([]float32, 8), Rows: 3, Cols: 4, Stride: math.MaxInt / 2},
		{W: []float32{1, nan, 2, 3}, Rows: 2, Cols: 2},
		{W: []float32{1, float32(math.Inf(-1))}, Rows: 1, Cols: 2},
		{W: []float32{1, 2}, Rows: 1, Cols: 2, Act: []float32{1, -1}},
		{W: []float32{1, 2}, Rows: 1, Cols: 2, Act: []float32{1}},
		{W: []float32{3e38, 2}, Rows: 1, Cols: 2, Act: []float32{10, 1}},
	}
	for i := range bad {
		if err := k.Run(bad[i : i+1]); err == nil {
			t.Errorf("tile %d: no error", i)
		}
	}
	for _, p := range []func(*Params){
		func(p *Params) { p.G = 1.3 }, func(p *Params) { p.G = 4 }, func(p *Params) { p.G = 0.5 },
		func(p *Params) { p.Steps = 0 }, func(p *Params) { p.CGIters = 0 }, func(p *Params) { p.H = 0 },
		func(p *Params) { p.Theta = -1 }, func(p *Params) { p.Mode = Sparsity; p.Sparsity = 1.5 },
		func(p *Params) { p.Mode = 7 },
	} {
		q := DefaultParams()
		p(&q)
		if _, err := New(Generic, q); err == nil {
			t.Errorf("params %v: no error", q)
		}
	}
	for _, i := range []Impl{AVX2, AVX512} {
		if !Available(i) {
			if _, err := New(i, DefaultParams()); err == nil {
				t.Errorf("New(%v) without %v: no error", i, i)
			}
		}
	}
	for _, s := range []string{"auto", "generic", "avx2", "avx512"} {
		i, err := ParseImpl(s)
		if err != nil || i.String() != s {
			t.Errorf("ParseImpl(%q) = %v, %v", s, i, err)
		}
	}
	if _, err := ParseImpl("neon"); err == nil {
		t.Error("ParseImpl(neon): no error")
	}
	if s := DefaultParams().String(); s != "g=1.75 T=4 K=2 h=0.5 theta=0.29" {
		t.Errorf("DefaultParams().String() = %q", s)
	}
	q := DefaultParams()
	q.Mode, q.Sparsity = Sparsity, 0.25
	if s := q.String(); s != "g=1.75 T=4 K=2 h=0.5 theta=0.29 sparsity=0.25" {
		t.Errorf("String() = %q", s)
	}
}

// TestGolden pins the masks of a fixed set of seeded tiles (sha256 over the
// masks) for every implementation; refresh with -update after an intended
// change of the dynamics.
func TestGolden(t *testing.T) {
	type entry struct {
		Name   string `json:"name"`
		Killed int    `json:"killed"`
		SHA256 string `json:"sha256"`
	}
	rng := newRNG(9000)
	type spec struct {
		name       string
		rows, cols int
		d          dist
		mode       Mode
	}
	var specs []spec
	for _, sh := range [][2]int{{256, 256}, {256, 100}, {33, 256}, {1, 1}, {5, 7}, {129, 65}} {
		for _, d := range []dist{gauss, laplace, student3} {
			for _, m := range []Mode{Natural, Sparsity} {
				specs = append(specs, spec{fmt.Sprintf("%dx%d-%v-%v", sh[0], sh[1], d, m), sh[0], sh[1], d, m})
			}
		}
	}
	ws := make([][]float32, len(specs))
	for i, s := range specs {
		ws[i] = genW(rng, s.d, s.rows, s.cols)
	}
	path := filepath.Join("testdata", "golden.json")
	var want []entry
	if !*update {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%v (create it with -update)", err)
		}
		if err := json.Unmarshal(b, &want); err != nil {
			t.Fatal(err)
		}
	}
	for _, impl := range impls() {
		var got []entry
		for i, s := range specs {
			p := DefaultParams()
			p.Mode, p.Sparsity = s.mode, 0.3
			k, err := New(impl, p)
			if err != nil {
				t.Fatal(err)
			}
			ts := []Tile{{W: ws[i], Rows: s.rows, Cols: s.cols}}
			if err := k.Run(ts); err != nil {
				t.Fatal(err)
			}
			h := sha256.Sum256(ts[0].Mask)
			got = append(got, entry{s.name, ts[0].Stats.Killed, hex.EncodeToString(h[:])})
		}
		if *update {
			b, _ := json.MarshalIndent(got, "", "  ")
			if err := os.MkdirAll("testdata", 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
				t.Fatal(err)
			}
			want = got
			continue
		}
		if len(got) != len(want) {
			t.Fatalf("%v: %d golden entries, want %d", impl, len(got), len(want))
		}
		for i := range got {
			if got[i] != want[i] {
				t.Errorf("%v: %+v, golden %+v", impl, got[i], want[i])
			}
		}
	}
}
