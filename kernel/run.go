package kernel

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
		if j, ok := k.prepare(tl, work); ok {
			k.jobs = append(k.jobs, j)
			k.idx = append(k.idx, t)
		} else if k.impl == AVX2 {
			k.clearOutputs(tl)
		}
	}
	k.runCore(k.jobs)
	for j := range k.jobs {
		k.finish(&tiles[k.idx[j]], &k.jobs[j], first+k.idx[j])
	}
}

// resetOutputs sizes the tile's mask and resets its figures; off the AVX2
// path it also clears the mask and D (the AVX2 finish writes every byte of
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
	if k.impl != AVX2 {
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
	if k.impl == AVX2 {
		runAVX2(k.arena, jobs, &k.cp)
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
