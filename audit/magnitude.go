package audit

import (
	"fmt"
	"math"

	"github.com/physarium/physarium-gguf/errata"
	"github.com/physarium/physarium-gguf/gguf"
	"github.com/physarium/physarium-gguf/quantize"
)

// The replay of the magnitude baseline (physarium.version 0, method
// magnitude), written from its documented rule rather than prune's code:
// in each matrix of n weights (each expert on its own), order the weights
// by |w| and then by index, zeros first; the first k = round(s*n) of them
// end as zeros, so the non-zero weights among them are the kills.

// magCut is the cut of one matrix: the weights whose |w| bits are below
// pivot, and the first need weights (in index order) whose |w| bits equal
// pivot, are among the first k.
type magCut struct {
	pivot uint32
	need  uint64
	ties  uint64 // weights equal to pivot seen so far in the walk
}

// absKey orders weights by magnitude: the bits of |w| (so -0 is 0).
func absKey(v float32) uint32 { return math.Float32bits(v) &^ (1 << 31) }

// magnitudeCuts finds the cut of every matrix of the original's tensor ot
// at sparsity s with two decode passes per matrix (a histogram of the high
// 16 bits of the keys, then of the low 16 bits inside the chosen bucket),
// so memory stays at one band and 65536 counters.
func (a *auditor) magnitudeCuts(ot gguf.TensorInfo, s float64) ([]magCut, error) {
	row, rows := int(ot.Shape[0]), int(ot.Shape[1])
	mats := 1
	for _, n := range ot.Shape[2:] {
		mats *= int(n)
	}
	rowBytes, _ := ot.Type.RowBytes(ot.Shape[0])
	b := &a.bufs
	cuts := make([]magCut, mats)
	var hist [1 << 16]uint64
	for m := range cuts {
		pass := func(fn func(v []float32)) error {
			for r0, nr := range errata.Bands(rows) {
				if err := a.ctx.Err(); err != nil {
					return err
				}
				off := (uint64(m)*uint64(rows) + uint64(r0)) * rowBytes
				b.rawO = grow(b.rawO, nr*int(rowBytes))
				b.before = grow(b.before, nr*row)
				if err := readTensor(a.orig, ot, off, b.rawO); err != nil {
					return err
				}
				if err := quantize.Decode(ot.Type, b.before, b.rawO); err != nil {
					return fmt.Errorf("audit: %s: tensor %s: %w", a.orig.Path, ot.Name, err)
				}
				fn(b.before)
			}
			return nil
		}
		k := uint64(math.Round(s * float64(rows) * float64(row)))
		if k == 0 {
			continue // pivot 0, need 0: nothing dies
		}
		clear(hist[:])
		if err := pass(func(v []float32) {
			for _, x := range v {
				hist[absKey(x)>>16]++
			}
		}); err != nil {
			return nil, err
		}
		need, hi := k, 0
		for ; hi < len(hist)-1 && need > hist[hi]; hi++ {
			need -= hist[hi]
		}
		clear(hist[:])
		if err := pass(func(v []float32) {
			for _, x := range v {
				if key := absKey(x); int(key>>16) == hi {
					hist[key&0xffff]++
				}
			}
		}); err != nil {
			return nil, err
		}
		lo := 0
		for ; lo < len(hist)-1 && need > hist[lo]; lo++ {
			need -= hist[lo]
		}
		cuts[m] = magCut{pivot: uint32(hi)<<16 | uint32(lo), need: need}
	}
	return cuts, nil
}

// magnitudeBand marks the kills of one band (a.bufs.before, nr rows of
// row weights) of the matrix with cut c, band by band in index order, and
// leaves the values with the kills zeroed in a.bufs.vals.
func (a *auditor) magnitudeBand(r *TensorReplay, c *magCut, nr, row int) []byte {
	b := &a.bufs
	n := nr * row
	b.vals = grow(b.vals, n)
	copy(b.vals, b.before)
	b.mask = grow(b.mask, n)
	clear(b.mask)
	for i, v := range b.before[:n] {
		key := absKey(v)
		tie := key == c.pivot
		dies := key < c.pivot || tie && c.ties < c.need
		if tie {
			c.ties++
		}
		if v == 0 {
			r.ZeroBefore++
			continue // zeros rank first but are no kills
		}
		if dies {
			b.mask[i] = 1
			b.vals[i] = 0
			r.Killed++
		}
	}
	return b.mask[:n]
}
