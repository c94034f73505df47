package kernel

import "math"

// finishOut mirrors phys_finish_out: kills and the range of D_T (AVX2 finish).
type finishOut struct {
	Killed int32
	Mn, Mx float32
}

// finish turns D_T into the mask and the figures of a tile.
func (k *Kernel) finish(tl *Tile, j *job, tileIndex int) {
	R, C, cp := tl.Rows, tl.Cols, int(j.Cp)
	stride := tl.stride()
	D := k.arena[j.D : j.D+int64(R*cp)]
	if k.debugD != nil {
		k.debugD(tileIndex, D, cp)
	}
	st := &tl.Stats
	if !finite(j.SumD) {
		k.clearOutputs(tl)
		*st = TileStats{Weights: st.Weights, ZeroBefore: st.ZeroBefore, Clamped: st.Clamped, Unsolved: true}
		return
	}
	st.MeanD = j.SumD / float32(j.N)
	if k.inC() {
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
	st.Threshold = float32(k.p.Theta * st.MeanD)
	killed := k.killBelow(tl, D, cp, stride, st.Threshold)
	k.rescue(tl, D, cp, stride, killed)
}

// killBelow marks the non-zero weights with D_T < thr, counts the survivors
// of every column (k.alive[i]) and row (k.alive[C+o]), sets MinD and MaxD
// and returns the kills (natural mode, Go path).
func (k *Kernel) killBelow(tl *Tile, D []float32, cp, stride int, thr float32) int {
	R, C, ms := tl.Rows, tl.Cols, tl.maskStride()
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
	tl.Stats.MinD, tl.Stats.MaxD = mn, mx
	return killed
}

// finishFast is finish on the C paths (AVX2, AVX512): phys_finish does the
// per-element work (mask, D_T copy, survivor counts, range), Go the rules.
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
	pivot, need := selectKey(k.keys, want)
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

// selectKey returns the want-th smallest key (the pivot) and how many keys
// equal to it are among the want smallest, by a radix select on 8-bit
// digits; when want >= len(keys), every key is selected.
func selectKey(keys []uint32, want int) (pivot uint32, need int) {
	if want >= len(keys) {
		return math.MaxUint32, len(keys)
	}
	var sel uint32
	need = want
	for shift := 24; shift >= 0; shift -= 8 {
		var h [256]int
		for _, key := range keys {
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
	return pivot, need
}
