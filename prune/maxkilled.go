package prune

import (
	"github.com/physarium/physarium-gguf/errata"
	"github.com/physarium/physarium-gguf/gguf"
)

// addMaxKilledRel adds physarium.max_killed_rel to the key values v of
// report r when a target's type has no zero code: the largest
// TensorReport.MaxKilledRel (0 in a control twin, which kills nothing).
func addMaxKilledRel(v map[string]gguf.Value, r *Report) {
	noZero, rel := false, 0.0
	for _, t := range r.Tensors {
		noZero = noZero || !t.ZeroCode
		rel = max(rel, t.MaxKilledRel)
	}
	if noZero {
		v[errata.KeyMaxKilledRel] = gguf.Float64(rel)
	}
}
