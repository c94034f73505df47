package prune

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/bits"

	"github.com/physarium/physarium-gguf/method"
	"github.com/physarium/physarium-gguf/quantize"
)

// bandJob is one unit of work: a band of up to errata.TileSize rows of one target
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
}

func grow[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n)
	}
	return s[:n]
}

// worker decides bands and does their surgery; one per goroutine.
type worker struct {
	plans   []tensorPlan
	control bool           // also produce the control twin's bytes
	decider method.Decider // the method's, this worker's own
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

// process does the surgery on one band, decoded by decodeJob: the
// method decides the kills, the surgery zeroes them, re-encodes the blocks
// that hold a kill and keeps the others' bytes.
func (w *worker) process(j *bandJob) error {
	p := &w.plans[j.tensor]
	row0, rows := p.band(j.band)
	b := &w.buf
	n := rows * p.row
	b.before = j.bufs.before[:n]
	b.mask = grow(b.mask, n)
	band := method.Band{
		Values: b.before, Rows: rows, Cols: p.row, Row0: row0, MatrixRow0: row0 % p.rows,
		Index: j.band, Act: p.matrixAct(row0), State: p.state,
	}
	c, err := w.decider.Decide(&band, b.mask)
	if err != nil {
		return err
	}
	j.stats.processed += c.Processed
	j.stats.zeroBefore += c.ZeroBefore
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

// b2u is 1 for true and 0 for false, without a branch.
func b2u(b bool) uint32 {
	var u uint32
	if b {
		u = 1
	}
	return u
}
