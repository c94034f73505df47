package audit

import (
	"bytes"
	"fmt"
	"math"

	"github.com/physarium/physarium-gguf/errata"
	"github.com/physarium/physarium-gguf/gguf"
	"github.com/physarium/physarium-gguf/kernel"
	"github.com/physarium/physarium-gguf/quantize"
)

// TensorReplay is what replaying the kernel on the original's values of one
// target tensor found (prune's tiling: bands of 256 rows per matrix, tiles
// of 256 columns, each expert separately).
type TensorReplay struct {
	// Killed is the number of weights the kernel marks; ZeroBefore the
	// weights already 0 in the original.
	Killed     uint64 `json:"killed"`
	ZeroBefore uint64 `json:"zero_before"`
	// ExactZero counts killed weights that read exactly 0 in the file,
	// KilledNonZero the others, MaxKilledAbs the largest |value| among them
	// (pruned files only; a control twin keeps every weight).
	ExactZero     uint64  `json:"exact_zero"`
	KilledNonZero uint64  `json:"killed_nonzero"`
	MaxKilledAbs  float64 `json:"max_killed_abs"`
	// KillBlocks are the blocks holding a kill (the blocks prune
	// re-encodes) out of Blocks; AsExpected counts the kill blocks whose
	// bytes equal the expected re-encoding (quantize.EncodeKeepZeros of the
	// original's values, with the kills zeroed in a pruned file);
	// KeptChanged counts blocks without a kill whose bytes differ from the
	// original's.
	KillBlocks  uint64 `json:"kill_blocks"`
	Blocks      uint64 `json:"blocks"`
	AsExpected  uint64 `json:"kill_blocks_as_expected"`
	KeptChanged uint64 `json:"blocks_without_kill_changed"`
	// Tiles is the number of tiles; OffRule counts sparsity-mode tiles that
	// do not end with round(s*n) zeros (mask plus zero_before).
	Tiles   uint64 `json:"tiles"`
	OffRule uint64 `json:"tiles_off_rule,omitempty"`
}

// ControlBlocks compares the blocks of a control twin's target tensor with
// the original's and, when given, the pruned twin's.
type ControlBlocks struct {
	Blocks uint64 `json:"blocks"`
	// Changed blocks differ from the original; NotReencoding counts those
	// that are not quantize.EncodeKeepZeros of the original's values.
	Changed       uint64 `json:"changed"`
	NotReencoding uint64 `json:"not_reencoding"`
	// With the pruned twin: the blocks it changed, the union of both sets,
	// Missed = blocks the pruned twin changed but the control kept although
	// re-encoding them changes their bytes, Extra = blocks the control
	// changed but the pruned twin kept.
	PrunedChanged *uint64 `json:"pruned_changed,omitempty"`
	Union         *uint64 `json:"union,omitempty"`
	Missed        *uint64 `json:"missed,omitempty"`
	Extra         *uint64 `json:"extra,omitempty"`
}

// pass is one band-by-band walk over a target tensor.
type pass struct {
	replay  *TensorReplay
	control *ControlBlocks
	// first offending block (tensor-wide block index) of each kind, -1.
	firstBadKill, firstKept, firstNotReenc, firstMissed, firstExtra, firstOffTile, firstKilledNZ int64
	prunedOutside, firstPrunedOutside                                                            int64 // pruned twin changed a block without a kill (replay and --pruned)
	// problem, when not empty, says why the walk could not be done.
	problem string
}

// passBuffers are reused across bands and tensors.
type passBuffers struct {
	rawO, rawF, rawP, exp []byte
	before, vals, after   []float32
	mask, tmask           []byte
	tiles                 []kernel.Tile
	one                   []byte
}

