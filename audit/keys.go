package audit

import (
	"fmt"
	"math"
	"strings"

	"github.com/physarium/physarium-gguf/errata"
	"github.com/physarium/physarium-gguf/gguf"
	"github.com/physarium/physarium-gguf/method"
)

// get returns the value of a documented key when it is present with its
// documented type; a missing or mistyped key has been reported by checkTypes.
func (a *auditor) get(name string) (gguf.Value, bool) {
	kv, ok := a.file.KV(errata.KeyPrefix + name)
	if !ok {
		return gguf.Value{}, false
	}
	if k, ok := errata.Lookup(name); ok {
		return kv.Value, k.Has(kv.Value)
	}
	return kv.Value, true
}

func (a *auditor) u64(name string) (uint64, bool) {
	v, ok := a.get(name)
	if !ok {
		return 0, false
	}
	return v.AsUint64()
}

func (a *auditor) flag(name string) bool {
	v, ok := a.get(name)
	if !ok || v.Type != gguf.TypeBool {
		return false
	}
	b, _ := v.AsBool()
	return b
}

func (a *auditor) str(name string) (string, bool) {
	v, ok := a.get(name)
	if !ok {
		return "", false
	}
	return v.AsString()
}

// checkTypes reports every documented key that is missing or has another
// type.
func (a *auditor) checkTypes() {
	for _, k := range errata.Keys {
		kv, ok := a.file.KV(k.Full())
		switch {
		case !ok && !k.Optional:
			a.r.disagree(k.Full(), "", "missing", "a "+k.TypeText()+" (ERRATA.md)", BasisFile)
		case ok && !k.Has(kv.Value):
			a.r.disagree(k.Full(), "", errata.TypeText(kv.Value.Type, kv.Value.Elem), k.TypeText()+" (ERRATA.md)", BasisFile)
		}
	}
}

// storedNames reads physarium.tensors.name/killed/weights, checks that the
// arrays line up and name existing, distinct tensors with the stored element
// counts, and returns the names of the existing ones.
func (a *auditor) storedNames() []string {
	a.checkTypes()
	a.storedKilled = map[string]uint64{}
	nv, _ := a.get("tensors.name")
	kv, _ := a.get("tensors.killed")
	wv, _ := a.get("tensors.weights")
	names, _ := nv.Data.([]string)
	killed, _ := kv.Data.([]uint64)
	weights, _ := wv.Data.([]uint64)
	if len(killed) != len(names) {
		a.r.disagree(errata.KeyPrefix+"tensors.killed", "", fmt.Sprintf("%d entries", len(killed)), fmt.Sprintf("%d (one per physarium.tensors.name)", len(names)), BasisFile)
	}
	if len(weights) != len(names) {
		a.r.disagree(errata.KeyPrefix+"tensors.weights", "", fmt.Sprintf("%d entries", len(weights)), fmt.Sprintf("%d (one per physarium.tensors.name)", len(names)), BasisFile)
	}
	seen := map[string]bool{}
	var out []string
	for i, name := range names {
		if seen[name] {
			a.r.disagree(errata.KeyPrefix+"tensors.name", name, "listed twice", "each target once", BasisFile)
			continue
		}
		seen[name] = true
		t, ok := a.file.Tensor(name)
		if !ok {
			a.r.disagree(errata.KeyPrefix+"tensors.name", name, "a target", "no such tensor in the file", BasisFile)
			continue
		}
		out = append(out, name)
		if i < len(killed) {
			a.storedKilled[name] = killed[i]
		}
		if i < len(weights) {
			st := Check{Key: errata.KeyPrefix + "tensors.weights", Tensor: name, Stored: fmt.Sprint(weights[i]), Recounted: fmt.Sprint(t.Elements()), Basis: BasisFile}
			st.Status = statusOf(weights[i] == t.Elements())
			a.r.check(st)
		}
	}
	return out
}

