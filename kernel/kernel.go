// Package kernel is the Physarium tile kernel (docs/KERNEL.md): it reads a
// tile of a weight matrix (at most 256 x 256) as a bipartite flow network,
// runs the Tero–Kobayashi–Nakagaki adaptation on it and returns the mask of
// the weights whose tube starved.
//
// Each tile is solved independently, by a pure-Go reference (Generic) or by
// C with AVX2+FMA intrinsics behind cgo (AVX2); both follow one canonical
// order of floating-point operations (see core_go.go) and give bit-identical
// masks and final conductivities. The package knows nothing of GGUF.
//
// Dynamics, per tile with R output rows and C input columns, food F = |w|
// (times the column's activation scale when given), n = the number of edges
// (weights with non-zero food; zero weights are no tubes, so they neither
// dilute the means below nor count as kills):
//
//	D0 = F * (n / sum F)
//	for t = 1..T:
//	  solve L(D) x = b by K Jacobi-PCG iterations, warm started (x = 0 at t = 1);
//	    b = 1 at every input node, -C/R at every output node (per connected
//	    component; nodes without edges get 0); x is then shifted to zero mean
//	    over the nodes that have edges
//	  q = |D (p_i - u_o)| * (n / sum |D (p_i - u_o)|)
//	  D = (1-h) D + 2h f(q),  f(q) = q^g / (1 + q^g)
//
// Natural mode kills non-zero weights with D_T < theta * mean(D_T) (mean over
// the n edges), then
// applies the alive rule: a row (then a column) that has non-zero weights but
// would keep none of them keeps its edge with the largest D_T (ties: lowest
// index); TileStats.Rescued counts those. Sparsity mode: see Sparsity.
package kernel

import (
	"fmt"
	"math"
	"slices"
)

// Impl selects an implementation of the dynamics.
type Impl int

const (
	// Auto picks the fastest implementation available on this CPU.
	Auto Impl = iota
	// Generic is the pure-Go reference, always available.
	Generic
	// AVX2 is the C implementation with AVX2 and FMA intrinsics (amd64, cgo).
	AVX2
)

// String returns "auto", "generic" or "avx2".
func (i Impl) String() string {
	switch i {
	case Auto:
		return "auto"
	case Generic:
		return "generic"
	case AVX2:
		return "avx2"
	}
	return fmt.Sprintf("Impl(%d)", int(i))
}

// ParseImpl parses "auto", "generic" or "avx2".
func ParseImpl(s string) (Impl, error) {
	for _, i := range []Impl{Auto, Generic, AVX2} {
		if s == i.String() {
			return i, nil
		}
	}
	return 0, fmt.Errorf("kernel: unknown implementation %q (want auto, generic or avx2)", s)
}

// Available reports whether impl can run in this binary on this CPU.
func Available(impl Impl) bool {
	switch impl {
	case Auto, Generic:
		return true
	case AVX2:
		return haveAVX2
	}
	return false
}

// MaxDim is the largest number of rows or columns of a tile.
const MaxDim = 256

// Tile is one tile of a row-major matrix and, after Run, its result.
type Tile struct {
	// W holds the weights: element (o, i) is W[o*Stride+i], 0 <= o < Rows,
	// 0 <= i < Cols. Only those elements are read, so W may be a view into a
	// band of rows of a wider matrix.
	W []float32
	// Rows and Cols are the tile's shape, each in [1, MaxDim].
	Rows, Cols int
	// Stride is the distance between rows in W; 0 means Cols.
	Stride int
	// Act is the optional per-column activation scale a_i (v2 food
	// F = |w| * a_i), len >= Cols, finite and >= 0; nil for v1 (F = |w|).
	// A tile whose food is all zero (e.g. all weights zero) kills nothing.
	Act []float32
	// Mask is the output, row-major Rows x Cols: 1 where the weight is killed
	// (it was non-zero and must be zeroed), 0 elsewhere. Run reuses it when
	// len(Mask) >= Rows*Cols and allocates it otherwise.
	Mask []byte
	// MaskStride, when not 0, is the distance between rows in Mask, so
	// that the mask of a tile can be written straight into the mask of a
	// wider matrix: element (o, i) is Mask[o*MaskStride+i], and Run writes
	// only those elements. Mask must then hold (Rows-1)*MaskStride+Cols
	// bytes; Run does not allocate it.
	MaskStride int
	// D is an optional output, row-major Rows x Cols: when len(D) >=
	// Rows*Cols, Run fills it with the final conductivity D_T of every
	// weight (0 for zero weights, which are no tubes, and for every weight
	// of a tile whose food is all zero). D_T is the same in every
	// implementation, bit for bit. nil (or shorter) means not wanted.
	D []float32
	// Stats is the output: the tile's figures.
	Stats TileStats
}