// walkTarget walks target tensor t of f band by band beside the original's
// ot (same type and shape). k, when set, replays the kernel; a.magReplay
// replays the magnitude baseline instead; pt, when set, is the tensor in a
// control's pruned twin a.p.
func (a *auditor) walkTarget(t, ot gguf.TensorInfo, pt *gguf.TensorInfo, k *kernel.Kernel) (pass, error) {
	ps := pass{firstBadKill: -1, firstKept: -1, firstNotReenc: -1, firstMissed: -1, firstExtra: -1, firstOffTile: -1, firstKilledNZ: -1, firstPrunedOutside: -1}
	ti, ok := t.Type.Info()
	if !ok || !quantize.CanDecode(t.Type) || !quantize.CanEncode(t.Type) {
		ps.problem = fmt.Sprintf("type %s cannot be decoded and re-encoded", t.Type)
		return ps, nil
	}
	const maxInt = int(^uint(0) >> 1)
	for _, n := range t.Shape {
		if n > uint64(maxInt>>8) {
			ps.problem = fmt.Sprintf("dimension %d too large", n)
			return ps, nil
		}
	}
	if len(t.Shape) < 2 {
		ps.problem = "not a matrix"
		return ps, nil
	}
	rowBytes, whole := t.Type.RowBytes(t.Shape[0])
	if !whole {
		ps.problem = fmt.Sprintf("rows of %d weights are not whole %s blocks", t.Shape[0], t.Type)
		return ps, nil
	}
	bs, bb := ti.BlockSize, ti.BlockBytes
	row, rows := int(t.Shape[0]), int(t.Shape[1])
	mats := 1
	for _, n := range t.Shape[2:] {
		mats *= int(n)
	}
	replay := k != nil || a.magReplay
	var cuts []magCut
	if a.magReplay {
		var err error
		if cuts, err = a.magnitudeCuts(ot, a.params.Sparsity); err != nil {
			return ps, err
		}
	}
	if replay {
		ps.replay = &TensorReplay{Blocks: t.Elements() / uint64(bs)}
	}
	if a.control {
		ps.control = &ControlBlocks{Blocks: t.Elements() / uint64(bs)}
		if pt != nil {
			ps.control.PrunedChanged, ps.control.Union, ps.control.Missed, ps.control.Extra = new(uint64), new(uint64), new(uint64), new(uint64)
		}
	}
	b := &a.bufs
	zc, _ := quantize.Zero(t.Type)
	for m := 0; m < mats; m++ {
		for r0, nr := range errata.Bands(rows) {
			if err := a.ctx.Err(); err != nil {
				return ps, err
			}
			g0 := uint64(m)*uint64(rows) + uint64(r0)
			off, nb := g0*rowBytes, nr*int(rowBytes)
			n := nr * row
			blocks := n / bs
			blk0 := int64(off / uint64(bb)) // tensor-wide index of the band's first block
			b.rawO, b.rawF = grow(b.rawO, nb), grow(b.rawF, nb)
			if err := readTensor(a.o, ot, off, b.rawO); err != nil {
				return ps, err
			}
			if err := readTensor(a.f, t, off, b.rawF); err != nil {
				return ps, err
			}
			if pt != nil {
				b.rawP = grow(b.rawP, nb)
				if err := readTensor(a.p, *pt, off, b.rawP); err != nil {
					return ps, err
				}
			}
			b.before = grow(b.before, n)
			if err := quantize.Decode(t.Type, b.before, b.rawO); err != nil {
				return ps, fmt.Errorf("audit: %s: tensor %s: %w", a.o.Path, t.Name, err)
			}
			var mask []byte
			if replay {
				for i, v := range b.before {
					if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
						ps.problem = fmt.Sprintf("element %d of the original is %v (prune refuses such tensors)", g0*uint64(row)+uint64(i), v)
						ps.replay = nil
						return ps, nil
					}
				}
				if k != nil {
					var err error
					if mask, err = a.replayBand(ps.replay, k, nr, row, blk0*int64(bs), &ps); err != nil {
						return ps, fmt.Errorf("audit: %s: tensor %s: %w", a.o.Path, t.Name, err)
					}
				} else {
					mask = a.magnitudeBand(ps.replay, &cuts[m], nr, row)
				}
			}
			kill := func(blk int) bool {
				return mask != nil && bytes.IndexByte(mask[blk*bs:(blk+1)*bs], 1) >= 0
			}
			// The expected bytes: the original's, and with a replay the
			// kill blocks re-encoded in runs as prune does.
			if replay {
				b.exp = grow(b.exp, nb)
				copy(b.exp, b.rawO)
				src := b.before
				if !a.control {
					src = b.vals // kills zeroed by replayBand
				}
				for blk := 0; blk < blocks; {
					if !kill(blk) {
						blk++
						continue
					}
					end := blk + 1
					for end < blocks && kill(end) {
						end++
					}
					if err := quantize.EncodeKeepZeros(t.Type, b.exp[blk*bb:end*bb], src[blk*bs:end*bs]); err != nil {
						return ps, fmt.Errorf("audit: tensor %s: %w", t.Name, err)
					}
					blk = end
				}
				if !a.control {
					b.after = grow(b.after, n)
					if err := quantize.Decode(t.Type, b.after, b.rawF); err != nil {
						return ps, fmt.Errorf("audit: %s: tensor %s: %w", a.f.Path, t.Name, err)
					}
					for i, mk := range mask {
						if mk == 0 {
							continue
						}
						if v := b.after[i]; v == 0 {
							ps.replay.ExactZero++
						} else {
							ps.replay.KilledNonZero++
							ps.replay.MaxKilledAbs = max(ps.replay.MaxKilledAbs, math.Abs(float64(v)))
							if ps.firstKilledNZ < 0 && zc != quantize.ZeroNone {
								ps.firstKilledNZ = blk0*int64(bs) + int64(i)
							}
						}
					}
				}
			}
			for blk := 0; blk < blocks; blk++ {
				at := blk0 + int64(blk)
				bf, bo := b.rawF[blk*bb:(blk+1)*bb], b.rawO[blk*bb:(blk+1)*bb]
				changed := !bytes.Equal(bf, bo)
				if replay {
					r := ps.replay
					if kill(blk) {
						r.KillBlocks++
						if bytes.Equal(bf, b.exp[blk*bb:(blk+1)*bb]) {
							r.AsExpected++
						} else if ps.firstBadKill < 0 {
							ps.firstBadKill = at
						}
					} else if changed {
						r.KeptChanged++
						if ps.firstKept < 0 {
							ps.firstKept = at
						}
					}
				}
				c := ps.control
				if c == nil {
					continue
				}
				var reenc []byte // EncodeKeepZeros of the original block, when needed
				encode := func() ([]byte, error) {
					if reenc == nil {
						b.one = grow(b.one, bb)
						if err := quantize.EncodeKeepZeros(t.Type, b.one, b.before[blk*bs:(blk+1)*bs]); err != nil {
							return nil, fmt.Errorf("audit: tensor %s: %w", t.Name, err)
						}
						reenc = b.one
					}
					return reenc, nil
				}
				if changed {
					c.Changed++
					e, err := encode()
					if err != nil {
						return ps, err
					}
					if !bytes.Equal(bf, e) {
						c.NotReencoding++
						if ps.firstNotReenc < 0 {
							ps.firstNotReenc = at
						}
					}
				}
				if pt == nil {
					continue
				}
				pChanged := !bytes.Equal(b.rawP[blk*bb:(blk+1)*bb], bo)
				if pChanged {
					*c.PrunedChanged++
					if replay && !kill(blk) {
						ps.prunedOutside++
						if ps.firstPrunedOutside < 0 {
							ps.firstPrunedOutside = at
						}
					}
				}
				if pChanged || changed {
					*c.Union++
				}
				if pChanged && !changed {
					e, err := encode()
					if err != nil {
						return ps, err
					}
					if !bytes.Equal(e, bo) {
						*c.Missed++
						if ps.firstMissed < 0 {
							ps.firstMissed = at
						}
					}
				}
				if changed && !pChanged {
					*c.Extra++
					if ps.firstExtra < 0 {
						ps.firstExtra = at
					}
				}
			}
		}
	}
	return ps, nil
}