// figure records the check of a stored count against an exact recount.
func (a *auditor) figure(key, tensor string, stored uint64, present bool, recount uint64, basis, note string) {
	if !present {
		return // reported by checkTypes
	}
	a.r.check(Check{Key: errata.KeyPrefix + key, Tensor: tensor, Stored: fmt.Sprint(stored), Recounted: fmt.Sprint(recount), Status: statusOf(stored == recount), Basis: basis, Note: note})
}

// bounded records the check of a stored count against a recount that may be
// an interval.
func (a *auditor) bounded(key, tensor string, stored uint64, c Count, basis, note string) {
	ck := Check{Key: errata.KeyPrefix + key, Tensor: tensor, Stored: fmt.Sprint(stored), Recounted: c.String(), Basis: basis, Note: note}
	switch {
	case !c.contains(stored):
		ck.Status = StatusDisagrees
	case c.Exact:
		ck.Status = StatusExact
	case c.trivial:
		ck.Status = StatusUnverifiable
	default:
		ck.Status = StatusBounds
	}
	a.r.check(ck)
}

// checkKeys compares every stored physarium.* figure with the recount.
func (a *auditor) checkKeys() {
	r := a.r
	version, hasVersion := a.u64("version")
	r.Version = int(version)
	r.Method, _ = a.str("method")
	r.Mode, _ = a.str("mode")
	a.reconstructed = a.flag(errata.KeyReconstructed)
	a.checkLabels()
	a.checkDenominators()
	a.checkNonfinite()
	a.checkMaxKilledRel()
	a.checkRetype()
	if a.control {
		a.checkControl()
		return
	}
	for _, k := range []string{"control_of", "reencoded_blocks"} {
		if kv, ok := a.file.KV(errata.KeyPrefix + k); ok {
			r.disagree(errata.KeyPrefix+k, "", valueText(kv.Value), "absent: a key of control twins, and the file has no physarium.control = true", BasisFile)
		}
	}
	k := a.checkKills()
	a.checkZeros(k)
	num, numBasis := a.checkRates(k)
	moved := a.checkMoved(k)
	a.checkNM()
	if s, ok := a.str("errata"); ok && hasVersion {
		imp, _ := a.str("importance")
		want := errata.Wording(errata.Figures{
			Version: int(version), Method: r.Method, Importance: imp,
			Killed: num, Weights: r.Weights, TargetCount: r.TargetTensors,
			Reconstructed: a.reconstructed, SurvivorsChanged: moved,
		})
		ck := Check{Key: errata.KeyPrefix + "errata", Stored: s, Recounted: want, Basis: numBasis, Note: "errata.Wording filled with the recounted figures"}
		ck.Status = statusOf(s == want)
		if ck.Status == StatusExact && !k.total.Exact {
			ck.Status = StatusBounds
			ck.Note += "; the kill count in it is the stored one"
		}
		r.check(ck)
	}
}

// checkLabels checks the constants the recount relies on (tile, tiling),
// the method's labels, the target patterns and the kernel parameters.
func (a *auditor) checkLabels() {
	if tile, ok := a.u64("tile"); ok {
		a.figure("tile", "", tile, true, errata.TileSize, BasisFile, "the tiling recount uses 256x256 tiles")
	}
	if s, ok := a.str("tiling"); ok {
		a.stringCheck("tiling", s, errata.Tiling, BasisFile)
	}
	a.labels = a.checkMethod()
	a.checkPatterns()
	if s, ok := a.str("params"); ok {
		a.r.check(a.paramsCheck(s))
	}
	if !a.r.Replay.Ran {
		a.r.check(Check{Key: "replay", Stored: "-", Recounted: "-", Status: StatusUnverifiable, Basis: a.basis(), Note: "kernel not replayed: " + a.r.Replay.Reason})
	}
}

