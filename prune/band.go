package prune

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/bits"
	"unsafe"

	"github.com/physarium/physarium-gguf/gguf"
	"github.com/physarium/physarium-gguf/kernel"
	"github.com/physarium/physarium-gguf/quantize"
)

// bandJob is one unit of work: a band of up to TileSize rows of one target
// tensor, or a piece of a non-target tensor to copy. The writer puts results
// back in seq order.
type bandJob struct {
	seq    int
	tensor int   // index into the plan
	band   int   // band index within the tensor (a target), else copyChunk piece
	off    int64 // file offset of the job's bytes in the input
	out    []byte
	ctrl   []byte // the control twin's bytes (Options.Control), else nil
	stats  bandStats
	err    error
	bufs   *jobBuffers
	// hashed is closed once the input's hash has taken the job's bytes
	// (or needs them no more): the surgery, which changes them, waits for
	// it.
	hashed chan struct{}
}

// bandStats are the figures of one band, added to its tensor's row.
type bandStats struct {
	processed, killed, zeroBefore, exactZero uint64
	reencoded                                uint64
	survivorSq                               float64
	survivorN                                uint64
	maxKilledAbs                             float64
	maxKilledRel                             float64
}

// jobBuffers are the bytes of a job, from the producer's read to the
// writer; the run keeps a pool of them.
type jobBuffers struct {
	raw    []byte    // the job's stored bytes, read by the producer; the surgery changes them in place
	store  []byte    // the memory raw lies in
	before []float32 // a target band's values as stored, decoded by a decoder
	ctrl   []byte    // the control twin's bytes: the same blocks re-encoded, nothing zeroed
}

// bandBuffers are a worker's reusable scratch buffers, sized for the
// largest band.
type bandBuffers struct {
	before []float32 // the band's values as stored (the job's, decoded)
	vals   []float32 // a chunk of values to re-encode, killed ones set to +0 (block types)
	check  []float32 // that chunk's re-encoded blocks decoded again
	mask   []byte    // the band's kill mask, row-major with the band's row length
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
	buf     bandBuffers
}

// decodeJob decodes the stored bytes of band job j of p into
// j.bufs.before.
func decodeJob(p *tensorPlan, j *bandJob) error {
	_, rows := p.band(j.band)
	jb := j.bufs
	jb.before = grow(jb.before, rows*p.row)
	return quantize.Decode(p.info.Type, jb.before, jb.raw)
}

// process does the surgery on one band, decoded by decodeJob: kernel, zero
// the kills, re-encode the blocks that hold a kill, keep the others' bytes.
func (w *worker) process(j *bandJob) error {
	p := &w.ps[j.tensor]
	row0, rows := p.band(j.band)
	b := &w.buf
	n := rows * p.row
	b.before = j.bufs.before[:n]
	// The kernel checks its weights itself (runKernel names the element
	// when it refuses); the row-ranked methods are checked here.
	if w.m.rowRanked() {
		if err := finite(b.before, p, row0); err != nil {
			return err
		}
	}

	b.mask = grow(b.mask, n)
	if err := w.decide(j, p, row0, rows); err != nil {
		return err
	}
	if j.hashed != nil {
		<-j.hashed
	}
	return w.surgery(j, p, row0, rows)
}

