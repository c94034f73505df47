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
	// MaxKilledRel is the largest |value| a kill reads as over the largest
	// |value| of its block, as prune's physarium.max_killed_rel.
	MaxKilledRel float64 `json:"max_killed_rel"`
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
	// MovedBlocks, in a replay from the calibration file, are the blocks
	// without a kill whose survivors the reconstruction moved (prune
	// re-encodes them too); MovedAsExpected those whose bytes are the
	// expected re-encoding; SurvivorsChanged the survivors it moved.
	MovedBlocks      uint64 `json:"moved_blocks,omitempty"`
	MovedAsExpected  uint64 `json:"moved_blocks_as_expected,omitempty"`
	SurvivorsChanged uint64 `json:"survivors_changed,omitempty"`
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
	qw                    []float32 // importance weights of a run of blocks (weightsAt)
	mask, tmask           []byte
	touched               []bool // blocks a replay from the calibration file re-encodes
	tiles                 []kernel.Tile
	one                   []byte
}

// walk is the state of one walkTarget: the tensor, its layout and what the
// walk has found so far.
type walk struct {
	a         *auditor
	t, ot     gguf.TensorInfo
	pt        *gguf.TensorInfo // the tensor in a control's pruned twin, or nil
	k         *kernel.Kernel   // replays the kernel, or nil
	cuts      []magCut         // replays the magnitude baseline, or nil
	replay    bool             // k or cuts
	blockSize int              // weights per block
	blockLen  int              // bytes per block
	rowLen    int              // weights per row
	rowBytes  uint64
	zeroCode  quantize.ZeroKind
	// qw holds the importance weights of the re-encoding per input
	// column, matrix after matrix (setWeights), nil for none;
	// matrixValues is the number of values of one matrix.
	qw           []float32
	matrixValues int
	walked       pass
	index        int // the next band's index within the tensor
}

// walkTarget walks target tensor t of f band by band beside the original's
// ot (same type and shape). k, when set, replays the kernel; a.magReplay
// replays the magnitude baseline instead; pt, when set, is the tensor in a
// control's pruned twin a.twin.
func (a *auditor) walkTarget(t, ot gguf.TensorInfo, pt *gguf.TensorInfo, k *kernel.Kernel) (pass, error) {
	w := &walk{a: a, t: t, ot: ot, pt: pt, k: k, replay: k != nil || a.magReplay || a.cal != nil || a.food != nil}
	w.walked = pass{firstBadKill: -1, firstKept: -1, firstNotReenc: -1, firstMissed: -1, firstExtra: -1, firstOffTile: -1, firstKilledNZ: -1, firstPrunedOutside: -1}
	if w.walked.problem = w.layout(); w.walked.problem != "" {
		return w.walked, nil
	}
	if w.walked.problem = w.setWeights(); w.walked.problem != "" {
		return w.walked, nil
	}
	if a.magReplay {
		var err error
		if w.cuts, err = a.magnitudeCuts(ot, a.params.Sparsity); err != nil {
			return w.walked, err
		}
	}
	if a.cal != nil {
		if err := w.startCalTensor(); err != nil {
			return w.walked, err
		}
	}
	blocks := t.Elements() / uint64(w.blockSize)
	if w.replay {
		w.walked.replay = &TensorReplay{Blocks: blocks}
	}
	if a.control {
		w.walked.control = &ControlBlocks{Blocks: blocks}
		if pt != nil {
			w.walked.control.PrunedChanged, w.walked.control.Union, w.walked.control.Missed, w.walked.control.Extra = new(uint64), new(uint64), new(uint64), new(uint64)
		}
	}
	rows, mats := int(t.Shape[1]), 1
	for _, n := range t.Shape[2:] {
		mats *= int(n)
	}
	for m := range mats {
		for r0, nr := range errata.Bands(rows) {
			if err := a.ctx.Err(); err != nil {
				return w.walked, err
			}
			done, err := w.band(m, uint64(m)*uint64(rows)+uint64(r0), nr)
			if err != nil || done {
				return w.walked, err
			}
			w.index++
		}
	}
	if a.cal != nil {
		w.endCalTensor()
	}
	return w.walked, nil
}

