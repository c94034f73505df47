package method

import (
	"fmt"
	"math"
	"slices"
	"unsafe"

	"github.com/physarium/physarium-gguf/errata"
	"github.com/physarium/physarium-gguf/kernel"
)

// grow returns s with length n, reallocated only when too small.
func grow[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n)
	}
	return s[:n]
}

// tileRunner runs a kernel on the tiles of bands.
type tileRunner struct {
	k     *kernel.Kernel
	tiles []kernel.Tile
	mask  []byte    // scratch mask of Score
	d     []float32 // D_T of Score's tiles, tile after tile
}

// newTileRunner returns a runner of a kernel with the given constants.
func newTileRunner(impl kernel.Impl, p kernel.Params) (*tileRunner, error) {
	k, err := kernel.New(impl, p)
	if err != nil {
		return nil, err
	}
	return &tileRunner{k: k}, nil
}

// run runs the kernel on the band's tiles (one per errata.TileSize columns,
// food |w|*Act when Act is set), which write their masks into mask, and
// returns the tiles' processed and already-zero counts.
func (tr *tileRunner) run(b *Band, mask []byte) (Counts, error) {
	n := b.Rows * b.Cols
	tr.tiles = tr.tiles[:0]
	for c0 := 0; c0 < b.Cols; c0 += errata.TileSize {
		var act []float32
		if b.Act != nil {
			act = b.Act[c0:]
		}
		tr.tiles = append(tr.tiles, kernel.Tile{
			W: b.Values[c0:], Rows: b.Rows, Cols: min(errata.TileSize, b.Cols-c0), Stride: b.Cols, Act: act,
			Mask: mask[c0:n], MaskStride: b.Cols,
		})
	}
	if err := tr.k.Run(tr.tiles); err != nil {
		if err := finite(b); err != nil {
			return Counts{}, err
		}
		return Counts{}, fmt.Errorf("kernel on rows %d-%d: %w", b.Row0, b.Row0+b.Rows-1, err)
	}
	var c Counts
	for i := range tr.tiles {
		c.Processed += uint64(tr.tiles[i].Stats.Weights)
		c.ZeroBefore += uint64(tr.tiles[i].Stats.ZeroBefore)
	}
	return c, nil
}

// kernelDecider takes the kernel's own mask: the mould's kill rule in
// natural mode, the round(s*n) smallest D_T of each tile in sparsity mode.
type kernelDecider struct{ *tileRunner }

// Decide implements Decider.
func (d kernelDecider) Decide(b *Band, mask []byte) (Counts, error) { return d.run(b, mask) }

// newKernelDecider is the decider of the methods that take the kernel's
// mask.
func newKernelDecider(cfg Config) (Decider, error) {
	tr, err := newTileRunner(cfg.Impl, cfg.Params)
	if err != nil {
		return nil, err
	}
	return kernelDecider{tr}, nil
}

// startRanked begins the decision of a method that ranks weights itself:
// it refuses NaN and infinities, clears the mask and counts every weight
// as processed.
func startRanked(b *Band, mask []byte) (Counts, error) {
	if err := finite(b); err != nil {
		return Counts{}, err
	}
	n := b.Rows * b.Cols
	clear(mask[:n])
	c := Counts{Processed: uint64(n)}
	for _, v := range b.Values[:n] {
		if v == 0 {
			c.ZeroBefore++
		}
	}
	return c, nil
}

// selectLowest marks in mask the want - zeros lowest-scoring non-zero
// weights of vals (ties: lowest index), where zeros counts the weights of
// vals that are already zero, and returns how many it marked. idx is
// scratch; it returns it grown.
func selectLowest(vals, score []float32, mask []byte, want int, idx []int32) (int, []int32) {
	idx = idx[:0]
	for i, v := range vals {
		if v != 0 {
			idx = append(idx, int32(i))
		}
	}
	want -= len(vals) - len(idx)
	if want <= 0 {
		return 0, idx
	}
	want = min(want, len(idx))
	slices.SortFunc(idx, func(a, b int32) int {
		sa, sb := score[a], score[b]
		switch {
		case sa < sb:
			return -1
		case sa > sb:
			return 1
		}
		return int(a - b)
	})
	for _, i := range idx[:want] {
		mask[i] = 1
	}
	return want, idx
}

// selectRows marks, in each row of the band, the lowest-scoring weights
// down to the row's errata.RowQuota.
func selectRows(b *Band, score []float32, mask []byte, s float64, idx []int32) []int32 {
	for r := range b.Rows {
		lo, hi := r*b.Cols, (r+1)*b.Cols
		_, idx = selectLowest(b.Values[lo:hi], score[lo:hi], mask[lo:hi], errata.RowQuota(b.MatrixRow0+r, b.Cols, s), idx)
	}
	return idx
}

// magnitudes fills score with |w|*a_i (a_i = 1 where act is nil).
func magnitudes(score, vals, act []float32, cols int) {
	for x, v := range vals {
		f := float32(math.Abs(float64(v)))
		if act != nil {
			f *= act[x%cols]
		}
		score[x] = f
	}
}

// finite returns an error naming the band's first NaN or infinity, or nil.
func finite(b *Band) error {
	v := b.Values[:b.Rows*b.Cols]
	i := FirstNonFinite(v)
	if i < 0 {
		return nil
	}
	e := uint64(b.Row0)*uint64(b.Cols) + uint64(i)
	return fmt.Errorf("element %d (row %d, column %d) is %v: refusing to prune a tensor with NaN or Inf", e, b.Row0+i/b.Cols, i%b.Cols, v[i])
}

// FirstNonFinite returns the index of the first NaN or infinity in v, or
// -1. It reads two values per 64-bit word: a value's exponent field is all
// ones exactly when adding 1 to that field carries into the sign bit, and
// the carry stays inside the value's own 32 bits, so one OR-accumulated
// word per chunk says whether the chunk needs a closer look.
func FirstNonFinite(v []float32) int {
	const (
		exp   = 0x7f800000_7f800000
		one   = 0x00800000_00800000
		carry = 0x80000000_80000000
	)
	for lo := 0; lo < len(v); lo += 1024 {
		c := v[lo:min(lo+1024, len(v))]
		words := unsafe.Slice((*uint64)(unsafe.Pointer(unsafe.SliceData(c))), len(c)/2)
		var acc uint64
		for _, w := range words {
			acc |= w&exp + one
		}
		if len(c)%2 == 1 {
			acc |= uint64(math.Float32bits(c[len(c)-1]))&exp + one
		}
		if acc&carry == 0 {
			continue
		}
		for i, x := range c {
			if math.Float32bits(x)&0x7f800000 == 0x7f800000 {
				return lo + i
			}
		}
	}
	return -1
}