// surgery applies the band's mask (w.buf.mask) to its stored bytes
// (j.bufs.raw, decoded in w.buf.before) and sets j.out (and j.ctrl).
func (w *worker) surgery(j *bandJob, p *tensorPlan, row0, rows int) error {
	b, jb, st := &w.buf, j.bufs, &j.stats
	n, nb := rows*p.row, rows*p.rowBytes
	// Zero the kills; re-encode runs of blocks that hold one. The surgery
	// works in the stored bytes themselves (b.raw): every block
	// without a kill keeps its bytes.
	if w.control {
		jb.ctrl = grow(jb.ctrl, nb)
		copy(jb.ctrl, jb.raw)
	}
	bs, bb := p.blockSize, p.blockBytes
	if bs == 1 {
		return w.killElements(j, p, row0, n)
	}
	// Runs of blocks holding a kill are re-encoded a chunk of at most
	// chunkValues values at a time, so that zeroing, encoding, decoding
	// and measuring work on data that stays in the core's cache.
	chunk := max(1, chunkValues/bs)
	b.vals = grow(b.vals, chunk*bs)
	b.check = grow(b.check, chunk*bs)
	blocks := n / bs
	for blk := 0; blk < blocks; {
		if !w.killIn(b, blk, bs) {
			blk++
			continue
		}
		end := blk + 1
		for end < blocks && end-blk < chunk && w.killIn(b, end, bs) {
			end++
		}
		lo, hi := blk*bs, end*bs
		vals, check := b.vals[:hi-lo], b.check[:hi-lo]
		killed, bad := zeroKills(vals, b.before[lo:hi], b.mask[lo:hi])
		if bad != 0 {
			return fmt.Errorf("the kernel marked %d already-zero elements of rows %d-%d as kills", bad, row0, row0+rows-1)
		}
		st.killed += killed
		dst := jb.raw[blk*bb : end*bb]
		if err := quantize.EncodeKeepZeros(p.info.Type, dst, vals); err != nil {
			return err
		}
		if err := quantize.Decode(p.info.Type, check, dst); err != nil {
			return err
		}
		st.measure(check, b.before[lo:hi], b.mask[lo:hi])
		st.measureRel(check, b.mask[lo:hi], bs)
		if w.control {
			if err := quantize.EncodeKeepZeros(p.info.Type, jb.ctrl[blk*bb:end*bb], b.before[lo:hi]); err != nil {
				return err
			}
		}
		st.reencoded += uint64(end - blk)
		blk = end
	}
	j.out = jb.raw[:nb]
	if w.control {
		j.ctrl = jb.ctrl[:nb]
	}
	return nil
}

// chunkValues is about how many values a block-type band re-encodes at a
// time (16 KB of float32: zeroing, encoding and checking stay in cache).
const chunkValues = 4096

// byteNonZero maps each byte of x to 0x80 when it is not zero, else 0.
func byteNonZero(x uint64) uint64 {
	const low7, high = 0x7f7f7f7f_7f7f7f7f, 0x80808080_80808080
	return ((x & low7) + low7 | x) & high
}

// zeroKills copies before into vals with every element whose mask byte is
// not zero set to +0, and returns the number of kills and, of those, the
// weights that were already ±0 (a kernel bug if ever non-zero).
func zeroKills(vals, before []float32, mask []byte) (killed, bad uint64) {
	copy(vals, before)
	i := 0
	for ; i+8 <= len(mask); i += 8 {
		hit := byteNonZero(binary.LittleEndian.Uint64(mask[i:]))
		killed += uint64(bits.OnesCount64(hit))
		for hit != 0 {
			k := i + bits.TrailingZeros64(hit)>>3
			bad += uint64(b2u(math.Float32bits(before[k])<<1 == 0))
			vals[k] = 0
			hit &= hit - 1
		}
	}
	for ; i < len(mask); i++ {
		if mask[i] != 0 {
			killed++
			bad += uint64(b2u(math.Float32bits(before[i])<<1 == 0))
			vals[i] = 0
		}
	}
	return killed, bad
}

// measure adds to st what re-encoding did to a chunk: of the killed
// elements (mask byte not zero), those that read back as exactly ±0 and
// the largest magnitude one reads back as; of the others, the squared
// error against the stored values. The loop has no data-dependent branch.
func (st *bandStats) measure(got, before []float32, mask []byte) {
	var sq [2]float64
	var exact, kills uint64
	var maxBits uint32
	for i, m := range mask {
		kill := uint32(b2u(m != 0))
		g := math.Float32bits(got[i]) & 0x7fffffff & -kill // |got| of a kill, else 0
		maxBits = max(maxBits, g)
		exact += uint64(kill & b2u(g == 0))
		kills += uint64(kill)
		d := (float64(got[i]) - float64(before[i])) * float64(1-kill)
		sq[i&1] += d * d
	}
	st.exactZero += exact
	st.survivorSq += sq[0] + sq[1]
	st.survivorN += uint64(len(mask)) - kills
	st.maxKilledAbs = max(st.maxKilledAbs, float64(math.Float32frombits(maxBits)))
}