// paramsCheck is the check of physarium.params, stored as s.
func (a *auditor) paramsCheck(s string) Check {
	ck := Check{Key: errata.KeyPrefix + "params", Stored: s, Basis: a.basis()}
	switch {
	case a.paramsErr != nil:
		ck.Recounted, ck.Status = "kernel parameters: "+a.paramsErr.Error(), StatusDisagrees
	case a.r.Replay.Ran:
		ck.Recounted, ck.Status = s, StatusExact
		ck.Note = "parsed with physarium.mode, renders back identically; the kernel was replayed with them"
		if a.magReplay {
			ck.Note = "parsed with physarium.mode, renders back identically; the magnitude baseline was replayed at its sparsity (the kernel constants are unused by a baseline)"
		}
	case a.labels.rule != nil && a.labels.method.Replay(a.control) != method.ReplayKernel:
		ck.Recounted, ck.Status = s, StatusUnverifiable
		ck.Note = fmt.Sprintf("parsed with physarium.mode, renders back identically; sparsity=%g enters the count rule (%s)", a.params.Sparsity, a.labels.rule)
		if a.labels.method.Version() == 0 {
			ck.Note += "; the kernel constants are unused by a baseline"
		}
	default:
		ck.Recounted, ck.Status = "-", StatusUnverifiable
		ck.Note = "not replayed: " + a.r.Replay.Reason
	}
	return ck
}

// checkDenominators checks the three denominators against the recount.
func (a *auditor) checkDenominators() {
	r := a.r
	tgt, ok := a.u64("weights.target")
	a.figure("weights.target", "", tgt, ok, r.Weights.Target, BasisFile, "sum of the elements of the tensors in physarium.tensors.name")
	proc, ok := a.u64("weights.processed")
	a.figure("weights.processed", "", proc, ok, r.Weights.Processed, BasisFile, "recounted from the shapes with non-overlapping 256x256 tiles per matrix")
	mdl, ok := a.u64("weights.model")
	a.figure("weights.model", "", mdl, ok, r.Weights.Model, BasisFile, "every element of every tensor")
}

// checkNonfinite checks physarium.nonfinite_copied, which prune writes when
// tensors that are not targets hold NaN or infinite values.
func (a *auditor) checkNonfinite() {
	key := errata.KeyPrefix + errata.KeyNonfinite
	stored, has := a.u64(errata.KeyNonfinite)
	_, present := a.file.KV(key)
	switch {
	case has:
		a.figure(errata.KeyNonfinite, "", stored, true, a.nonfinite, BasisFile, "NaN and infinite values of the tensors that are not targets")
	case !present && a.nonfinite > 0:
		a.r.disagree(key, "", "missing", fmt.Sprintf("a UINT64: %d NaN or infinite values in tensors that are not targets", a.nonfinite), BasisFile)
	}
}

// killFigures are the stored kill figures of a pruned file and what the
// per-tensor recount found.
type killFigures struct {
	killed, exactZero, zeroBefore      uint64
	hasKilled, hasExact, hasZeroBefore bool
	total                              Count // the recounted kills
	allSingle, allZeroCoded            bool  // every target F32/F16/BF16; every target with a zero code
	zeros, zeroed                      uint64
}

