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
	rawF := make([]byte, per*bb)
	valsF := make([]float32, per*bs)
	var rawO []byte
	var valsO []float32
	rowLen, segs := uint64(0), uint64(0)
	if ot != nil {
		rawO = make([]byte, per*bb)
		valsO = make([]float32, per*bs)
		if len(t.Shape) >= 2 && t.Shape[0] > 0 {
			rowLen = t.Shape[0]
			segs = (rowLen + errata.TileSize - 1) / errata.TileSize
			s.segZeros = make([]uint16, t.Elements()/rowLen*segs)
		}
	}
	for b0 := uint64(0); b0 < nBlocks; b0 += uint64(per) {
		if err := ctx.Err(); err != nil {
			return s, err
		}
		n := int(min(uint64(per), nBlocks-b0))
		rf, vf := rawF[:n*bb], valsF[:n*bs]
		if err := readTensor(f, t, b0*uint64(bb), rf); err != nil {
			return s, err
		}
		if err := quantize.Decode(t.Type, vf, rf); err != nil {
			return s, fmt.Errorf("audit: %s: tensor %s: %w", f.Path, t.Name, err)
		}
		if ot == nil {
			for _, v := range vf {
				if v == 0 {
					s.zeros++
				}
			}
			continue
		}
		ro, vo := rawO[:n*bb], valsO[:n*bs]
		if err := readTensor(o, *ot, b0*uint64(bb), ro); err != nil {
			return s, err
		}
		if err := quantize.Decode(t.Type, vo, ro); err != nil {
			return s, fmt.Errorf("audit: %s: tensor %s: %w", o.Path, t.Name, err)
		}
		for blk := 0; blk < n; blk++ {
			changed := !bytes.Equal(rf[blk*bb:(blk+1)*bb], ro[blk*bb:(blk+1)*bb])
			madeZero := false
			for k := blk * bs; k < (blk+1)*bs; k++ {
				a, b := vo[k], vf[k]
				elem := int64((b0+uint64(blk))*uint64(bs)) + int64(k-blk*bs)
				if b == 0 {
					s.zeros++
				}
				if a == 0 {
					s.zeroBefore++
					if segs > 0 {
						e := uint64(elem)
						s.segZeros[e/rowLen*segs+e%rowLen/errata.TileSize]++
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
