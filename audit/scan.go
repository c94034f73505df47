package audit

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math"

	"github.com/physarium/physarium-gguf/errata"
	"github.com/physarium/physarium-gguf/gguf"
	"github.com/physarium/physarium-gguf/quantize"
)

// scan is what one pass over a target tensor found.
type scan struct {
	decoded bool
	zeros   uint64 // weights reading exactly 0 in the file

	// With the original.
	against        bool
	zeroBefore     uint64 // zero in the original
	zeroed         uint64 // non-zero in the original, zero now
	lostZero       uint64 // zero in the original, non-zero now
	changedWeights uint64 // value (bits) differs
	notKill        uint64 // changed weights that are not non-zero -> 0
	nonzeroChanged uint64 // non-zero original weights inside changed blocks
	blocks         uint64
	changedBlocks  uint64
	noKillBlocks   uint64 // changed blocks without a weight made zero
	firstNoKill    int64  // index of the first such block, -1 if none
	firstNotKill   int64  // element index of the first non-kill change, -1
	firstLost      int64  // element index of the first lost zero, -1
	// segZeros counts the original's zeros per row and 256-column segment
	// (row-major, ceil(ne[0]/256) segments a row) of a matrix tensor, for
	// the sparsity-mode count rules (ruleKills).
	segZeros []uint16
	// rowLen and segs are the row length and 256-column segments a row
	// of segZeros (0 when the tensor is no matrix).
	rowLen, segs uint64
}

// scanTarget decodes a target tensor of f (and, when ot is given, the same
// tensor of the original o) chunk by chunk and counts.
func scanTarget(ctx context.Context, f, o *gguf.File, t gguf.TensorInfo, ot *gguf.TensorInfo, chunk int) (scan, error) {
	s := scan{firstNoKill: -1, firstNotKill: -1, firstLost: -1, against: ot != nil}
	ti, ok := t.Type.Info()
	if !ok || !quantize.CanDecode(t.Type) {
		return s, nil
	}
	s.decoded = true
	bs, bb := ti.BlockSize, ti.BlockBytes
	nBlocks := t.Elements() / uint64(bs)
	s.blocks = nBlocks
	per := max(1, chunk/bs) // blocks per chunk
	file := chunkReader{f: f, t: t, raw: make([]byte, per*bb), vals: make([]float32, per*bs)}
	var orig chunkReader
	if ot != nil {
		orig = chunkReader{f: o, t: *ot, raw: make([]byte, per*bb), vals: make([]float32, per*bs)}
		s.segments(t)
	}
	for b0 := uint64(0); b0 < nBlocks; b0 += uint64(per) {
		if err := ctx.Err(); err != nil {
			return s, err
		}
		n := int(min(uint64(per), nBlocks-b0))
		rf, vf, err := file.read(b0, n, bs, bb)
		if err != nil {
			return s, err
		}
		if ot == nil {
			for _, v := range vf {
				if v == 0 {
					s.zeros++
				}
			}
			continue
		}
		ro, vo, err := orig.read(b0, n, bs, bb)
		if err != nil {
			return s, err
		}
		for blk := range n {
			changed := !bytes.Equal(rf[blk*bb:(blk+1)*bb], ro[blk*bb:(blk+1)*bb])
			lo, hi := blk*bs, (blk+1)*bs
			madeZero := s.compare(vo[lo:hi], vf[lo:hi], int64((b0+uint64(blk))*uint64(bs)), changed)
			if changed {
				s.changedBlocks++
				if !madeZero {
					s.noKillBlocks++
					if s.firstNoKill < 0 {
						s.firstNoKill = int64(b0) + int64(blk)
					}
				}
			}
		}
	}
	return s, nil
}

// chunkReader reads and decodes runs of whole blocks of one tensor.
type chunkReader struct {
	f    *gguf.File
	t    gguf.TensorInfo
	raw  []byte
	vals []float32
}

// read returns the bytes and values of the n blocks from block b0 on
// (blocks of bs weights in bb bytes).
func (c *chunkReader) read(b0 uint64, n, bs, bb int) ([]byte, []float32, error) {
	raw, vals := c.raw[:n*bb], c.vals[:n*bs]
	if err := readTensor(c.f, c.t, b0*uint64(bb), raw); err != nil {
		return nil, nil, err
	}
	if err := quantize.Decode(c.t.Type, vals, raw); err != nil {
		return nil, nil, fmt.Errorf("audit: %s: tensor %s: %w", c.f.Path, c.t.Name, err)
	}
	return raw, vals, nil
}

// segments sizes segZeros for tensor t when it is a matrix.
func (s *scan) segments(t gguf.TensorInfo) {
	if len(t.Shape) < 2 || t.Shape[0] == 0 {
		return
	}
	s.rowLen = t.Shape[0]
	s.segs = (s.rowLen + errata.TileSize - 1) / errata.TileSize
	s.segZeros = make([]uint16, t.Elements()/s.rowLen*s.segs)
}