// TileStats are the figures of one tile after Run.
type TileStats struct {
	// Weights is Rows*Cols, the denominator of every rate of the tile.
	Weights int
	// ZeroBefore counts the weights that were exactly zero (never kills).
	ZeroBefore int
	// Killed counts the weights marked in the mask (all were non-zero).
	Killed int
	// Rescued counts the weights kept by the alive rule (natural mode).
	Rescued int
	// MeanD is the mean of D_T over the tile's edges (the weights with
	// non-zero food; zero weights are no tubes and dilute no mean). MinD and
	// MaxD range over the non-zero weights. All are 0 for a tile whose food
	// is all zero.
	MeanD, MinD, MaxD float32
	// Threshold is the natural-mode cut theta*mean(D_T) (0 in sparsity mode).
	Threshold float32
}

// Kernel runs the dynamics with fixed parameters and reusable scratch
// memory. A Kernel is not safe for concurrent use: use one per goroutine.
type Kernel struct {
	impl Impl
	p    Params
	cp   coreParams

	arena  []float32
	jobs   []job
	idx    []int // tile index of each job
	rowNZ  []int32
	colNZ  []int32
	parent []int32
	compR  []int32
	compC  []int32
	keys   []uint32
	alive  []int32
	food   foodOut   // AVX2 set-up output (kept here: no allocation per call)
	fin    finishOut // AVX2 finish output

	// debugD, when set (tests), receives D_T of each solved tile.
	debugD func(tile int, d []float32, cp int)
}

// New returns a Kernel running implementation impl (Auto picks the fastest
// available) with parameters p.
func New(impl Impl, p Params) (*Kernel, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	switch impl {
	case Auto:
		impl = Generic
		if haveAVX2 {
			impl = AVX2
		}
	case Generic:
	case AVX2:
		if !haveAVX2 {
			return nil, fmt.Errorf("kernel: implementation avx2 is not available (needs amd64, cgo and a CPU with AVX2 and FMA)")
		}
	default:
		return nil, fmt.Errorf("kernel: unknown implementation %d", int(impl))
	}
	whole, bits, top, _ := splitG(p.G)
	k := &Kernel{impl: impl, p: p}
	k.cp = coreParams{
		Steps: int32(p.Steps), CGIters: int32(p.CGIters),
		GWhole: whole, GTop: top, GBits: bits,
		C1: 1 - p.H, C2: 2 * p.H,
	}
	return k, nil
}

// Impl returns the implementation the Kernel runs (never Auto).
func (k *Kernel) Impl() Impl { return k.impl }

// Params returns the Kernel's parameters.
func (k *Kernel) Params() Params { return k.p }

// maxBatch bounds the weights prepared per call into the core.
const maxBatch = 1 << 20

// guard is the sentinel written around every arena region (tests check it).
const guardLen = 8

var guardBits = math.Float32bits(-1234.5678)

