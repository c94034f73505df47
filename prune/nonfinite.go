package prune

import (
	"fmt"

	"github.com/physarium/physarium-gguf/gguf"
	"github.com/physarium/physarium-gguf/method"
	"github.com/physarium/physarium-gguf/quantize"
)

// NonfiniteTensor is a tensor that is not a target and holds NaN or
// infinite values, which the run copied byte for byte.
type NonfiniteTensor struct {
	Name  string `json:"name"`
	Count uint64 `json:"count"` // its NaN and infinite values
}

// nonfiniteValues is the scratch of a decoder that counts the NaN and
// infinities of copied tensors.
type nonfiniteValues struct {
	vals  []float32
	block []byte
}

// maxCountValues bounds the values decoded at a time by countCopied.
const maxCountValues = 1 << 16

// countCopied counts the NaN and infinite values of the blocks of tensor p
// (not a target) that start in its bytes [start, start+len(raw)), raw
// holding those bytes; the block that runs past their end is read whole
// from f. A type that cannot be decoded counts 0.
func (nv *nonfiniteValues) countCopied(f *gguf.File, p *tensorPlan, start int64, raw []byte) (uint64, error) {
	t := p.info
	ti, ok := t.Type.Info()
	if !ok || !quantize.CanDecode(t.Type) {
		return 0, nil
	}
	bs, bb := ti.BlockSize, int64(ti.BlockBytes)
	first := (bb - start%bb) % bb // the first block that starts here
	var n uint64
	per := max(1, maxCountValues/bs) * int(bb)
	whole := first + (int64(len(raw))-first)/bb*bb
	for lo := first; lo < whole; lo += int64(per) {
		hi := min(lo+int64(per), whole)
		c, err := nv.count(t, raw[lo:hi], bs, bb)
		if err != nil {
			return 0, err
		}
		n += c
	}
	if whole >= int64(len(raw)) {
		return n, nil
	}
	// The last block starts here and ends in the next piece.
	nv.block = grow(nv.block, int(bb))
	off := f.DataOffset + int64(t.Offset) + start + whole
	if _, err := f.ReadAt(nv.block, off); err != nil {
		return 0, fmt.Errorf("read block at byte %d: %w", start+whole, err)
	}
	c, err := nv.count(t, nv.block, bs, bb)
	return n + c, err
}

// count decodes whole blocks and counts their NaN and infinite values.
func (nv *nonfiniteValues) count(t gguf.TensorInfo, raw []byte, bs int, bb int64) (uint64, error) {
	nv.vals = grow(nv.vals, int(int64(len(raw))/bb)*bs)
	if err := quantize.Decode(t.Type, nv.vals, raw); err != nil {
		return 0, err
	}
	return countNonfinite(nv.vals), nil
}

// countNonfinite counts the NaN and infinite values of v.
func countNonfinite(v []float32) uint64 {
	var n uint64
	for {
		i := method.FirstNonFinite(v)
		if i < 0 {
			return n
		}
		n++
		v = v[i+1:]
	}
}
