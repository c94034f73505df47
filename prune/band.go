package prune

import (
	"fmt"
	"math"
	"unsafe"

	"github.com/physarium/physarium-gguf/gguf"
	"github.com/physarium/physarium-gguf/kernel"
	"github.com/physarium/physarium-gguf/quantize"
)

// bandJob is one unit of work: a band of up to TileSize rows of one target
// tensor, or a whole non-target tensor to copy. The writer puts results back
// in seq order.
type bandJob struct {
	seq    int
	tensor int // index into the plan
	band   int // band index within the tensor; -1 for a copy
	out    []byte
	ctrl   []byte // the control twin's bytes (Options.Control), else nil
	stats  bandStats
	err    error
	bufs   *bandBuffers
}

// bandStats are the figures of one band, added to its tensor's row.
type bandStats struct {
	processed, killed, zeroBefore, exactZero uint64
	reencoded                                uint64
	survivorSq                               float64
	survivorN                                uint64
	maxKilledAbs                             float64
}

// bandBuffers are a worker's reusable buffers, sized for the largest band.
type bandBuffers struct {
	raw    []byte    // the band's stored bytes, read by the producer
	out    []byte    // the band's bytes after surgery: raw, changed in place
	ctrl   []byte    // the control twin's bytes: the same blocks re-encoded, nothing zeroed
	vals   []float32 // decoded values; killed ones set to 0 (block types)
	before []float32 // decoded values as stored: vals itself for single-value types, else orig
	orig   []float32 // the storage of before for block types
	check  []float32 // re-encoded blocks decoded again
	mask   []byte    // the band's kill mask, row-major with the band's row length
	tmask  []byte    // the tiles' own masks, packed one after another
	tiles  []kernel.Tile
	score  []float32 // row-ranked methods: the score of every weight
	mould  []byte    // mould-informed ranks: the mould's natural-mode mask
	colSum []float64 // flow ranks: column sums of the food over the band
	idx    []int32   // row selection scratch
}

func grow[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n)
	}
	return s[:n]
}

// worker runs the kernel on bands; one per goroutine.
type worker struct {
	f       *gguf.File
	k       *kernel.Kernel
	ps      []tensorPlan
	control bool // also produce the control twin's bytes
	m       *methodPlan
	kn      *kernel.Kernel // natural-mode kernel of the mould-informed ranks
}

// process does the surgery on one band: decode, kernel, zero the kills,
// re-encode the blocks that hold a kill, keep the others' bytes.
func (w *worker) process(j *bandJob) error {
	p := &w.ps[j.tensor]
	row0, rows := p.band(j.band)
	b := j.bufs
	n := rows * p.row
	nb := rows * p.rowBytes
	// Single-value types never change vals (kills are cleared in the
	// stored bytes), so before is vals itself; block types zero the kills
	// in vals and keep the stored values apart for the survivors' error.
	b.vals = grow(b.vals, n)
	b.before = b.vals
	if p.blockSize > 1 {
		b.orig = grow(b.orig, n)
		b.before = b.orig
	}
	if err := quantize.Decode(p.info.Type, b.before, b.raw); err != nil {
		return err
	}
	// The kernel checks its weights itself (runKernel names the element
	// when it refuses); the row-ranked methods are checked here.
	if w.m.rowRanked() {
		if err := finite(b.before, p, row0); err != nil {
			return err
		}
	}
	if p.blockSize > 1 {
		copy(b.vals, b.before)
	}

	b.mask = grow(b.mask, n)
	if err := w.decide(j, p, row0, rows); err != nil {
		return err
	}
	st := &j.stats

	// Zero the kills; re-encode runs of blocks that hold one. The surgery
	// works in the stored bytes themselves (b.out is b.raw): every block
	// without a kill keeps its bytes.
	if w.control {
		b.ctrl = grow(b.ctrl, nb)
		copy(b.ctrl, b.raw)
	}
	b.out = b.raw[:nb]
	b.check = grow(b.check, n)
	bs, bb := p.blockSize, p.blockBytes
	if bs == 1 {
		return w.killElements(j, p, row0, n)
	}
	blocks := n / bs
	for blk := 0; blk < blocks; {
		if !w.killIn(b, blk, bs) {
			blk++
			continue
		}
		end := blk + 1
		for end < blocks && w.killIn(b, end, bs) {
			end++
		}
		lo, hi := blk*bs, end*bs
		// Branch-free: vals keeps its bits where the mask is 0 and becomes
		// +0 where it is 1; a kill of a weight that was already zero is a
		// kernel bug, reported below.
		var killed, bad uint64
		for i, m := range b.mask[lo:hi] {
			keep := uint32(m) - 1 // 0xFFFFFFFF when kept, 0 when killed
			v := math.Float32bits(b.before[lo+i])
			b.vals[lo+i] = math.Float32frombits(v & keep)
			killed += uint64(m)
			bad += uint64(m) & uint64(b2u(v<<1 == 0))
		}
		if bad != 0 {
			return fmt.Errorf("the kernel marked %d already-zero elements of rows %d-%d as kills", bad, row0, row0+rows-1)
		}
		st.killed += killed
		dst := b.out[blk*bb : end*bb]
		if err := quantize.EncodeKeepZeros(p.info.Type, dst, b.vals[lo:hi]); err != nil {
			return err
		}
		if err := quantize.Decode(p.info.Type, b.check[lo:hi], dst); err != nil {
			return err
		}
		var exact, survivors uint64
		var sq, maxKilled float64
		for i, m := range b.mask[lo:hi] {
			got := b.check[lo+i]
			if m != 0 {
				exact += uint64(b2u(got == 0))
				maxKilled = max(maxKilled, math.Abs(float64(got)))
				continue
			}
			d := float64(got) - float64(b.before[lo+i])
			sq += d * d
			survivors++
		}
		st.exactZero += exact
		st.survivorSq += sq
		st.survivorN += survivors
		st.maxKilledAbs = max(st.maxKilledAbs, maxKilled)
		if w.control {
			if err := quantize.EncodeKeepZeros(p.info.Type, b.ctrl[blk*bb:end*bb], b.before[lo:hi]); err != nil {
				return err
			}
		}
		st.reencoded += uint64(end - blk)
		blk = end
	}
	j.out = b.out[:nb]
	if w.control {
		j.ctrl = b.ctrl[:nb]
	}
	return nil
}