// Run computes the mask and the figures of every tile. It returns an error,
// before touching any output, when a tile is malformed or holds a non-finite
// weight, activation or food value.
func (k *Kernel) Run(tiles []Tile) error {
	for t := range tiles {
		if err := checkTile(&tiles[t], k.impl == AVX2); err != nil {
			return fmt.Errorf("kernel: tile %d: %w", t, err)
		}
	}
	for start := 0; start < len(tiles); {
		end, weights := start, 0
		for end < len(tiles) && (end == start || weights+tiles[end].Rows*tiles[end].Cols <= maxBatch) {
			weights += tiles[end].Rows * tiles[end].Cols
			end++
		}
		k.runBatch(tiles[start:end], start)
		start = end
	}
	return nil
}

// foodOut mirrors phys_food_out: the food figures of a tile (AVX2 set-up).
type foodOut struct {
	Zero, N    int32
	MaxF, SumF float32
}

// finishOut mirrors phys_finish_out: kills and the range of D_T (AVX2 finish).
type finishOut struct {
	Killed int32
	Mn, Mx float32
}

// checkTile validates a tile; fast lets the AVX2 helper scan the weights
// (the Go loop then runs only to name the first bad weight).
func checkTile(t *Tile, fast bool) error {
	if t.Rows < 1 || t.Rows > MaxDim || t.Cols < 1 || t.Cols > MaxDim {
		return fmt.Errorf("shape %dx%d outside 1..%d", t.Rows, t.Cols, MaxDim)
	}
	stride := t.Stride
	if stride == 0 {
		stride = t.Cols
	}
	if stride < t.Cols {
		return fmt.Errorf("stride %d < cols %d", stride, t.Cols)
	}
	if t.Rows > 1 && stride > len(t.W) {
		return fmt.Errorf("stride %d > len(W)=%d", stride, len(t.W))
	}
	if need := (t.Rows-1)*stride + t.Cols; len(t.W) < need {
		return fmt.Errorf("len(W)=%d < %d", len(t.W), need)
	}
	if t.MaskStride != 0 {
		if t.MaskStride < t.Cols {
			return fmt.Errorf("mask stride %d < cols %d", t.MaskStride, t.Cols)
		}
		if need := (t.Rows-1)*t.MaskStride + t.Cols; len(t.Mask) < need {
			return fmt.Errorf("len(Mask)=%d < %d (mask stride %d)", len(t.Mask), need, t.MaskStride)
		}
	}
	if t.Act != nil {
		if len(t.Act) < t.Cols {
			return fmt.Errorf("len(Act)=%d < cols %d", len(t.Act), t.Cols)
		}
		for i, a := range t.Act[:t.Cols] {
			if !(a >= 0 && a <= math.MaxFloat32) {
				return fmt.Errorf("activation %d is %v (want finite, >= 0)", i, a)
			}
		}
	}
	if fast && checkAVX2(t, stride) {
		return nil
	}
	for o := 0; o < t.Rows; o++ {
		row := t.W[o*stride : o*stride+t.Cols]
		for i, w := range row {
			if !(abs32(w) <= math.MaxFloat32) {
				return fmt.Errorf("weight (%d,%d) is %v", o, i, w)
			}
			if t.Act != nil && !(abs32(w)*t.Act[i] <= math.MaxFloat32) {
				return fmt.Errorf("food |w|*a at (%d,%d) overflows float32", o, i)
			}
		}
	}
	return nil
}

func pad8(x int) int { return (x + 7) &^ 7 }

// reserve appends n zeroed floats plus a guard to the arena and returns the
// offset.
func (k *Kernel) reserve(n int) int64 {
	off := k.reserveRaw(n)
	clear(k.arena[off : off+int64(n)])
	return off
}

// reserveRaw is reserve without zeroing the n floats (the caller writes them).
func (k *Kernel) reserveRaw(n int) int64 {
	off := len(k.arena)
	k.arena = slices.Grow(k.arena, n+guardLen)[:off+n+guardLen]
	g := math.Float32frombits(guardBits)
	for i := off + n; i < off+n+guardLen; i++ {
		k.arena[i] = g
	}
	return int64(off)
}

