package prune

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"

	"github.com/physarium/physarium-gguf/quantize"
)

// bandStats are the figures of one band, added to its tensor's row.
type bandStats struct {
	processed, killed, zeroBefore, exactZero uint64
	reencoded                                uint64
	survivorSq                               float64
	survivorN                                uint64
	maxKilledAbs                             float64
	maxKilledRel                             float64
	nonfinite                                uint64  // a copied piece's NaN and infinite values
	moved                                    uint64  // survivors the method changed
	outErr, outEnergy                        float64 // the layer-output change and the dense output energy (reconstruction)
}

// surgery applies the band's mask (w.buf.mask) to its stored bytes
// (j.bufs.raw, decoded in w.buf.before) and sets j.out (and j.ctrl).
func (w *worker) surgery(j *bandJob, p *tensorPlan, row0, rows int) error {
	if p.retype != nil {
		return w.retypeBand(j, p, row0, rows)
	}
	b, bufs, st := &w.buf, j.bufs, &j.stats
	n, nb := rows*p.rowLen, rows*p.rowBytes
	// Zero the kills; re-encode runs of blocks that hold one. The surgery
	// works in the stored bytes themselves (b.raw): every block
	// without a kill keeps its bytes.
	if w.control {
		bufs.ctrl = grow(bufs.ctrl, nb)
		copy(bufs.ctrl, bufs.raw)
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
		if !w.touched(b, blk, bs) {
			blk++
			continue
		}
		end := blk + 1
		for end < blocks && end-blk < chunk && w.touched(b, end, bs) {
			end++
		}
		lo, hi := blk*bs, end*bs
		vals, check := b.vals[:hi-lo], b.check[:hi-lo]
		killed, bad := zeroKills(vals, b.before[lo:hi], b.mask[lo:hi])
		if bad != 0 {
			return fmt.Errorf("the kernel marked %d already-zero elements of rows %d-%d as kills", bad, row0, row0+rows-1)
		}
		st.killed += killed
		ref := b.before[lo:hi]
		if b.after != nil {
			// The method's survivors replace the stored values; the
			// survivor error measured below is then the re-encoding's
			// alone, against the values the method asked for.
			ref = b.after[lo:hi]
			for i, m := range b.mask[lo:hi] {
				if m == 0 {
					vals[i] = ref[i]
				}
			}
		}
		dst := bufs.raw[blk*bb : end*bb]
		qw := p.chunkWeights(&b.qw, row0, lo, hi)
		if err := quantize.EncodeKeepZerosWeighted(p.info.Type, dst, vals, qw); err != nil {
			return err
		}
		if err := quantize.Decode(p.info.Type, check, dst); err != nil {
			return err
		}
		st.measure(check, ref, b.mask[lo:hi])
		if p.noZeroCode {
			st.measureRel(check, b.mask[lo:hi], bs)
		}
		if w.control {
			if err := quantize.EncodeKeepZerosWeighted(p.info.Type, bufs.ctrl[blk*bb:end*bb], b.before[lo:hi], qw); err != nil {
				return err
			}
		}
		st.reencoded += uint64(end - blk)
		blk = end
	}
	j.out = bufs.raw[:nb]
	if w.control {
		j.ctrl = bufs.ctrl[:nb]
	}
	return nil
}

// chunkValues is about how many values a block-type band re-encodes at a
// time (16 KB of float32: zeroing, encoding and checking stay in cache).
const chunkValues = 4096

// touched reports whether block blk (of bs elements) holds a kill or,
// when the method rewrites survivors, a changed value.
func (w *worker) touched(b *bandBuffers, blk, bs int) bool {
	if w.killIn(b, blk, bs) {
		return true
	}
	if b.after == nil {
		return false
	}
	lo, hi := blk*bs, (blk+1)*bs
	for i, v := range b.after[lo:hi] {
		if math.Float32bits(v) != math.Float32bits(b.before[lo+i]) {
			return true
		}
	}
	return false
}

// killIn reports whether block blk (of bs elements) holds a kill.
func (w *worker) killIn(b *bandBuffers, blk, bs int) bool {
	m := b.mask[blk*bs : (blk+1)*bs]
	for ; len(m) >= 8; m = m[8:] {
		if binary.LittleEndian.Uint64(m) != 0 {
			return true
		}
	}
	for _, x := range m {
		if x != 0 {
			return true
		}
	}
	return false
}