// killIn reports whether block blk (of bs elements) holds a kill.
func (w *worker) killIn(b *bandBuffers, blk, bs int) bool {
	for _, m := range b.mask[blk*bs : (blk+1)*bs] {
		if m != 0 {
			return true
		}
	}
	return false
}

// killElements is the surgery of a band of a type whose blocks are single
// elements (F32, F16, BF16): each kill is its own block, re-encoded as the
// type's zero, and every other element keeps its bytes.
func (w *worker) killElements(j *bandJob, p *tensorPlan, row0, n int) error {
	b, st, bb := j.bufs, &j.stats, p.blockBytes
	var killed, bad uint64
	if allZero(p.zero) && !w.control {
		// The zero is all-zero bytes (F32, F16, BF16): a kill clears the
		// element's bytes, in one vector pass.
		var err error
		if killed, bad, err = quantize.ClearKilled(p.info.Type, b.out[:n*bb], b.mask[:n]); err != nil {
			return err
		}
	} else {
		for i, m := range b.mask[:n] {
			if m == 0 {
				continue
			}
			bad += uint64(b2u(b.before[i] == 0))
			copy(b.out[i*bb:(i+1)*bb], p.zero)
			killed++
			if w.control {
				if err := quantize.EncodeKeepZeros(p.info.Type, b.ctrl[i*bb:(i+1)*bb], b.before[i:i+1]); err != nil {
					return err
				}
			}
		}
	}
	if bad != 0 {
		return fmt.Errorf("the kernel marked %d already-zero elements of rows %d-%d as kills", bad, row0, row0+n/p.row-1)
	}
	st.killed += killed
	st.reencoded += killed
	if p.zeroExact {
		st.exactZero += killed
	}
	j.out = b.out[:n*bb]
	if w.control {
		j.ctrl = b.ctrl[:n*bb]
	}
	return nil
}

// allZero reports whether every byte of b is 0.
func allZero(b []byte) bool {
	for _, x := range b {
		if x != 0 {
			return false
		}
	}
	return true
}