// checkGuards reports whether every guard in the arena is intact (tests).
func (k *Kernel) checkGuards() error {
	check := func(off int64, n int) error {
		for i := int64(n); i < int64(n)+guardLen; i++ {
			if math.Float32bits(k.arena[off+i]) != guardBits {
				return fmt.Errorf("kernel: guard overwritten at arena offset %d", off+i)
			}
		}
		return nil
	}
	if len(k.jobs) == 0 {
		return nil
	}
	if err := check(k.jobs[0].Work, workLen); err != nil {
		return err
	}
	for _, j := range k.jobs {
		for _, r := range []struct {
			off int64
			n   int
		}{{j.D, int(j.Rows * j.Cp)}, {j.BIn, int(j.Cp)}, {j.BOut, int(j.Rp)}} {
			if err := check(r.off, r.n); err != nil {
				return err
			}
		}
	}
	return nil
}

func (k *Kernel) runBatch(tiles []Tile, first int) {
	k.arena = k.arena[:0]
	k.jobs = k.jobs[:0]
	k.idx = k.idx[:0]
	work := k.reserve(workLen)
	for t := range tiles {
		tl := &tiles[t]
		n := tl.Rows * tl.Cols
		if tl.MaskStride == 0 {
			if len(tl.Mask) < n {
				tl.Mask = make([]byte, n)
			}
			tl.Mask = tl.Mask[:n]
		}
		tl.Stats = TileStats{Weights: n}
		// The AVX2 finish writes every byte of Mask and D of a solved tile.
		if k.impl != AVX2 {
			clearMask(tl)
			if len(tl.D) >= n {
				clear(tl.D[:n])
			}
		}
		if j, ok := k.prepare(tl, work); ok {
			k.jobs = append(k.jobs, j)
			k.idx = append(k.idx, t)
		} else if k.impl == AVX2 {
			clearMask(tl)
			if len(tl.D) >= n {
				clear(tl.D[:n])
			}
		}
	}
	if len(k.jobs) > 0 {
		switch k.impl {
		case AVX2:
			runAVX2(k.arena, k.jobs, &k.cp)
		default:
			for j := range k.jobs {
				runGo(k.arena, &k.jobs[j], &k.cp)
			}
		}
	}
	for j := range k.jobs {
		k.finish(&tiles[k.idx[j]], &k.jobs[j], first+k.idx[j])
	}
}

// maskStride returns the distance between the rows of the tile's mask.
func (t *Tile) maskStride() int {
	if t.MaskStride != 0 {
		return t.MaskStride
	}
	return t.Cols
}

// clearMask zeroes the tile's elements of its mask.
func clearMask(t *Tile) {
	ms := t.maskStride()
	if ms == t.Cols {
		clear(t.Mask[:t.Rows*t.Cols])
		return
	}
	for o := 0; o < t.Rows; o++ {
		clear(t.Mask[o*ms : o*ms+t.Cols])
	}
}