// killElements is the surgery of a band of a type whose blocks are single
// elements (F32, F16, BF16): each kill is its own block, re-encoded as the
// type's zero, and every other element keeps its bytes.
func (w *worker) killElements(j *bandJob, p *tensorPlan, row0, n int) error {
	b, bufs, st, bb := &w.buf, j.bufs, &j.stats, p.blockBytes
	if b.after != nil {
		return w.rewriteElements(j, p, row0, n)
	}
	var killed, bad uint64
	if !w.control {
		// A kill clears the element's bytes (the zero of F32, F16 and
		// BF16), in one vector pass.
		var err error
		if killed, bad, err = quantize.ClearKilled(p.info.Type, bufs.raw[:n*bb], b.mask[:n]); err != nil {
			return err
		}
	} else {
		for i, m := range b.mask[:n] {
			if m == 0 {
				continue
			}
			bad += uint64(b2u(b.before[i] == 0))
			copy(bufs.raw[i*bb:(i+1)*bb], p.zero)
			killed++
			if err := quantize.EncodeKeepZeros(p.info.Type, bufs.ctrl[i*bb:(i+1)*bb], b.before[i:i+1]); err != nil {
				return err
			}
		}
	}
	if bad != 0 {
		return fmt.Errorf("the kernel marked %d already-zero elements of rows %d-%d as kills", bad, row0, row0+n/p.rowLen-1)
	}
	st.killed += killed
	st.reencoded += killed
	if p.zeroExact {
		st.exactZero += killed
	}
	j.out = bufs.raw[:n*bb]
	if w.control {
		j.ctrl = bufs.ctrl[:n*bb]
	}
	return nil
}

// rewriteElements is killElements for a method that also rewrites the
// survivors: every killed element becomes the type's zero and every
// survivor whose value changed is encoded from its new value; the others
// keep their bytes.
func (w *worker) rewriteElements(j *bandJob, p *tensorPlan, row0, n int) error {
	b, bufs, st, bb := &w.buf, j.bufs, &j.stats, p.blockBytes
	var killed, bad, changed uint64
	for i, m := range b.mask[:n] {
		el := bufs.raw[i*bb : (i+1)*bb]
		switch {
		case m != 0:
			bad += uint64(b2u(b.before[i] == 0))
			copy(el, p.zero)
			killed++
		case math.Float32bits(b.after[i]) != math.Float32bits(b.before[i]):
			var was [8]byte
			copy(was[:], el)
			if err := quantize.EncodeKeepZeros(p.info.Type, el, b.after[i:i+1]); err != nil {
				return err
			}
			if bytes.Equal(was[:bb], el) {
				continue // the new value rounds to the stored one
			}
			changed++
		default:
			continue
		}
		if w.control {
			if err := quantize.EncodeKeepZeros(p.info.Type, bufs.ctrl[i*bb:(i+1)*bb], b.before[i:i+1]); err != nil {
				return err
			}
		}
	}
	if bad != 0 {
		return fmt.Errorf("the method marked %d already-zero elements of rows %d-%d as kills", bad, row0, row0+n/p.rowLen-1)
	}
	st.killed += killed
	st.reencoded += killed + changed
	if p.zeroExact {
		st.exactZero += killed
	}
	j.out = bufs.raw[:n*bb]
	if w.control {
		j.ctrl = bufs.ctrl[:n*bb]
	}
	return nil
}

// zeroKills copies before into vals with every element whose mask byte is
// not zero set to +0, and returns the number of kills and, of those, the
// weights that were already ±0 (a kernel bug if ever non-zero).
func zeroKills(vals, before []float32, mask []byte) (killed, bad uint64) {
	return quantize.ZeroKilled(vals, before, mask)
}

// measure adds to st what re-encoding did to a chunk: of the killed
// elements (mask byte not zero), those that read back as exactly ±0 and
// the largest magnitude one reads back as; of the others, the squared
// error against the stored values (quantize.MeasureKilled).
func (st *bandStats) measure(got, before []float32, mask []byte) {
	m := quantize.MeasureKilled(got, before, mask)
	st.exactZero += m.ExactZero
	st.survivorSq += m.SurvivorSq
	st.survivorN += uint64(len(mask)) - m.Killed
	st.maxKilledAbs = max(st.maxKilledAbs, float64(m.MaxKilledAbs))
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