// layout sets the walk's block and row sizes, or says why the tensor
// cannot be walked.
func (w *walk) layout() string {
	t := w.t
	ti, ok := t.Type.Info()
	if !ok || !quantize.CanDecode(t.Type) || !quantize.CanEncode(t.Type) {
		return fmt.Sprintf("type %s cannot be decoded and re-encoded", t.Type)
	}
	const maxInt = int(^uint(0) >> 1)
	for _, n := range t.Shape {
		if n > uint64(maxInt>>8) {
			return fmt.Sprintf("dimension %d too large", n)
		}
	}
	if len(t.Shape) < 2 {
		return "not a matrix"
	}
	rowBytes, whole := t.Type.RowBytes(t.Shape[0])
	if !whole {
		return fmt.Sprintf("rows of %d weights are not whole %s blocks", t.Shape[0], t.Type)
	}
	w.blockSize, w.blockLen, w.rowLen, w.rowBytes = ti.BlockSize, ti.BlockBytes, int(t.Shape[0]), rowBytes
	w.zeroCode, _ = quantize.Zero(t.Type)
	return ""
}

// band walks the band of nr rows of matrix m whose first row, counting the
// rows of every matrix, is row0; done reports that the walk ends here (the
// original holds a NaN or an infinity, which prune refuses).
func (w *walk) band(m int, row0 uint64, nr int) (done bool, err error) {
	off, nb, n := row0*w.rowBytes, nr*int(w.rowBytes), nr*w.rowLen
	blk0 := int64(off / uint64(w.blockLen)) // tensor-wide index of the band's first block
	if err := w.read(off, nb, n); err != nil {
		return false, err
	}
	var mask []byte
	if w.replay {
		if mask, done, err = w.replayMask(m, row0, nr, blk0); err != nil || done {
			return done, err
		}
		if err := w.expected(mask, nb, n, blk0); err != nil {
			return false, err
		}
	}
	for blk := range n / w.blockSize {
		if err := w.compareBlock(blk, blk0, mask); err != nil {
			return false, err
		}
	}
	return false, nil
}

// read reads the band's bytes from the original, the file and the pruned
// twin and decodes the original's into a.bufs.before.
func (w *walk) read(off uint64, nb, n int) error {
	a, b := w.a, &w.a.bufs
	b.rawO, b.rawF = grow(b.rawO, nb), grow(b.rawF, nb)
	if err := readTensor(a.orig, w.ot, off, b.rawO); err != nil {
		return err
	}
	if err := readTensor(a.file, w.t, off, b.rawF); err != nil {
		return err
	}
	if w.pt != nil {
		b.rawP = grow(b.rawP, nb)
		if err := readTensor(a.twin, *w.pt, off, b.rawP); err != nil {
			return err
		}
	}
	b.before = grow(b.before, n)
	if err := quantize.Decode(w.t.Type, b.before, b.rawO); err != nil {
		return fmt.Errorf("audit: %s: tensor %s: %w", a.orig.Path, w.t.Name, err)
	}
	return nil
}

// replayMask replays the band's kills on the original's values and returns
// the mask; done when the original holds a NaN or an infinity.
func (w *walk) replayMask(m int, row0 uint64, nr int, blk0 int64) (mask []byte, done bool, err error) {
	a := w.a
	for i, v := range a.bufs.before {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			w.walked.problem = fmt.Sprintf("element %d of the original is %v (prune refuses such tensors)", row0*uint64(w.rowLen)+uint64(i), v)
			w.walked.replay = nil
			return nil, true, nil
		}
	}
	if a.cal != nil {
		mask, err = w.calBand(m, w.index, row0, nr)
		return mask, false, err
	}
	if a.food != nil {
		mask, err := a.food.band(a, w.walked.replay, m, row0, nr, w.rowLen)
		if err != nil {
			return nil, false, fmt.Errorf("audit: %s: tensor %s: %w", a.orig.Path, w.t.Name, err)
		}
		return mask, false, nil
	}
	if w.k == nil {
		return a.magnitudeBand(w.walked.replay, &w.cuts[m], nr, w.rowLen), false, nil
	}
	mask, err = a.replayBand(w.walked.replay, w.k, nr, w.rowLen, blk0*int64(w.blockSize), &w.walked)
	if err != nil {
		return nil, false, fmt.Errorf("audit: %s: tensor %s: %w", a.orig.Path, w.t.Name, err)
	}
	return mask, false, nil
}

