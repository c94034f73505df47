package audit

import (
	"bytes"
	"fmt"
	"reflect"
	"strings"

	"github.com/physarium/physarium-gguf/errata"
	"github.com/physarium/physarium-gguf/gguf"
	"github.com/physarium/physarium-gguf/quantize"
)

// A file written with prune --retype TYPE states TYPE in physarium.retype:
// every target is of TYPE, whatever the original's type, and every block
// of a target is re-encoded (quantize.EncodeKeepZeros in TYPE of the
// original's values with the kills zeroed). Against the original, such a
// target is walked band by band with both types decoded: the counts of the
// scan, and with the replay the expected bytes of every block.

// readRetype reads physarium.retype into a.retype and a.retyped.
func (a *auditor) readRetype() {
	s, ok := a.str(errata.KeyRetype)
	if !ok {
		return
	}
	a.retype, a.retyped = gguf.ParseType(s)
	if !a.retyped {
		a.r.disagree(errata.KeyPrefix+errata.KeyRetype, "", s, "a ggml type name", BasisFile)
	}
}

// retypedTarget reports whether tensor t of the file is a target written in
// the physarium.retype type.
func (a *auditor) retypedTarget(t gguf.TensorInfo) bool {
	_, target := a.storedKilled[t.Name]
	return a.retyped && target && t.Type == a.retype
}

// retypedOriginal returns the original's tensor of a retyped target (same
// name and shape, another type), or nil.
func (a *auditor) retypedOriginal(t gguf.TensorInfo) *gguf.TensorInfo {
	if a.orig == nil || !a.retypedTarget(t) {
		return nil
	}
	ot, ok := a.orig.Tensor(t.Name)
	if !ok || ot.Type == t.Type || !reflect.DeepEqual(ot.Shape, t.Shape) {
		return nil
	}
	return &ot
}

// checkRetype checks that every target is of the physarium.retype type.
func (a *auditor) checkRetype() {
	if !a.retyped {
		return
	}
	var off []string
	for _, t := range a.r.Tensors {
		if t.Type != a.retype.String() {
			off = append(off, t.Name+" ("+t.Type+")")
		}
	}
	ck := Check{Key: errata.KeyPrefix + errata.KeyRetype, Stored: a.retype.String(), Recounted: fmt.Sprintf("%d target tensors of that type", len(a.r.Tensors)-len(off)), Basis: BasisFile, Status: statusOf(len(off) == 0)}
	if len(off) > 0 {
		ck.Recounted = "targets of other types: " + strings.Join(off, ", ")
	}
	a.r.check(ck)
}

// auditRetyped audits a retyped target t against the original's ot.
func (a *auditor) auditRetyped(t, ot gguf.TensorInfo) (TensorAudit, error) {
	w := &walk{a: a, t: t, ot: ot, k: a.k, replay: a.k != nil || a.magReplay}
	w.walked = pass{firstBadKill: -1, firstKept: -1, firstNotReenc: -1, firstMissed: -1, firstExtra: -1, firstOffTile: -1, firstKilledNZ: -1, firstPrunedOutside: -1}
	s := scan{firstNoKill: -1, firstNotKill: -1, firstLost: -1, against: true}
	if w.walked.problem = w.layout(); w.walked.problem != "" {
		return a.tensorAudit(t, s), nil
	}
	if w.walked.problem = w.setWeights(); w.walked.problem != "" {
		return a.tensorAudit(t, s), nil
	}
	origRow, _ := ot.Type.RowBytes(ot.Shape[0])
	if !quantize.CanDecode(ot.Type) {
		w.walked.problem = fmt.Sprintf("the original's type %s cannot be decoded", ot.Type)
		return a.tensorAudit(t, s), nil
	}
	s.decoded = true
	s.segments(t)
	s.blocks = t.Elements() / uint64(w.blockSize)
	s.changedBlocks = s.blocks
	if a.magReplay {
		var err error
		if w.cuts, err = a.magnitudeCuts(ot, a.params.Sparsity); err != nil {
			return TensorAudit{}, err
		}
	}
	if w.replay {
		w.walked.replay = &TensorReplay{Blocks: s.blocks}
	}
	rows, mats := int(t.Shape[1]), 1
	for _, n := range t.Shape[2:] {
		mats *= int(n)
	}
	b := &a.bufs
	for m := range mats {
		for r0, nr := range errata.Bands(rows) {
			if err := a.ctx.Err(); err != nil {
				return TensorAudit{}, err
			}
			row0 := uint64(m)*uint64(rows) + uint64(r0)
			n, nb := nr*w.rowLen, nr*int(w.rowBytes)
			b.rawO, b.rawF = grow(b.rawO, nr*int(origRow)), grow(b.rawF, nb)
			b.before, b.after = grow(b.before, n), grow(b.after, n)
			if err := readTensor(a.orig, ot, row0*origRow, b.rawO); err != nil {
				return TensorAudit{}, err
			}
			if err := readTensor(a.file, t, row0*w.rowBytes, b.rawF); err != nil {
				return TensorAudit{}, err
			}
			if err := quantize.Decode(ot.Type, b.before, b.rawO); err != nil {
				return TensorAudit{}, fmt.Errorf("audit: %s: tensor %s: %w", a.orig.Path, t.Name, err)
			}
			if err := quantize.Decode(t.Type, b.after, b.rawF); err != nil {
				return TensorAudit{}, fmt.Errorf("audit: %s: tensor %s: %w", a.file.Path, t.Name, err)
			}
			s.compare(b.before[:n], b.after[:n], int64(row0)*int64(w.rowLen), true)
			if w.replay {
				if err := w.retypedBand(m, row0, nr); err != nil {
					return TensorAudit{}, err
				}
			}
		}
	}
	ta := a.tensorAudit(t, s)
	ta.RetypedFrom = ot.Type.String()
	ta.pass, ta.Replay = w.walked, w.walked.replay
	return ta, nil
}