// replayBand runs the kernel on a band of the original (a.bufs.before, nr
// rows of row weights) exactly as prune tiles it, and returns the band's
// kill mask, row-major. It leaves the original's values with the kills
// zeroed in a.bufs.vals. elem0 is the band's first element in the tensor.
func (a *auditor) replayBand(r *TensorReplay, k *kernel.Kernel, nr, row int, elem0 int64, ps *pass) ([]byte, error) {
	b := &a.bufs
	n := nr * row
	b.vals = grow(b.vals, n)
	copy(b.vals, b.before)
	b.mask, b.tmask = grow(b.mask, n), grow(b.tmask, n)
	b.tiles = b.tiles[:0]
	for c0, used := 0, 0; c0 < row; c0 += errata.TileSize {
		cols := min(errata.TileSize, row-c0)
		b.tiles = append(b.tiles, kernel.Tile{W: b.vals[c0:], Rows: nr, Cols: cols, Stride: row, Mask: b.tmask[used : used+nr*cols]})
		used += nr * cols
	}
	if err := k.Run(b.tiles); err != nil {
		return nil, err
	}
	for i := range b.tiles {
		t := &b.tiles[i]
		c0 := i * errata.TileSize
		killed := 0
		for rr := 0; rr < nr; rr++ {
			m := t.Mask[rr*t.Cols : (rr+1)*t.Cols]
			copy(b.mask[rr*row+c0:], m)
			for _, x := range m {
				if x != 0 {
					killed++
				}
			}
		}
		zb := 0
		for rr := 0; rr < nr; rr++ {
			for _, v := range b.before[rr*row+c0 : rr*row+c0+t.Cols] {
				if v == 0 {
					zb++
				}
			}
		}
		r.Tiles++
		r.Killed += uint64(killed)
		r.ZeroBefore += uint64(zb)
		if k.Params().Mode == kernel.Sparsity {
			want := int(math.Round(k.Params().Sparsity * float64(t.Rows*t.Cols)))
			if killed+zb != max(want, zb) {
				r.OffRule++
				if ps.firstOffTile < 0 {
					ps.firstOffTile = int64(r.Tiles - 1)
				}
			}
		}
	}
	for i, m := range b.mask[:n] {
		if m != 0 {
			if b.before[i] == 0 {
				return nil, fmt.Errorf("kernel marked element %d, already zero, as a kill", elem0+int64(i))
			}
			b.vals[i] = 0
		}
	}
	return b.mask[:n], nil
}

func grow[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n)
	}
	return s[:n]
}