// prepare computes D0 and b of a tile into the arena. It returns false when
// the food is all zero (the tile kills nothing).
func (k *Kernel) prepare(tl *Tile, work int64) (job, bool) {
	R, C := tl.Rows, tl.Cols
	stride := tl.Stride
	if stride == 0 {
		stride = C
	}
	cp, rp := pad8(C), pad8(R)
	mark := len(k.arena)
	fast := k.impl == AVX2
	var dOff int64
	if fast {
		dOff = k.reserveRaw(R * cp) // phys_food writes every float, padding too
	} else {
		dOff = k.reserve(R * cp)
	}
	D := k.arena[dOff : dOff+int64(R*cp)]

	// Food, its tile sum and maximum; zero weights.
	zero, n := 0, 0
	var maxF, sumF float32
	haveSum := false
	if fast {
		foodAVX2(tl, stride, D, cp, &k.food)
		zero, n, maxF, sumF, haveSum = int(k.food.Zero), int(k.food.N), k.food.MaxF, k.food.SumF, true
	}
	for o := 0; o < R && !fast; o++ {
		row := tl.W[o*stride : o*stride+C]
		drow := D[o*cp : o*cp+C]
		for i, w := range row {
			if w == 0 {
				zero++
			}
			f := abs32(w)
			if tl.Act != nil {
				f = float32(f * tl.Act[i])
			}
			drow[i] = f
			if f != 0 {
				n++
			}
			if f > maxF {
				maxF = f
			}
		}
	}
	tl.Stats.ZeroBefore = zero
	if maxF == 0 {
		k.arena = k.arena[:mark]
		return job{}, false
	}
	// Exact power-of-two rescale keeps the sums far from overflow.
	if e := math.Ilogb(float64(maxF)); e > 64 || e < -64 {
		s := float32(math.Ldexp(1, -e))
		n, sumF, haveSum = 0, 0, false
		for x := range D {
			D[x] = float32(D[x] * s)
			if D[x] != 0 {
				n++
			}
		}
	}
	for o := 0; o < R && !haveSum; o++ {
		sumF += sumGo(D[o*cp : o*cp+cp])
	}
	// D0 is normalized over the tile's edges (non-zero food, counted in n):
	// zero weights are no tubes and do not dilute the means.
	scale := float32(n) / sumF

	// D0 and the presence of edges.
	k.rowNZ = resize(k.rowNZ, R)
	k.colNZ = resize(k.colNZ, C)
	fullRow, fullCol := false, false
	if fast {
		scaleAVX2(D, R, C, cp, scale, k.rowNZ, k.colNZ)
	}
	for o := 0; o < R && !fast; o++ {
		drow := D[o*cp : o*cp+C]
		nz := int32(0)
		for i := range drow {
			v := float32(drow[i] * scale)
			drow[i] = v
			if v != 0 {
				nz++
				k.colNZ[i]++
			}
		}
		k.rowNZ[o] = nz
	}
	for _, nz := range k.rowNZ {
		fullRow = fullRow || int(nz) == C
	}
	for _, nz := range k.colNZ {
		fullCol = fullCol || int(nz) == R
	}

	bIn := k.reserve(cp)
	bOut := k.reserve(rp)
	k.balance(D, R, C, cp, k.arena[bIn:bIn+int64(cp)], k.arena[bOut:bOut+int64(rp)], fullRow, fullCol)
	return job{D: dOff, BIn: bIn, BOut: bOut, Work: work, Rows: int32(R), Cp: int32(cp), Rp: int32(rp), N: int32(n)}, true
}

func resize(s []int32, n int) []int32 {
	if cap(s) < n {
		s = make([]int32, n)
	}
	s = s[:n]
	clear(s)
	return s
}

// balance sets the supplies: 1 at each input node with edges, -c/r at each
// output node with edges, where c and r count the input and output nodes of
// its connected component; 0 at nodes without edges.
func (k *Kernel) balance(D []float32, R, C, cp int, bIn, bOut []float32, fullRow, fullCol bool) {
	if fullRow || fullCol {
		// One component holds every node with an edge.
		r, c := 0, 0
		for _, nz := range k.rowNZ {
			if nz > 0 {
				r++
			}
		}
		for _, nz := range k.colNZ {
			if nz > 0 {
				c++
			}
		}
		drain := -float32(c) / float32(r)
		for i, nz := range k.colNZ {
			if nz > 0 {
				bIn[i] = 1
			}
		}
		for o, nz := range k.rowNZ {
			if nz > 0 {
				bOut[o] = drain
			}
		}
		return
	}
	// Union-find over nodes: inputs 0..C-1, outputs C..C+R-1.
	N := R + C
	k.parent = resize(k.parent, N)
	for x := range k.parent {
		k.parent[x] = int32(x)
	}
	find := func(x int32) int32 {
		for k.parent[x] != x {
			k.parent[x] = k.parent[k.parent[x]]
			x = k.parent[x]
		}
		return x
	}
	for o := 0; o < R; o++ {
		for i, v := range D[o*cp : o*cp+C] {
			if v != 0 {
				a, b := find(int32(C+o)), find(int32(i))
				if a != b {
					k.parent[a] = b
				}
			}
		}
	}
	k.compR = resize(k.compR, N)
	k.compC = resize(k.compC, N)
	for i := 0; i < C; i++ {
		if k.colNZ[i] > 0 {
			k.compC[find(int32(i))]++
		}
	}
	for o := 0; o < R; o++ {
		if k.rowNZ[o] > 0 {
			k.compR[find(int32(C+o))]++
		}
	}
	for i := 0; i < C; i++ {
		if k.colNZ[i] > 0 {
			bIn[i] = 1
		}
	}
	for o := 0; o < R; o++ {
		if k.rowNZ[o] > 0 {
			r := find(int32(C + o))
			bOut[o] = -float32(k.compC[r]) / float32(k.compR[r])
		}
	}
}