// checkKills checks the kills of every tensor and their sum.
func (a *auditor) checkKills() killFigures {
	r := a.r
	var k killFigures
	k.killed, k.hasKilled = a.u64("killed")
	k.exactZero, k.hasExact = a.u64("exact_zero")
	k.zeroBefore, k.hasZeroBefore = a.u64("zero_before")
	allExact := k.hasKilled && k.hasExact && k.exactZero == k.killed // the file states that every kill reads 0
	var sum uint64
	k.total = exact(0)
	k.allSingle, k.allZeroCoded = true, true
	for i := range r.Tensors {
		t := &r.Tensors[i]
		s := &t.scan
		typ, _ := gguf.ParseType(t.Type)
		single := singleWeight(typ) && t.ZeroCode != "none" && t.ZeroCode != "unknown" && !a.retyped
		k.allSingle = k.allSingle && single && s.decoded
		k.allZeroCoded = k.allZeroCoded && (t.ZeroCode == "exact" || t.ZeroCode == "preserving") && s.decoded
		k.zeros += s.zeros
		k.zeroed += s.zeroed
		c, note := a.killCount(t, single, allExact)
		c, note = a.applyRule(t, c, note)
		k.total = k.total.add(c)
		t.Killed = &c
		stored, ok := a.storedKilled[t.Name]
		if !ok {
			continue
		}
		sum += stored
		t.StoredKilled = &stored
		num := stored
		if c.Exact {
			num = c.Lo
		}
		kr := errata.NewRate(num, t.Weights, errata.OfTensor)
		t.KillRate = &kr
		a.bounded("tensors.killed", t.Name, stored, c, scanBasis(s), note)
		a.tensorData(t, single)
	}
	if k.hasKilled {
		a.figure("killed", "", k.killed, true, sum, BasisFile, "sum of physarium.tensors.killed")
		r.StoredKilled = &k.killed
		r.Killed = &k.total
		a.bounded("killed", "", k.killed, k.total, a.basis(), "sum of the per-tensor recounts")
	}
	if k.hasKilled && k.hasExact && k.exactZero > k.killed {
		r.disagree(errata.KeyPrefix+"exact_zero", "", fmt.Sprint(k.exactZero), fmt.Sprintf("at most physarium.killed = %d", k.killed), BasisFile)
	}
	return k
}

// checkZeros checks zero_before and exact_zero.
func (a *auditor) checkZeros(k killFigures) {
	r := a.r
	if a.orig == nil {
		if k.hasZeroBefore && k.hasExact {
			a.zeroBeforeAlone(k.zeroBefore, k.exactZero, k.zeros, k.allSingle, k.allZeroCoded)
		}
		return
	}
	if k.hasZeroBefore {
		a.figure("zero_before", "", k.zeroBefore, true, r.ZeroBefore.Numerator, BasisAgainst, "target weights that read exactly 0 in the original")
	}
	if k.hasExact {
		c := Count{Lo: 0, Hi: k.zeroed}
		note := "killed weights that read 0 are among the weights non-zero in the original and zero now"
		if n, ok := replayedExactZero(r.Tensors); ok {
			c = exact(n)
			note = "replayed kills that read exactly 0 in the file"
		} else if k.allSingle {
			c = exact(k.zeroed)
			note = "F32/F16/BF16 targets: every weight non-zero in the original and zero now is a kill reading 0"
		}
		a.bounded("exact_zero", "", k.exactZero, c, BasisAgainst, note)
	}
}

// checkRates checks the kill rates and the coverage, and returns the kill
// count the wording must state (the recount when exact, else the stored
// one) and the basis of that number.
func (a *auditor) checkRates(k killFigures) (uint64, string) {
	r := a.r
	num := k.killed
	numBasis, numNote := BasisFile, "numerator: the stored physarium.killed (the recount only bounds it)"
	if k.total.Exact {
		num, numBasis, numNote = k.total.Lo, a.basis(), "numerator: the recounted kills"
	}
	ot, om := errata.NewRate(num, r.Weights.Target, errata.OfTarget), errata.NewRate(num, r.Weights.Model, errata.OfModel)
	r.OverTarget, r.OverModel = &ot, &om
	a.rate("kill_rate.over_target", errata.Ratio(num, r.Weights.Target), k.total.Exact, numBasis, numNote+" over the recounted target")
	a.rate("kill_rate.over_model", errata.Ratio(num, r.Weights.Model), k.total.Exact, numBasis, numNote+" over the recounted model")
	a.rate("coverage", errata.Ratio(r.Weights.Processed, r.Weights.Target), true, BasisFile, "recounted processed over recounted target")
	return num, numBasis
}