// retypedBand replays the kills of one band of a retyped target (the
// original's values in a.bufs.before, the file's bytes in a.bufs.rawF) and
// checks every block against the expected re-encoding.
func (w *walk) retypedBand(m int, row0 uint64, nr int) error {
	b := &w.a.bufs
	n, nb := nr*w.rowLen, nr*int(w.rowBytes)
	blk0 := int64(row0 * w.rowBytes / uint64(w.blockLen))
	mask, done, err := w.replayMask(m, row0, nr, blk0)
	if err != nil || done {
		return err
	}
	b.exp = grow(b.exp, nb)
	if err := quantize.EncodeKeepZerosWeighted(w.t.Type, b.exp, b.vals[:n], w.weightsAt(blk0*int64(w.blockSize), n)); err != nil {
		return fmt.Errorf("audit: tensor %s: %w", w.t.Name, err)
	}
	r, bb := w.walked.replay, w.blockLen
	for blk := range n / w.blockSize {
		r.KillBlocks++
		if bytes.Equal(b.rawF[blk*bb:(blk+1)*bb], b.exp[blk*bb:(blk+1)*bb]) {
			r.AsExpected++
		} else {
			first(&w.walked.firstBadKill, blk0+int64(blk))
		}
	}
	return w.countKilled(mask, n, blk0)
}

// retypedKillCount is killCount for a retyped target without a replay.
func retypedKillCount(t *TensorAudit) (Count, string) {
	s := &t.scan
	if t.ZeroCode != "none" && t.ZeroCode != "unknown" {
		return Count{Lo: 0, Hi: s.zeroed}, "retyped (physarium.retype): kills read 0, and re-encoding can round survivors to 0: at most the weights non-zero in the original and 0 now"
	}
	return Count{Lo: 0, Hi: t.Weights - s.zeroBefore, trivial: true}, "retyped (physarium.retype) into a type without a zero code: at most the non-zero original weights"
}

// retypedData checks the values of a retyped target against the original.
func (a *auditor) retypedData(t *TensorAudit) {
	s := &t.scan
	ok := true
	if t.ZeroCode != "none" && t.ZeroCode != "unknown" && s.lostZero > 0 {
		ok = false
		a.r.disagree("tensor.data", t.Name, fmt.Sprintf("%d weights that were 0 read non-zero (first: element %d)", s.lostZero, s.firstLost), "a type with a zero code keeps zeros", BasisAgainst)
	}
	if t.Replay != nil {
		ok = a.replayData(t) && ok
	} else if t.pass.problem != "" {
		a.r.check(Check{Key: "replay", Tensor: t.Name, Stored: "-", Recounted: "-", Status: StatusUnverifiable, Basis: BasisAgainst, Note: "not replayed: " + t.pass.problem})
	}
	if ok {
		said := "every block the re-encoding of the replayed values in the physarium.retype type; the original's zeros stay 0 where the type holds 0"
		if t.Replay == nil {
			said = "the original's zeros stay 0 where the type holds 0 (that every block is the expected re-encoding needs the replay)"
		}
		a.r.check(Check{Key: "tensor.data", Tensor: t.Name, Stored: fmt.Sprintf("%s, from %s", t.Type, t.RetypedFrom), Recounted: said, Status: StatusExact, Basis: BasisAgainst})
	}
}