// finish turns D_T into the mask and the figures of a tile.
func (k *Kernel) finish(tl *Tile, j *job, tileIndex int) {
	R, C, cp := tl.Rows, tl.Cols, int(j.Cp)
	stride := tl.Stride
	if stride == 0 {
		stride = C
	}
	D := k.arena[j.D : j.D+int64(R*cp)]
	if k.debugD != nil {
		k.debugD(tileIndex, D, cp)
	}
	st := &tl.Stats
	st.MeanD = j.SumD / float32(j.N)
	if k.impl == AVX2 {
		k.finishFast(tl, D, cp, stride)
		return
	}
	if len(tl.D) >= R*C {
		for o := 0; o < R; o++ {
			copy(tl.D[o*C:o*C+C], D[o*cp:o*cp+C])
		}
	}
	if k.p.Mode == Sparsity {
		st.MinD, st.MaxD = minMax(tl, D, cp, stride)
		k.killSmallest(tl, D, cp, stride)
		return
	}
	thr := float32(k.p.Theta * st.MeanD)
	st.Threshold = thr
	ms := tl.maskStride()
	// alive[i] counts the survivors of column i, alive[C+o] those of row o.
	k.alive = resize(k.alive, R+C)
	colAlive, rowAlive := k.alive[:C], k.alive[C:]
	killed := 0
	mn, mx := float32(math.Inf(1)), float32(math.Inf(-1))
	for o := 0; o < R; o++ {
		w := tl.W[o*stride : o*stride+C]
		d := D[o*cp : o*cp+C]
		m := tl.Mask[o*ms : o*ms+C]
		m = m[:len(w)]
		d = d[:len(w)]
		ca := colAlive[:len(w)]
		alive := int32(0)
		for i, wi := range w {
			if wi == 0 {
				continue
			}
			v := d[i]
			if v < mn {
				mn = v
			}
			if v > mx {
				mx = v
			}
			if v < thr {
				m[i] = 1
				killed++
			} else {
				ca[i]++
				alive++
			}
		}
		rowAlive[o] = alive
	}
	st.MinD, st.MaxD = mn, mx
	k.rescue(tl, D, cp, stride, killed)
}

// finishFast is finish on the AVX2 path: phys_finish does the per-element
// work (mask, D_T copy, survivor counts, range), Go the rules.
func (k *Kernel) finishFast(tl *Tile, D []float32, cp, stride int) {
	R, C := tl.Rows, tl.Cols
	st := &tl.Stats
	thr := float32(math.Inf(-1)) // sparsity mode: no kills here
	if k.p.Mode != Sparsity {
		thr = float32(k.p.Theta * st.MeanD)
		st.Threshold = thr
	}
	var outD []float32
	if len(tl.D) >= R*C {
		outD = tl.D
	}
	k.alive = resize(k.alive, R+C)
	finishAVX2(tl, stride, D, cp, thr, outD, k.alive, &k.fin)
	st.MinD, st.MaxD = k.fin.Mn, k.fin.Mx
	if st.MinD == 0 || st.MaxD == 0 {
		// The lanes may have met +0 and -0 in another order than the
		// row-major scan: let the scan settle the sign.
		st.MinD, st.MaxD = minMax(tl, D, cp, stride)
	}
	if k.p.Mode == Sparsity {
		k.killSmallest(tl, D, cp, stride)
		return
	}
	k.rescue(tl, D, cp, stride, int(k.fin.Killed))
}