// applyRule narrows a tensor's kill count c to the count the sparsity-mode
// rule of the stored method fixes (with the original, when the tensor was
// not replayed), or records a disagreement when the data excludes it.
func (a *auditor) applyRule(t *TensorAudit, c Count, note string) (Count, string) {
	s, labels := &t.scan, a.labels
	if labels.rule == nil || !labels.ok || !a.hasParams || t.Replay != nil || !s.against {
		return c, note
	}
	k, ok := ruleKills(labels.rule, t.Shape, s.segZeros, a.params.Sparsity)
	if !ok {
		return c, note
	}
	rule := fmt.Sprintf("%d kills: %s at s=%g (method %s), the original's zeros counting first", k, labels.rule, a.params.Sparsity, labels.method.Name())
	if !c.contains(k) {
		a.r.disagree("sparsity.rule", t.Name, "kills in the data "+c.String()+" ("+note+")", rule, BasisAgainst)
		return c, note
	}
	return exact(k), rule + "; the data allows it (" + c.String() + ")"
}

// scanBasis says on what a tensor's recount rests.
func scanBasis(s *scan) string {
	if s.against {
		return BasisAgainst
	}
	return BasisFile
}

// killCount returns the interval of a tensor's kills the data allows, and
// how it was derived.
func (a *auditor) killCount(t *TensorAudit, single, allExact bool) (Count, string) {
	s := &t.scan
	n := t.Weights
	switch {
	case t.Replay == nil && t.RetypedFrom != "":
		return retypedKillCount(t)
	case t.Replay != nil && a.cal != nil:
		return exact(t.Replay.Killed), "the method replayed on the original's values with the calibration file's Gram matrices"
	case t.Replay != nil:
		return exact(t.Replay.Killed), "the kernel replayed on the original's values (deterministic, bit-identical on every implementation)"
	case !s.decoded:
		return Count{Lo: 0, Hi: n, trivial: true}, "type cannot be decoded: only kills <= weights"
	case s.against && single:
		return exact(s.zeroed), "F32/F16/BF16: a kill is a weight non-zero in the original and 0 now"
	case s.against && a.reconstructed && t.ZeroCode != "none" && t.ZeroCode != "unknown":
		return Count{Lo: 0, Hi: s.zeroed}, "survivors moved (physarium.reconstructed): at most the weights non-zero in the original and 0 now"
	case s.against && t.ZeroCode != "none" && t.ZeroCode != "unknown":
		hi, note := s.nonzeroChanged, "at least one kill per changed block; at most the non-zero original weights of changed blocks"
		if allExact {
			hi = s.zeroed
			note = "at least one kill per changed block; at most the weights non-zero in the original and 0 now (re-encoding can round survivors to 0)"
		}
		return Count{Lo: min(s.changedBlocks, hi), Hi: hi}, note
	case s.against:
		return Count{Lo: s.changedBlocks, Hi: n - s.zeroBefore}, "no zero code: at least one kill per changed block; a block with a kill may keep its bytes, so at most the non-zero original weights"
	case single || allExact && t.ZeroCode != "none" && t.ZeroCode != "unknown":
		return Count{Lo: 0, Hi: s.zeros}, "alone: kills read 0, so at most the weights that read 0 now; --against recounts more"
	}
	return Count{Lo: 0, Hi: n, trivial: true}, "alone, no zero code (or kills not all exact): only kills <= weights; --against recounts more"
}