// killIn reports whether block blk of the band holds a replayed kill.
func (w *walk) killIn(mask []byte, blk int) bool {
	return mask != nil && bytes.IndexByte(mask[blk*w.blockSize:(blk+1)*w.blockSize], 1) >= 0
}

// moved reports whether block blk of the band holds no replayed kill but
// survivors that a replay from the calibration file moved.
func (w *walk) moved(mask []byte, blk int) bool {
	return w.a.cal != nil && mask != nil && w.a.bufs.touched[blk] && !w.killIn(mask, blk)
}

// reencodes reports whether prune re-encodes block blk of the band: it
// holds a replayed kill or a moved survivor.
func (w *walk) reencodes(mask []byte, blk int) bool {
	return w.killIn(mask, blk) || w.moved(mask, blk)
}

// expected sets a.bufs.exp to the band's expected bytes: the original's,
// with the kill blocks re-encoded in runs as prune does (from the values
// with the kills zeroed in a pruned file, from the original's in a
// control twin); in a pruned file it also counts how the kills read.
func (w *walk) expected(mask []byte, nb, n int, blk0 int64) error {
	a, b := w.a, &w.a.bufs
	bs, bb := w.blockSize, w.blockLen
	b.exp = grow(b.exp, nb)
	copy(b.exp, b.rawO)
	src := b.before
	if !a.control {
		src = b.vals // kills zeroed by the replay
	}
	blocks := n / bs
	for blk := 0; blk < blocks; {
		if !w.reencodes(mask, blk) {
			blk++
			continue
		}
		end := blk + 1
		for end < blocks && w.reencodes(mask, end) {
			end++
		}
		qw := w.weightsAt((blk0+int64(blk))*int64(bs), (end-blk)*bs)
		if err := quantize.EncodeKeepZerosWeighted(w.t.Type, b.exp[blk*bb:end*bb], src[blk*bs:end*bs], qw); err != nil {
			return fmt.Errorf("audit: tensor %s: %w", w.t.Name, err)
		}
		blk = end
	}
	if a.control {
		return nil
	}
	return w.countKilled(mask, n, blk0)
}

// countKilled counts how the replayed kills of a pruned file read: exactly
// 0, or not (and the largest |value| of those).
func (w *walk) countKilled(mask []byte, n int, blk0 int64) error {
	a, b, r := w.a, &w.a.bufs, w.walked.replay
	b.after = grow(b.after, n)
	if err := quantize.Decode(w.t.Type, b.after, b.rawF); err != nil {
		return fmt.Errorf("audit: %s: tensor %s: %w", a.file.Path, w.t.Name, err)
	}
	for i, mk := range mask {
		if mk == 0 {
			continue
		}
		if v := b.after[i]; v == 0 {
			r.ExactZero++
		} else {
			r.KilledNonZero++
			r.MaxKilledAbs = max(r.MaxKilledAbs, math.Abs(float64(v)))
			if w.walked.firstKilledNZ < 0 && w.zeroCode != quantize.ZeroNone {
				w.walked.firstKilledNZ = blk0*int64(w.blockSize) + int64(i)
			}
		}
	}
	r.MaxKilledRel = max(r.MaxKilledRel, maxKilledRel(b.after[:n], mask, w.blockSize))
	return nil
}