// rescue applies the alive rule to the natural-mode mask, given the kills
// and the survivor counts in k.alive, and sets Killed and Rescued.
func (k *Kernel) rescue(tl *Tile, D []float32, cp, stride, killed int) {
	R, C, ms := tl.Rows, tl.Cols, tl.maskStride()
	st := &tl.Stats
	// Alive rule: rows first, then columns.
	rescued := 0
	for o := 0; o < R; o++ {
		if k.alive[C+o] > 0 {
			continue
		}
		best := -1
		for i, w := range tl.W[o*stride : o*stride+C] {
			if w != 0 && (best < 0 || D[o*cp+i] > D[o*cp+best]) {
				best = i
			}
		}
		if best >= 0 {
			tl.Mask[o*ms+best] = 0
			k.alive[C+o]++
			k.alive[best]++
			killed--
			rescued++
		}
	}
	for i := 0; i < C; i++ {
		if k.alive[i] > 0 {
			continue
		}
		best := -1
		for o := 0; o < R; o++ {
			if tl.W[o*stride+i] != 0 && (best < 0 || D[o*cp+i] > D[best*cp+i]) {
				best = o
			}
		}
		if best >= 0 {
			tl.Mask[best*ms+i] = 0
			k.alive[i]++
			k.alive[C+best]++
			killed--
			rescued++
		}
	}
	st.Killed = killed
	st.Rescued = rescued
}

// minMax returns the range of D_T over the non-zero weights.
func minMax(tl *Tile, D []float32, cp, stride int) (mn, mx float32) {
	mn, mx = float32(math.Inf(1)), float32(math.Inf(-1))
	for o := 0; o < tl.Rows; o++ {
		for i, w := range tl.W[o*stride : o*stride+tl.Cols] {
			if w == 0 {
				continue
			}
			v := D[o*cp+i]
			if v < mn {
				mn = v
			}
			if v > mx {
				mx = v
			}
		}
	}
	return mn, mx
}

// killSmallest marks the round(s*n) - ZeroBefore non-zero weights with the
// smallest (D_T, row-major index), by a radix select on the bits of D_T.
func (k *Kernel) killSmallest(tl *Tile, D []float32, cp, stride int) {
	R, C, ms := tl.Rows, tl.Cols, tl.maskStride()
	st := &tl.Stats
	want := int(math.Round(k.p.Sparsity*float64(st.Weights))) - st.ZeroBefore
	if want <= 0 {
		return
	}
	k.keys = k.keys[:0]
	for o := 0; o < R; o++ {
		for i, w := range tl.W[o*stride : o*stride+C] {
			if w != 0 {
				b := math.Float32bits(D[o*cp+i])
				if b == 1<<31 { // -0 sorts as +0
					b = 0
				}
				k.keys = append(k.keys, b)
			}
		}
	}
	var pivot uint32
	need := want
	if want < len(k.keys) {
		var sel uint32
		for shift := 24; shift >= 0; shift -= 8 {
			var h [256]int
			for _, key := range k.keys {
				if key&sel == pivot {
					h[key>>shift&255]++
				}
			}
			b := 0
			for ; b < 255 && need > h[b]; b++ {
				need -= h[b]
			}
			pivot |= uint32(b) << shift
			sel |= 255 << shift
		}
	} else {
		pivot = math.MaxUint32
		need = len(k.keys)
	}
	x, killed := 0, 0
	for o := 0; o < R; o++ {
		for i, w := range tl.W[o*stride : o*stride+C] {
			if w == 0 {
				continue
			}
			key := k.keys[x]
			x++
			if key < pivot || key == pivot && need > 0 {
				if key == pivot {
					need--
				}
				tl.Mask[o*ms+i] = 1
				killed++
			}
		}
	}
	st.Killed = killed
}