// tensorData reports changes inside a target tensor that are no kill.
func (a *auditor) tensorData(t *TensorAudit, single bool) {
	s := &t.scan
	if !s.against {
		return
	}
	if t.RetypedFrom != "" {
		a.retypedData(t)
		return
	}
	ok := true
	if a.reconstructed && t.Replay != nil {
		if single {
			a.moved += s.notKill
		}
		ok := a.replayData(t)
		if s.lostZero > 0 {
			a.r.disagree("tensor.data", t.Name, fmt.Sprintf("%d weights that were 0 read non-zero (first: element %d)", s.lostZero, s.firstLost), "the original's zeros stay 0", BasisAgainst)
		} else if ok {
			a.r.check(Check{Key: "tensor.data", Tensor: t.Name, Stored: fmt.Sprintf("%d of %d blocks changed", s.changedBlocks, s.blocks), Recounted: "every changed block is the replayed reconstruction's re-encoding; unchanged blocks keep their bytes", Status: StatusExact, Basis: BasisAgainst})
		}
		return
	}
	if a.reconstructed {
		if single {
			a.moved += s.notKill
		}
		a.r.check(Check{Key: "tensor.data", Tensor: t.Name, Stored: fmt.Sprintf("%d of %d blocks changed", s.changedBlocks, s.blocks), Recounted: "survivors may change (physarium.reconstructed); kills read 0 and the original's zeros stay 0", Status: statusOf(s.lostZero == 0), Basis: BasisAgainst})
		return
	}
	if single && s.notKill > 0 {
		ok = false
		a.r.disagree("tensor.data", t.Name, fmt.Sprintf("%d weights changed otherwise than non-zero to 0 (first: element %d)", s.notKill, s.firstNotKill), "only kills may change in F32/F16/BF16", BasisAgainst)
	}
	if t.ZeroCode != "none" && t.ZeroCode != "unknown" {
		if s.noKillBlocks > 0 {
			ok = false
			a.r.disagree("tensor.data", t.Name, fmt.Sprintf("%d changed blocks without a weight made 0 (first: block %d)", s.noKillBlocks, s.firstNoKill), "a block changes only when it holds a kill, which reads 0", BasisAgainst)
		}
		if s.lostZero > 0 {
			ok = false
			a.r.disagree("tensor.data", t.Name, fmt.Sprintf("%d weights that were 0 read non-zero (first: element %d)", s.lostZero, s.firstLost), "a type with a zero code keeps zeros", BasisAgainst)
		}
	}
	if rp := t.Replay; rp != nil {
		ok = a.replayData(t) && ok
	} else if t.pass.problem != "" {
		a.r.check(Check{Key: "replay", Tensor: t.Name, Stored: "-", Recounted: "-", Status: StatusUnverifiable, Basis: BasisAgainst, Note: "not replayed: " + t.pass.problem})
	}
	if ok {
		a.r.check(Check{Key: "tensor.data", Tensor: t.Name, Stored: fmt.Sprintf("%d of %d blocks changed", s.changedBlocks, s.blocks), Recounted: "every changed block holds a weight made 0; unchanged blocks keep their bytes", Status: StatusExact, Basis: BasisAgainst})
	}
}

// replayedExactZero sums the replayed exact_zero when every target was
// replayed.
func replayedExactZero(ts []TensorAudit) (uint64, bool) {
	var n uint64
	for _, t := range ts {
		if t.Replay == nil {
			return 0, false
		}
		n += t.Replay.ExactZero
	}
	return n, len(ts) > 0
}

