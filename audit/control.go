package audit

import (
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/physarium/physarium-gguf/errata"
	"github.com/physarium/physarium-gguf/gguf"
)

// parseControlOf splits physarium.control_of, "<base name> sha256:<hex>",
// or for a split pruned twin one such part per shard separated by ", ", into
// its names and its sha256s, each joined by ", ".
func parseControlOf(s string) (names, sums string, ok bool) {
	var ns, ss []string
	ok = true
	for _, part := range strings.Split(s, errata.SourceSeparator) {
		name, sum, found := strings.Cut(part, " sha256:")
		_, err := hex.DecodeString(sum)
		ok = ok && found && name != "" && len(sum) == 64 && strings.ToLower(sum) == sum && err == nil
		ns, ss = append(ns, name), append(ss, sum)
	}
	return strings.Join(ns, errata.SourceSeparator), strings.Join(ss, errata.SourceSeparator), ok
}

// checkControl checks the figures of a control twin (as prune writes them):
// every kill figure 0, the control wording, physarium.control_of and
// physarium.reencoded_blocks, and with the original its blocks.
func (a *auditor) checkControl() {
	r := a.r
	b := a.basis()
	r.check(Check{Key: errata.KeyPrefix + "control", Stored: "true", Recounted: "a control twin: re-encoding only, every kill figure 0", Status: StatusExact, Basis: BasisFile})
	const none = "a control twin kills nothing"
	for _, k := range []string{"killed", "exact_zero"} {
		v, ok := a.u64(k)
		a.figure(k, "", v, ok, 0, BasisFile, none)
	}
	allSingle, allZeroCoded := true, true
	var zeros, blocks uint64
	for i := range r.Tensors {
		t := &r.Tensors[i]
		typ, _ := gguf.ParseType(t.Type)
		allSingle = allSingle && singleWeight(typ) && t.ZeroCode != "none" && t.ZeroCode != "unknown" && t.scan.decoded
		allZeroCoded = allZeroCoded && (t.ZeroCode == "exact" || t.ZeroCode == "preserving")
		zeros += t.scan.zeros
		if ti, ok := typ.Info(); ok {
			blocks += t.Weights / uint64(ti.BlockSize)
		}
		if stored, ok := a.storedKilled[t.Name]; ok {
			t.StoredKilled = &stored
			a.figure("tensors.killed", t.Name, stored, true, 0, BasisFile, none)
		}
		a.controlData(t)
	}
	a.rate("kill_rate.over_target", 0, true, BasisFile, none)
	a.rate("kill_rate.over_model", 0, true, BasisFile, none)
	a.rate("coverage", errata.Ratio(r.Weights.Processed, r.Weights.Target), true, BasisFile, "recounted processed over recounted target")
	zeroBefore, hasZB := a.u64("zero_before")
	if hasZB && a.orig != nil {
		a.figure("zero_before", "", zeroBefore, true, r.ZeroBefore.Numerator, BasisAgainst, "target weights that read exactly 0 in the original")
	} else if hasZB {
		a.zeroBeforeAlone(zeroBefore, 0, zeros, allSingle, allZeroCoded)
	}

	of := a.checkControlOf()
	name, sum, wellFormed := parseControlOf(of)

	// reencoded_blocks.
	reenc, hasReenc := a.u64("reencoded_blocks")
	if _, present := a.file.KV(errata.KeyPrefix + "reencoded_blocks"); !present {
		r.disagree(errata.KeyPrefix+"reencoded_blocks", "", "missing", "a UINT64 in a control twin", BasisFile)
	}
	c, note := a.reencodedCount(blocks, allZeroCoded)
	if hasReenc {
		a.bounded("reencoded_blocks", "", reenc, c, b, note)
	}

	// The wording.
	version, hasVersion := a.u64("version")
	if s, ok := a.str("errata"); ok && hasVersion && wellFormed {
		n := reenc
		if c.Exact {
			n = c.Lo
		}
		want := errata.ControlWording(errata.ControlFigures{Version: int(version), Weights: r.Weights, TargetCount: r.TargetTensors, Reencoded: n, Of: name, OfSHA256: sum})
		ck := Check{Key: errata.KeyPrefix + "errata", Stored: s, Recounted: want, Status: statusOf(s == want), Basis: b, Note: "errata.ControlWording filled with the recounted figures"}
		if ck.Status == StatusExact && !c.Exact {
			ck.Status = StatusBounds
			ck.Note += "; the re-encoded block count in it is the stored one"
		}
		r.check(ck)
	}
}