// measureRel adds to st the largest |value| a killed element reads back as
// relative to the largest |value| of its block (of bs elements): how close
// to zero a type without a zero code brings it.
func (st *bandStats) measureRel(got []float32, mask []byte, bs int) {
	for lo := 0; lo+bs <= len(got); lo += bs {
		var bm, km float64
		for i := lo; i < lo+bs; i++ {
			a := math.Abs(float64(got[i]))
			bm = max(bm, a)
			if mask[i] != 0 {
				km = max(km, a)
			}
		}
		if km > 0 {
			st.maxKilledRel = max(st.maxKilledRel, km/bm)
		}
	}
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
	b, jb, st, bb := &w.buf, j.bufs, &j.stats, p.blockBytes
	var killed, bad uint64
	if !w.control {
		// A kill clears the element's bytes (the zero of F32, F16 and
		// BF16), in one vector pass.
		var err error
		if killed, bad, err = quantize.ClearKilled(p.info.Type, jb.raw[:n*bb], b.mask[:n]); err != nil {
			return err
		}
	} else {
		for i, m := range b.mask[:n] {
			if m == 0 {
				continue
			}
			bad += uint64(b2u(b.before[i] == 0))
			copy(jb.raw[i*bb:(i+1)*bb], p.zero)
			killed++
			if w.control {
				if err := quantize.EncodeKeepZeros(p.info.Type, jb.ctrl[i*bb:(i+1)*bb], b.before[i:i+1]); err != nil {
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
	j.out = jb.raw[:n*bb]
	if w.control {
		j.ctrl = jb.ctrl[:n*bb]
	}
	return nil
}

// decide fills b.mask with the band's kills according to the method and
// counts the processed and already-zero weights.
func (w *worker) decide(j *bandJob, p *tensorPlan, row0, rows int) error {
	b := &w.buf
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
			magnitudeMask(p, j.band, b.before[:n], b.mask[:n])
			return nil
		}
		if m.method == ActivationFlow && m.rank == RankFlowShare {
			b.score = grow(b.score, n)
			b.idx = grow(b.idx, n)
			shareBand(b.score, b.before, act, rows, p.row)
			rowSelect(b.before[:n], b.score[:n], b.mask[:n], BandQuota(row0%p.rows, rows, p.row, m.sparsity), b.idx)
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
		scoreBand(b.score, b.before, act, rows, p.row, flow, mould, b.colSum)
		for r := 0; r < rows; r++ {
			lo, hi := r*p.row, (r+1)*p.row
			rowSelect(b.before[lo:hi], b.score[lo:hi], b.mask[lo:hi], RowQuota(row0%p.rows+r, p.row, m.sparsity), b.idx)
		}
		return nil
	}
	return w.runKernel(w.k, b, p, row0, rows, act, st)
}

// runKernel runs k on the band's tiles (one per TileSize columns, food
// |w|*act when act is set), which write their masks into b.mask; st, when
// set, receives the processed and already-zero counts.
func (w *worker) runKernel(k *kernel.Kernel, b *bandBuffers, p *tensorPlan, row0, rows int, act []float32, st *bandStats) error {
	n := rows * p.row
	b.tiles = b.tiles[:0]
	for c0 := 0; c0 < p.row; c0 += TileSize {
		cols := min(TileSize, p.row-c0)
		b.tiles = append(b.tiles, kernel.Tile{
			W: b.before[c0:], Rows: rows, Cols: cols, Stride: p.row, Act: tileAct(act, c0),
			Mask: b.mask[c0:n], MaskStride: p.row,
		})
	}
	if err := k.Run(b.tiles); err != nil {
		if err := finite(b.before[:n], p, row0); err != nil {
			return err
		}
		return fmt.Errorf("kernel on rows %d-%d: %w", row0, row0+rows-1, err)
	}
	if st != nil {
		for i := range b.tiles {
			st.processed += uint64(b.tiles[i].Stats.Weights)
			st.zeroBefore += uint64(b.tiles[i].Stats.ZeroBefore)
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