// compare counts one block: before holds the original's values, after the
// file's, elem0 is the block's first element in the tensor and changed
// says whether its bytes differ. It reports whether a weight non-zero in
// the original reads zero now.
func (s *scan) compare(before, after []float32, elem0 int64, changed bool) (madeZero bool) {
	for k, a := range before {
		b := after[k]
		elem := elem0 + int64(k)
		if b == 0 {
			s.zeros++
		}
		if a == 0 {
			s.zeroBefore++
			if s.segs > 0 {
				e := uint64(elem)
				s.segZeros[e/s.rowLen*s.segs+e%s.rowLen/errata.TileSize]++
			}
			if b != 0 {
				s.lostZero++
				if s.firstLost < 0 {
					s.firstLost = elem
				}
			}
		} else if b == 0 {
			s.zeroed++
			madeZero = true
		}
		if math.Float32bits(a) != math.Float32bits(b) {
			s.changedWeights++
			if !(a != 0 && b == 0) {
				s.notKill++
				if s.firstNotKill < 0 {
					s.firstNotKill = elem
				}
			}
		}
		if changed && a != 0 {
			s.nonzeroChanged++
		}
	}
	return madeZero
}

// readTensor reads len(p) bytes of tensor t's data starting at off.
func readTensor(f *gguf.File, t gguf.TensorInfo, off uint64, p []byte) error {
	if off+uint64(len(p)) > t.Bytes() {
		return fmt.Errorf("audit: %s: tensor %s: read past its end", f.Path, t.Name)
	}
	n, err := f.ReadAt(p, f.DataOffset+int64(t.Offset)+int64(off))
	if n == len(p) {
		return nil
	}
	if err == nil {
		err = fmt.Errorf("short read")
	}
	return fmt.Errorf("audit: %s: tensor %s: %w", f.Path, t.Name, err)
}

// sameBytes compares the data of tensor t in f and ot in o in chunks and
// returns the offset of the first differing byte, or -1.
func sameBytes(ctx context.Context, f, o *gguf.File, t, ot gguf.TensorInfo) (int64, error) {
	const chunk = 1 << 20
	size := t.Bytes()
	if ot.Bytes() != size {
		return 0, nil
	}
	a, b := make([]byte, min(chunk, size)), make([]byte, min(chunk, size))
	for off := uint64(0); off < size; off += chunk {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		n := min(chunk, size-off)
		if err := readTensor(f, t, off, a[:n]); err != nil {
			return 0, err
		}
		if err := readTensor(o, ot, off, b[:n]); err != nil {
			return 0, err
		}
		if !bytes.Equal(a[:n], b[:n]) {
			for i := range a[:n] {
				if a[i] != b[i] {
					return int64(off) + int64(i), nil
				}
			}
		}
	}
	return -1, nil
}

// fileSHA256 hashes the whole file.
func fileSHA256(ctx context.Context, f *gguf.File) (string, error) {
	h := sha256.New()
	buf := make([]byte, 4<<20)
	for off := int64(0); off < f.Size; {
		if err := ctx.Err(); err != nil {
			return "", err
		}
		n := min(int64(len(buf)), f.Size-off)
		if _, err := f.ReadAt(buf[:n], off); err != nil {
			return "", fmt.Errorf("audit: %s: %w", f.Path, err)
		}
		h.Write(buf[:n])
		off += n
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// countNonfinite counts the NaN and infinite values of the file's tensors
// that are not targets (those of a type that can be decoded), which prune
// copies byte for byte, and their rate over the model's weights.
func (a *auditor) countNonfinite(targets map[string]bool) error {
	for _, t := range a.file.Tensors {
		ti, ok := t.Type.Info()
		if targets[t.Name] || !ok || !quantize.CanDecode(t.Type) {
			continue
		}
		bs, bb := ti.BlockSize, ti.BlockBytes
		blocks := t.Elements() / uint64(bs)
		per := int(max(1, min(uint64(a.chunk/bs), blocks)))
		c := chunkReader{f: a.file, t: t, raw: make([]byte, per*bb), vals: make([]float32, per*bs)}
		for b0 := uint64(0); b0 < blocks; b0 += uint64(per) {
			if err := a.ctx.Err(); err != nil {
				return err
			}
			_, vals, err := c.read(b0, int(min(uint64(per), blocks-b0)), bs, bb)
			if err != nil {
				return err
			}
			for _, v := range vals {
				if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
					a.nonfinite++
				}
			}
		}
	}
	rate := errata.NewRate(a.nonfinite, a.r.Weights.Model, errata.OfModel)
	a.r.NonfiniteCopied = &rate
	return nil
}