// checkControlOf checks physarium.control_of, "<pruned file> sha256:<hex>",
// against the pruned twin when given, and returns it.
func (a *auditor) checkControlOf() string {
	r := a.r
	key := errata.KeyPrefix + errata.KeyControlOf
	of, hasOf := a.str(errata.KeyControlOf)
	name, sum, wellFormed := parseControlOf(of)
	switch {
	case !hasOf:
		if _, present := a.file.KV(key); !present {
			r.disagree(key, "", "missing", "a STRING \"<pruned file> sha256:<hex>\" in a control twin", BasisFile)
		}
	case !wellFormed:
		r.disagree(key, "", of, "\"<pruned file> sha256:<64 lowercase hex digits>\" (for a split pruned file, one per shard separated by \", \")", BasisFile)
	case a.twin != nil:
		twinNames := shardNames(a.twinShards)
		want := errata.Source(twinNames, strings.Split(r.PrunedTwinSHA256, errata.SourceSeparator))
		ck := Check{Key: key, Stored: of, Recounted: want, Status: statusOf(sum == r.PrunedTwinSHA256), Basis: BasisAgainst, Note: "the sha256 of the pruned twin given with --pruned"}
		if ck.Status == StatusExact && name != strings.Join(twinNames, errata.SourceSeparator) {
			ck.Note += "; the pruned twin has been renamed since"
		}
		r.check(ck)
	default:
		r.check(Check{Key: key, Stored: of, Recounted: "-", Status: StatusUnverifiable, Basis: BasisFile, Note: "well formed; its sha256 needs the pruned twin (--pruned)"})
	}
	return of
}

// reencodedCount is what the data says of the number of blocks the pruned
// twin re-encoded (= the blocks the control re-encoded).
func (a *auditor) reencodedCount(blocks uint64, allZeroCoded bool) (Count, string) {
	ts := a.r.Tensors
	all := func(f func(t *TensorAudit) bool) bool {
		for i := range ts {
			if !f(&ts[i]) {
				return false
			}
		}
		return true
	}
	sum := func(f func(t *TensorAudit) uint64) uint64 {
		var n uint64
		for i := range ts {
			n += f(&ts[i])
		}
		return n
	}
	switch {
	case all(func(t *TensorAudit) bool { return t.Replay != nil }):
		return exact(sum(func(t *TensorAudit) uint64 { return t.Replay.KillBlocks + t.Replay.MovedBlocks })), "the blocks holding a replayed kill (or a replayed moved survivor)"
	case all(func(t *TensorAudit) bool { return t.Control != nil && t.Control.PrunedChanged != nil }) && allZeroCoded:
		return exact(sum(func(t *TensorAudit) uint64 { return *t.Control.PrunedChanged })), "types with a zero code: the pruned twin changed exactly the blocks holding a kill"
	case all(func(t *TensorAudit) bool { return t.Control != nil && t.Control.Union != nil }):
		return Count{Lo: sum(func(t *TensorAudit) uint64 { return *t.Control.Union }), Hi: blocks}, "at least the blocks changed in the control or the pruned twin (a re-encoding may keep a block's bytes); at most every target block"
	case all(func(t *TensorAudit) bool { return t.Control != nil }):
		return Count{Lo: sum(func(t *TensorAudit) uint64 { return t.Control.Changed }), Hi: blocks}, "at least the blocks the control changed (a re-encoding may keep a block's bytes); at most every target block; --pruned or a replay recounts it"
	}
	return Count{Lo: 0, Hi: blocks, trivial: true}, "alone: at most every target block; --against recounts more"
}

