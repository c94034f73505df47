package kernel

import "math"

// maxBatch bounds the weights prepared per call into the core.
const maxBatch = 1 << 20

// runBatch solves a batch of valid tiles: set-up of every tile into the
// arena, one run of the core over all jobs, then the kill rules per tile.
// first is the index of tiles[0] in the caller's slice (for debugD).
func (k *Kernel) runBatch(tiles []Tile, first int) {
	k.arena = k.arena[:0]
	k.jobs = k.jobs[:0]
	k.idx = k.idx[:0]
	work := k.reserve(workLen)
	for t := range tiles {
		tl := &tiles[t]
		k.resetOutputs(tl)
		if j, ok := k.prepare(tl, work, 0); ok {
			k.jobs = append(k.jobs, j)
			k.idx = append(k.idx, t)
		} else if k.inC() {
			k.clearOutputs(tl)
		}
	}
	k.runCore(k.jobs)
	for j := range k.jobs {
		if !finite(k.jobs[j].SumD) {
			k.solveClamped(&tiles[k.idx[j]], j, work)
		}
	}
	for j := range k.jobs {
		k.finish(&tiles[k.idx[j]], &k.jobs[j], first+k.idx[j])
	}
}

// clampExps are the ranges tried, in order, by the range fallback: the food
// of a tile whose flow overflowed is clamped to [m/2^c, m*2^c] (package doc,
// "Range"). c = 16 keeps D0 within 2^-32 of its mean, far from overflow.
var clampExps = [...]int{48, 32, 16}

// solveClamped solves tile tl, whose flow (job j) ended non-finite, again on
// its clamped food, replacing job j by the first finite run. If every run
// overflows, job j keeps a non-finite SumD and finish marks the tile
// Unsolved.
func (k *Kernel) solveClamped(tl *Tile, j int, work int64) {
	for _, c := range clampExps {
		nj, ok := k.prepare(tl, work, c)
		if !ok {
			return // unreachable: clamping keeps every non-zero food non-zero
		}
		k.jobs[j] = nj
		k.runCore(k.jobs[j : j+1])
		if finite(k.jobs[j].SumD) {
			return
		}
	}
}

// finite reports whether x is neither infinite nor NaN.
func finite(x float32) bool { return abs32(x) <= math.MaxFloat32 }

// resetOutputs sizes the tile's mask and resets its figures; off the C
// paths it also clears the mask and D (the C finish writes every byte of
// Mask and D of a solved tile).
func (k *Kernel) resetOutputs(tl *Tile) {
	n := tl.Rows * tl.Cols
	if tl.MaskStride == 0 {
		if len(tl.Mask) < n {
			tl.Mask = make([]byte, n)
		}
		tl.Mask = tl.Mask[:n]
	}
	tl.Stats = TileStats{Weights: n}
	if !k.inC() {
		k.clearOutputs(tl)
	}
}

// clearOutputs zeroes the tile's elements of its mask and, when wanted, D.
func (k *Kernel) clearOutputs(tl *Tile) {
	clearMask(tl)
	if n := tl.Rows * tl.Cols; len(tl.D) >= n {
		clear(tl.D[:n])
	}
}

// runCore runs the dynamics on the jobs with the Kernel's implementation.
func (k *Kernel) runCore(jobs []job) {
	if len(jobs) == 0 {
		return
	}
	switch k.impl {
	case AVX2:
		runAVX2(k.arena, jobs, &k.cp)
		return
	case AVX512:
		runAVX512(k.arena, jobs, &k.cp)
		return
	}
	for j := range jobs {
		runGo(k.arena, &jobs[j], &k.cp)
	}
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