// replayData checks a pruned tensor's blocks against the replayed mask and
// reports whether they all agree.
func (a *auditor) replayData(t *TensorAudit) bool {
	rp, walked := t.Replay, &t.pass
	ok := true
	if rp.AsExpected != rp.KillBlocks {
		ok = false
		a.r.disagree("tensor.data", t.Name, fmt.Sprintf("%d of the %d blocks holding a replayed kill are not the expected re-encoding (first: block %d)", rp.KillBlocks-rp.AsExpected, rp.KillBlocks, walked.firstBadKill), "quantize.EncodeKeepZeros of the original's values with the kills zeroed (this build's encoder)", BasisAgainst)
	}
	if rp.MovedAsExpected != rp.MovedBlocks {
		ok = false
		a.r.disagree("tensor.data", t.Name, fmt.Sprintf("%d of the %d blocks whose survivors the replay moved are not the expected re-encoding (first bad block: %d)", rp.MovedBlocks-rp.MovedAsExpected, rp.MovedBlocks, walked.firstBadKill), "quantize.EncodeKeepZeros of the replayed survivors (this build's encoder)", BasisAgainst)
	}
	if rp.KeptChanged > 0 {
		ok = false
		a.r.disagree("tensor.data", t.Name, fmt.Sprintf("%d blocks without a replayed kill changed (first: block %d)", rp.KeptChanged, walked.firstKept), "blocks without a kill keep the original's bytes", BasisAgainst)
	}
	if walked.firstKilledNZ >= 0 {
		ok = false
		a.r.disagree("tensor.data", t.Name, fmt.Sprintf("%d replayed kills read non-zero (first: element %d)", rp.KilledNonZero, walked.firstKilledNZ), "a kill reads exactly 0 in a type with a zero code", BasisAgainst)
	}
	if rp.OffRule > 0 {
		ok = false
		a.r.disagree("replay.sparsity", t.Name, fmt.Sprintf("%d of %d tiles off the rule (first: tile %d)", rp.OffRule, rp.Tiles, walked.firstOffTile), "each tile ends with round(s*n) zeros (kills + zero_before), or its zero_before when more", BasisAgainst)
	}
	if ok {
		note := "every replayed kill reads exactly 0"
		if rp.KilledNonZero > 0 {
			note = fmt.Sprintf("no zero code: %d of %d killed weights read non-zero, max |value| %g", rp.KilledNonZero, rp.Killed, rp.MaxKilledAbs)
		}
		ck := Check{Key: "replay", Tensor: t.Name, Stored: fmt.Sprintf("%d kills in %d of %d blocks, %d tiles", rp.Killed, rp.KillBlocks, rp.Blocks, rp.Tiles), Recounted: "every kill block is the expected re-encoding, every other block the original's", Status: StatusExact, Basis: BasisAgainst, Note: note}
		if a.cal != nil {
			ck.Stored = fmt.Sprintf("%d kills in %d of %d blocks, %d survivors moved in %d more blocks", rp.Killed, rp.KillBlocks, rp.Blocks, rp.SurvivorsChanged, rp.MovedBlocks)
			ck.Recounted = "every block holding a kill or a moved survivor is the re-encoding of the replayed values, every other block the original's"
		}
		a.r.check(ck)
	}
	return ok
}

// rate checks a stored FLOAT64 fraction against the recount, exactly.
func (a *auditor) rate(key string, want float64, exactNum bool, basis, note string) {
	v, ok := a.get(key)
	if !ok {
		return
	}
	got, _ := v.AsFloat64()
	ck := Check{Key: errata.KeyPrefix + key, Stored: fmt.Sprint(got), Recounted: fmt.Sprint(want), Basis: basis, Note: note}
	ck.Status = statusOf(math.Float64bits(got) == math.Float64bits(want))
	if ck.Status == StatusExact && !exactNum {
		ck.Status = StatusBounds
	}
	a.r.check(ck)
}

func (a *auditor) stringCheck(key, stored, want, basis string) {
	a.r.check(Check{Key: errata.KeyPrefix + key, Stored: stored, Recounted: want, Status: statusOf(stored == want), Basis: basis})
}

// checkPatterns checks that every target matches the selection stored in
// physarium.targets (the default pattern, "include RE", "exclude RE",
// "layers L").
func (a *auditor) checkPatterns() {
	v, ok := a.get("targets")
	if !ok {
		return
	}
	pats, _ := v.Data.([]string)
	sel, entry, err := errata.ParseTargets(pats)
	if err != nil {
		a.r.disagree(errata.KeyPrefix+"targets", "", entry, "a pattern: "+err.Error(), BasisFile)
		return
	}
	bad := 0
	for _, name := range a.r.targetNames() {
		if !sel.Match(name) {
			bad++
			a.r.disagree(errata.KeyPrefix+"targets", name, "a target", "not chosen by the stored patterns", BasisFile)
		}
	}
	if bad == 0 {
		a.r.check(Check{Key: errata.KeyPrefix + "targets", Stored: strings.Join(pats, "; "), Recounted: "every target matches", Status: StatusExact, Basis: BasisFile})
	}
}