// controlData checks a control twin's target tensor block by block.
func (a *auditor) controlData(t *TensorAudit) {
	c, walked := t.Control, &t.pass
	if c == nil {
		if a.orig != nil && walked.problem != "" {
			a.r.check(Check{Key: "tensor.data", Tensor: t.Name, Stored: "-", Recounted: "-", Status: StatusUnverifiable, Basis: BasisAgainst, Note: walked.problem})
		}
		return
	}
	ok := true
	bad := func(key, stored, want string) {
		ok = false
		a.r.disagree(key, t.Name, stored, want, BasisAgainst)
	}
	if c.NotReencoding > 0 {
		bad("tensor.data", fmt.Sprintf("%d of %d changed blocks are no re-encoding of the original's values (first: block %d)", c.NotReencoding, c.Changed, walked.firstNotReenc), "quantize.EncodeKeepZeros of the original's block (this build's encoder)")
	}
	if rp := t.Replay; rp != nil {
		if rp.AsExpected != rp.KillBlocks || rp.MovedAsExpected != rp.MovedBlocks {
			bad("tensor.data", fmt.Sprintf("%d of the %d blocks holding a replayed kill are not re-encoded from the original (first: block %d)", rp.KillBlocks-rp.AsExpected, rp.KillBlocks, walked.firstBadKill), "quantize.EncodeKeepZeros of the original's values, nothing zeroed")
		}
		if rp.KeptChanged > 0 {
			bad("tensor.data", fmt.Sprintf("%d blocks without a replayed kill changed (first: block %d)", rp.KeptChanged, walked.firstKept), "blocks without a kill keep the original's bytes")
		}
		if walked.prunedOutside > 0 {
			bad(errata.KeyPrefix+"control_of", fmt.Sprintf("the pruned twin changed %d blocks without a replayed kill (first: block %d)", walked.prunedOutside, walked.firstPrunedOutside), "a pruned twin changes only blocks holding a kill")
		}
	}
	if c.Missed != nil && *c.Missed > 0 {
		bad("tensor.data", fmt.Sprintf("%d blocks changed by the pruned twin keep the original's bytes here although re-encoding changes them (first: block %d)", *c.Missed, walked.firstMissed), "every block the pruned twin re-encoded is re-encoded in the control")
	}
	extraOK := t.Replay != nil || t.ZeroCode == "none"
	if c.Extra != nil && *c.Extra > 0 && !extraOK {
		bad("tensor.data", fmt.Sprintf("%d blocks changed here that the pruned twin kept (first: block %d)", *c.Extra, walked.firstExtra), "with a zero code, a block holding a kill always changes in the pruned twin, so the control re-encodes only blocks the pruned twin changed")
	}
	if !ok {
		return
	}
	ck := Check{Key: "tensor.data", Tensor: t.Name, Stored: fmt.Sprintf("%d of %d blocks changed", c.Changed, c.Blocks), Status: StatusExact, Basis: BasisAgainst,
		Recounted: "every changed block is the re-encoding of the original's values"}
	switch {
	case t.Replay != nil:
		ck.Recounted = fmt.Sprintf("exactly the %d blocks holding a replayed kill are re-encoded from the original's values; every other block is the original's", t.Replay.KillBlocks)
	case c.Union != nil:
		ck.Recounted += "; the re-encoded blocks are the pruned twin's"
		if c.Extra != nil && *c.Extra > 0 {
			ck.Status = StatusBounds
			ck.Note = fmt.Sprintf("no zero code: %d blocks changed here but not in the pruned twin (a kill may re-encode to the old bytes); a replay decides", *c.Extra)
		}
	default:
		ck.Status = StatusBounds
		ck.Note = "which blocks the pruned twin re-encoded needs --pruned or a replay"
	}
	a.r.check(ck)
}

// checkPrunedTwin checks that the pruned twin describes the same run as the
// control: the same version, method, mode, parameters, targets, source and
// denominators.
func (a *auditor) checkPrunedTwin() {
	for _, k := range []string{"version", "method", "importance", "mode", "params", "targets", "weights.target", "weights.processed", "weights.model", "zero_before", "tensors.name", "tensors.weights", "source"} {
		key := errata.KeyPrefix + k
		mine, ok1 := a.file.KV(key)
		theirs, ok2 := a.twin.KV(key)
		if !ok1 {
			continue // reported as a missing key
		}
		if !ok2 || !valueEqual(mine.Value, theirs.Value) {
			got := "missing"
			if ok2 {
				got = valueText(theirs.Value)
			}
			a.r.disagree(key, "", valueText(mine.Value), "the pruned twin has "+got, BasisAgainst)
		}
	}
	if kv, ok := a.twin.KV(errata.KeyPrefix + "control"); ok {
		a.r.disagree(errata.KeyPrefix+"control_of", "", a.r.PrunedTwin, "a pruned file, but it carries "+errata.KeyPrefix+"control = "+valueText(kv.Value), BasisAgainst)
	}
}
