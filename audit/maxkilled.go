package audit

import (
	"fmt"
	"math"

	"github.com/physarium/physarium-gguf/errata"
)

// maxKilledRel is the largest |value| of a kill (mask byte not zero) over
// the largest |value| of its block of bs values, 0 when every kill reads 0:
// prune's measure of how close to zero a type without a zero code brings a
// killed weight.
func maxKilledRel(vals []float32, mask []byte, bs int) float64 {
	var rel float64
	for lo := 0; lo+bs <= len(vals); lo += bs {
		var bm, km float64
		for i := lo; i < lo+bs; i++ {
			v := math.Abs(float64(vals[i]))
			bm = max(bm, v)
			if mask[i] != 0 {
				km = max(km, v)
			}
		}
		if km > 0 {
			rel = max(rel, km/bm)
		}
	}
	return rel
}

// checkMaxKilledRel checks physarium.max_killed_rel, which prune writes when
// a target's type has no zero code: recomputed from the file's values at
// the replayed kills, 0 in a control twin.
func (a *auditor) checkMaxKilledRel() {
	key := errata.KeyPrefix + errata.KeyMaxKilledRel
	noZero := false
	for _, t := range a.r.Tensors {
		noZero = noZero || t.ZeroCode == "none"
	}
	v, present := a.get(errata.KeyMaxKilledRel)
	switch {
	case !present && noZero:
		a.r.disagree(key, "", "missing", "a FLOAT64: a target's type has no zero code", BasisFile)
		return
	case !present:
		return
	case !noZero:
		a.r.disagree(key, "", valueText(v), "absent: every target's type has a zero code", BasisFile)
		return
	}
	stored, ok := v.AsFloat64()
	if !ok {
		return // reported by checkTypes
	}
	ck := Check{Key: key, Stored: fmt.Sprint(stored), Basis: BasisFile}
	if a.control {
		ck.Recounted, ck.Status, ck.Note = "0", statusOf(stored == 0), "a control twin kills nothing"
		a.r.check(ck)
		return
	}
	var want float64
	for _, t := range a.r.Tensors {
		if t.Replay == nil {
			ck.Recounted, ck.Status, ck.Basis = "-", StatusUnverifiable, a.basis()
			ck.Note = "the kills' places need the replayed mask (--against the original)"
			a.r.check(ck)
			return
		}
		want = max(want, t.Replay.MaxKilledRel)
	}
	ck.Recounted, ck.Basis = fmt.Sprint(want), BasisAgainst
	ck.Status = statusOf(math.Float64bits(stored) == math.Float64bits(want))
	ck.Note = "largest |value| at a replayed kill over the largest |value| of its block, from the file's values"
	a.r.check(ck)
}