func (r *Report) targetNames() []string {
	names := make([]string, len(r.Tensors))
	for i, t := range r.Tensors {
		names[i] = t.Name
	}
	return names
}

// zeroBeforeAlone checks zero_before and exact_zero against the zeros the
// file alone shows.
func (a *auditor) zeroBeforeAlone(zeroBefore, exactZero, zeros uint64, allSingle, allZeroCoded bool) {
	r := a.r
	ck := Check{Key: errata.KeyPrefix + "zero_before", Stored: fmt.Sprintf("%d (+ exact_zero %d = %d)", zeroBefore, exactZero, zeroBefore+exactZero), Recounted: fmt.Sprintf("%d target weights read 0", zeros), Basis: BasisFile}
	switch {
	case allSingle:
		ck.Status = statusOf(zeroBefore+exactZero == zeros)
		ck.Note = "F32/F16/BF16 targets: zeros now = zero_before + exact_zero exactly; the split between the two needs --against"
	case allZeroCoded:
		ck.Status = StatusBounds
		if zeroBefore+exactZero > zeros {
			ck.Status = StatusDisagrees
		}
		ck.Recounted = fmt.Sprintf("at most %d (target weights that read 0)", zeros)
		ck.Note = "zeros now = zero_before + exact_zero + survivors that re-encoding rounded to 0, so only an upper bound; the split needs --against"
	default:
		ck.Status = StatusUnverifiable
		ck.Note = "a target type without a zero code: weights that were 0 may read non-zero after re-encoding; needs --against"
	}
	r.check(ck)
}

// checkMoved checks physarium.survivors_changed (with --against and only
// F32/F16/BF16 targets: the weights changed that are not kills; F16 and
// BF16 can round a change away, so only all-F32 targets give an exact
// recount) and returns the figure the wording states.
func (a *auditor) checkMoved(k killFigures) uint64 {
	if moved, ok := a.calReplayKeys(); ok {
		return moved
	}
	if _, ok := a.get(errata.KeyOutputError); ok {
		if a.reconstructed {
			a.r.check(Check{Key: errata.KeyPrefix + errata.KeyOutputError, Stored: "present", Recounted: "-", Status: StatusUnverifiable, Basis: BasisFile,
				Note: "the layer-output error needs the calibration file's Gram matrices (physarium.calibration), which the audit is not given"})
		} else {
			a.r.disagree(errata.KeyPrefix+errata.KeyOutputError, "", "present", "absent: the file has no physarium.reconstructed = true", BasisFile)
		}
	}
	stored, has := a.u64(errata.KeySurvivorsMoved)
	if !a.reconstructed {
		if has {
			a.r.disagree(errata.KeyPrefix+errata.KeySurvivorsMoved, "", fmt.Sprint(stored), "absent: the file has no physarium.reconstructed = true", BasisFile)
		}
		return 0
	}
	if !has {
		a.r.disagree(errata.KeyPrefix+errata.KeySurvivorsMoved, "", "absent", "present when physarium.reconstructed is true", BasisFile)
		return 0
	}
	allF32 := a.orig != nil && k.allSingle
	for _, t := range a.r.Tensors {
		allF32 = allF32 && t.Type == "F32"
	}
	if !allF32 {
		a.r.check(Check{Key: errata.KeyPrefix + errata.KeySurvivorsMoved, Stored: fmt.Sprint(stored), Recounted: "-", Status: StatusUnverifiable, Basis: a.basis(),
			Note: "counted before re-encoding: recounted only with --against on F32 targets; the values themselves need the calibration file (physarium.calibration) to replay"})
		return stored
	}
	a.figure(errata.KeySurvivorsMoved, "", stored, true, a.moved, BasisAgainst, "F32 targets: the weights changed that are not kills")
	return a.moved
}