// decide fills b.mask with the band's kills according to the method and
// counts the processed and already-zero weights.
func (w *worker) decide(j *bandJob, p *tensorPlan, row0, rows int) error {
	b := j.bufs
	n := rows * p.row
	st := &j.stats
	mat := row0 / p.rows
	var act []float32
	if p.act != nil {
		act = p.act[mat*p.row : (mat+1)*p.row]
	}
	m := w.m
	switch {
	case m.rowRanked():
		clear(b.mask[:n])
		st.processed += uint64(n)
		for _, v := range b.before[:n] {
			if v == 0 {
				st.zeroBefore++
			}
		}
		if m.method == Magnitude {
			magnitudeMask(p, j.band, b.vals[:n], b.mask[:n])
			return nil
		}
		if m.method == ActivationFlow && m.rank == RankFlowShare {
			b.score = grow(b.score, n)
			b.idx = grow(b.idx, n)
			shareBand(b.score, b.vals, act, rows, p.row)
			rowSelect(b.vals[:n], b.score[:n], b.mask[:n], BandQuota(row0%p.rows, rows, p.row, m.sparsity), b.idx)
			return nil
		}
		var mould []byte
		if m.method == ActivationFlow && m.rank.usesMould() {
			if err := w.runKernel(w.kn, b, p, row0, rows, act, nil); err != nil {
				return err
			}
			b.mould = grow(b.mould, n)
			copy(b.mould, b.mask[:n])
			clear(b.mask[:n])
			mould = b.mould
		}
		b.score = grow(b.score, n)
		b.colSum = grow(b.colSum, p.row)
		b.idx = grow(b.idx, p.row)
		flow := m.method == ActivationFlow && m.rank != RankRowMould
		scoreBand(b.score, b.vals, act, rows, p.row, flow, mould, b.colSum)
		for r := 0; r < rows; r++ {
			lo, hi := r*p.row, (r+1)*p.row
			rowSelect(b.vals[lo:hi], b.score[lo:hi], b.mask[lo:hi], RowQuota(row0%p.rows+r, p.row, m.sparsity), b.idx)
		}
		return nil
	}
	return w.runKernel(w.k, b, p, row0, rows, act, st)
}

// runKernel runs k on the band's tiles (one per TileSize columns, food
// |w|*act when act is set) and copies their masks into b.mask; st, when
// set, receives the processed and already-zero counts.
func (w *worker) runKernel(k *kernel.Kernel, b *bandBuffers, p *tensorPlan, row0, rows int, act []float32, st *bandStats) error {
	n := rows * p.row
	b.tmask = grow(b.tmask, n)
	b.tiles = b.tiles[:0]
	for c0, used := 0, 0; c0 < p.row; c0 += TileSize {
		cols := min(TileSize, p.row-c0)
		b.tiles = append(b.tiles, kernel.Tile{
			W: b.vals[c0:], Rows: rows, Cols: cols, Stride: p.row, Act: tileAct(act, c0),
			Mask: b.tmask[used : used+rows*cols],
		})
		used += rows * cols
	}
	if err := k.Run(b.tiles); err != nil {
		if err := finite(b.before[:n], p, row0); err != nil {
			return err
		}
		return fmt.Errorf("kernel on rows %d-%d: %w", row0, row0+rows-1, err)
	}
	for i := range b.tiles {
		t := &b.tiles[i]
		if st != nil {
			st.processed += uint64(t.Stats.Weights)
			st.zeroBefore += uint64(t.Stats.ZeroBefore)
		}
		c0 := i * TileSize
		for r := 0; r < rows; r++ {
			copy(b.mask[r*p.row+c0:r*p.row+c0+t.Cols], t.Mask[r*t.Cols:(r+1)*t.Cols])
		}
	}
	return nil
}

// tileAct returns the activation scales of the tile starting at column c0,
// or nil for v1 food.
func tileAct(act []float32, c0 int) []float32 {
	if act == nil {
		return nil
	}
	return act[c0:]
}

// finite returns an error naming the first NaN or infinity of the band
// whose values are v and whose first row is row0, or nil.
func finite(v []float32, p *tensorPlan, row0 int) error {
	i := firstNonFinite(v)
	if i < 0 {
		return nil
	}
	e := uint64(row0)*uint64(p.row) + uint64(i)
	return fmt.Errorf("element %d (row %d, column %d) is %v: refusing to prune a tensor with NaN or Inf", e, row0+i/p.row, i%p.row, v[i])
}

// firstNonFinite returns the index of the first NaN or infinity in v, or -1.
// It reads two values per 64-bit word: a value's exponent field is all
// ones exactly when adding 1 to that field carries into the sign bit, and
// the carry stays inside the value's own 32 bits, so one OR-accumulated
// word per chunk says whether the chunk needs a closer look.
func firstNonFinite(v []float32) int {
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

// b2u is 1 for true and 0 for false, without a branch.
func b2u(b bool) uint32 {
	var u uint32
	if b {
		u = 1
	}
	return u
}