// compareBlock compares block blk of the band (blk0 its first block's
// tensor-wide index) with the replay's expectation and, in a control twin,
// with the original's re-encoding and the pruned twin's block.
func (w *walk) compareBlock(blk int, blk0 int64, mask []byte) error {
	b, bb := &w.a.bufs, w.blockLen
	at := blk0 + int64(blk)
	stored, orig := b.rawF[blk*bb:(blk+1)*bb], b.rawO[blk*bb:(blk+1)*bb]
	changed := !bytes.Equal(stored, orig)
	if w.replay {
		w.compareReplay(blk, at, stored, changed, mask)
	}
	if w.walked.control == nil {
		return nil
	}
	return w.compareControl(blk, at, stored, orig, changed, mask)
}

// compareReplay checks a block against the replay: a kill block must be
// the expected re-encoding, any other block the original's.
func (w *walk) compareReplay(blk int, at int64, stored []byte, changed bool, mask []byte) {
	r, bb := w.walked.replay, w.blockLen
	exp := w.a.bufs.exp[blk*bb : (blk+1)*bb]
	switch {
	case w.killIn(mask, blk):
		r.KillBlocks++
		if bytes.Equal(stored, exp) {
			r.AsExpected++
		} else if w.walked.firstBadKill < 0 {
			w.walked.firstBadKill = at
		}
	case w.moved(mask, blk):
		r.MovedBlocks++
		if bytes.Equal(stored, exp) {
			r.MovedAsExpected++
		} else if w.walked.firstBadKill < 0 {
			w.walked.firstBadKill = at
		}
	case changed:
		r.KeptChanged++
		if w.walked.firstKept < 0 {
			w.walked.firstKept = at
		}
	}
}

// compareControl checks a block of a control twin: a changed block must
// be the re-encoding of the original's values; with the pruned twin, the
// blocks each twin changed are compared.
func (w *walk) compareControl(blk int, at int64, stored, orig []byte, changed bool, mask []byte) error {
	c, walked, bb := w.walked.control, &w.walked, w.blockLen
	var reenc []byte // EncodeKeepZeros of the original block, when needed
	encode := func() ([]byte, error) {
		if reenc == nil {
			b := &w.a.bufs
			b.one = grow(b.one, bb)
			qw := w.weightsAt(at*int64(w.blockSize), w.blockSize)
			if err := quantize.EncodeKeepZerosWeighted(w.t.Type, b.one, b.before[blk*w.blockSize:(blk+1)*w.blockSize], qw); err != nil {
				return nil, fmt.Errorf("audit: tensor %s: %w", w.t.Name, err)
			}
			reenc = b.one
		}
		return reenc, nil
	}
	if changed {
		c.Changed++
		e, err := encode()
		if err != nil {
			return err
		}
		if !bytes.Equal(stored, e) {
			c.NotReencoding++
			first(&walked.firstNotReenc, at)
		}
	}
	if w.pt == nil {
		return nil
	}
	prunedChanged := !bytes.Equal(w.a.bufs.rawP[blk*bb:(blk+1)*bb], orig)
	if prunedChanged {
		*c.PrunedChanged++
		if w.replay && !w.reencodes(mask, blk) {
			walked.prunedOutside++
			first(&walked.firstPrunedOutside, at)
		}
	}
	if prunedChanged || changed {
		*c.Union++
	}
	if prunedChanged && !changed {
		e, err := encode()
		if err != nil {
			return err
		}
		if !bytes.Equal(e, orig) {
			*c.Missed++
			first(&walked.firstMissed, at)
		}
	}
	if changed && !prunedChanged {
		*c.Extra++
		first(&walked.firstExtra, at)
	}
	return nil
}

// first sets *at to block when it is still -1 (the first offender).
func first(at *int64, block int64) {
	if *at < 0 {
		*at = block
	}
}

// replayBand runs the kernel on a band of the original (a.bufs.before, nr
// rows of row weights) exactly as prune tiles it, and returns the band's
// kill mask, row-major. It leaves the original's values with the kills
// zeroed in a.bufs.vals. elem0 is the band's first element in the tensor.
func (a *auditor) replayBand(r *TensorReplay, k *kernel.Kernel, nr, row int, elem0 int64, walked *pass) ([]byte, error) {
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
				if walked.firstOffTile < 0 {
					walked.firstOffTile = int64(r.Tiles - 1)
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
