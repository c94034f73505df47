package prune

import (
	"github.com/physarium/physarium-gguf/errata"
	"github.com/physarium/physarium-gguf/gguf"
	"github.com/physarium/physarium-gguf/method"
)

// Figures returns the numbers the errata wording of the report states.
func (r *Report) Figures() errata.Figures {
	return errata.Figures{
		Version: r.Version, Method: r.Method, Importance: r.Importance,
		Killed: r.Killed, Weights: r.Weights, TargetCount: r.TargetCount,
		Reconstructed: r.Reconstructed, SurvivorsChanged: r.SurvivorsChanged.Numerator,
	}
}

// keyValues returns the values of the physarium.* keys of a finished
// report, by key name without errata.KeyPrefix.
func keyValues(r *Report) map[string]gguf.Value {
	names := make([]string, len(r.Tensors))
	killed := make([]uint64, len(r.Tensors))
	weights := make([]uint64, len(r.Tensors))
	for i, t := range r.Tensors {
		names[i], killed[i], weights[i] = t.Name, t.Killed, t.Weights
	}
	m, known := method.Lookup(r.Method)
	v := map[string]gguf.Value{
		errata.KeyVersion:         gguf.Uint32(uint32(r.Version)),
		errata.KeyMethod:          gguf.String(r.Method),
		errata.KeyActivationAware: gguf.Bool(known && m.ActivationAware()),
		errata.KeyImportance:      gguf.String(r.Importance),
		errata.KeyTile:            gguf.Uint32(uint32(r.Tile)),
		errata.KeyTiling:          gguf.String(r.Tiling),
		errata.KeyMode:            gguf.String(r.Mode),
		errata.KeyParams:          gguf.String(r.Params),
		errata.KeyTargets:         gguf.Strings(r.Targets),
		errata.KeyWeightsTarget:   gguf.Uint64(r.Weights.Target),
		errata.KeyWeightsProc:     gguf.Uint64(r.Weights.Processed),
		errata.KeyWeightsModel:    gguf.Uint64(r.Weights.Model),
		errata.KeyKilled:          gguf.Uint64(r.Killed),
		errata.KeyZeroBefore:      gguf.Uint64(r.ZeroBefore),
		errata.KeyExactZero:       gguf.Uint64(r.ExactZero),
		errata.KeyRateOverTarget:  gguf.Float64(errata.Ratio(r.Killed, r.Weights.Target)),
		errata.KeyRateOverModel:   gguf.Float64(errata.Ratio(r.Killed, r.Weights.Model)),
		errata.KeyCoverage:        gguf.Float64(errata.Ratio(r.Weights.Processed, r.Weights.Target)),
		errata.KeyTensorsName:     gguf.Strings(names),
		errata.KeyTensorsKilled:   gguf.Uint64s(killed),
		errata.KeyTensorsWeights:  gguf.Uint64s(weights),
		errata.KeySource:          gguf.String(r.source()),
		errata.KeyErrata:          gguf.String(r.Errata),
	}
	addMaxKilledRel(v, r)
	if n := r.NonfiniteCopied.Numerator; n > 0 {
		v[errata.KeyNonfinite] = gguf.Uint64(n)
	}
	if r.Imatrix != "" {
		v[errata.KeyImatrix] = gguf.String(r.Imatrix)
	}
	if r.Pattern != "" {
		v[errata.KeyPattern] = gguf.String(r.Pattern)
	}
	if r.Retype != "" {
		v[errata.KeyRetype] = gguf.String(r.Retype)
	}
	if r.Calibration != "" {
		v[errata.KeyCalibration] = gguf.String(r.Calibration)
	}
	if r.Reconstructed {
		v[errata.KeyReconstructed] = gguf.Bool(true)
		v[errata.KeyReconstruction] = gguf.String(r.Reconstruction)
		v[errata.KeySurvivorsMoved] = gguf.Uint64(r.SurvivorsChanged.Numerator)
		v[errata.KeyOutputError] = gguf.Float64(r.ReconstructionError)
	}
	return v
}

// Keys returns the physarium.* metadata keys of ERRATA.md for a finished
// report, in the order of errata.Keys.
func Keys(r *Report) []gguf.KV { return errata.Ordered(keyValues(r)) }

// ControlKeys returns the physarium.* keys of the control twin of a finished
// run: the run's keys with every kill figure zero, physarium.control = true,
// physarium.control_of naming the pruned file and its sha256, and the
// control's errata wording.
func ControlKeys(r *Report) []gguf.KV {
	c := *r
	c.Tensors = make([]TensorReport, len(r.Tensors))
	var reencoded uint64
	for i, t := range r.Tensors {
		reencoded += t.Reencoded
		t.Killed, t.ExactZero, t.MaxKilledAbs, t.MaxKilledRel = 0, 0, 0, 0
		c.Tensors[i] = t
	}
	c.Killed, c.ExactZero = 0, 0
	c.Errata = errata.ControlWording(errata.ControlFigures{
		Version: r.Version, Weights: r.Weights, TargetCount: r.TargetCount,
		Reencoded: reencoded, Of: r.Control.Of, OfSHA256: r.Control.OfSHA256,
	})
	v := keyValues(&c)
	v[errata.KeyControl] = gguf.Bool(true)
	v[errata.KeyControlOf] = gguf.String(r.Control.controlOf())
	v[errata.KeyReencoded] = gguf.Uint64(reencoded)
	return errata.Ordered(v)
}

// controlOf is the value of physarium.control_of: the pruned file's base
// name and sha256, or every shard's for a split output, as physarium.source
// lists an input's.
func (c *ControlTwin) controlOf() string {
	return shardsSource(c.OfShards)
}

// source is the value of physarium.source: the input's base name and
// sha256, or every shard's for a split input.
func (r *Report) source() string {
	if len(r.InputShards) == 0 {
		return errata.Source([]string{r.Input}, []string{r.InputSHA256})
	}
	return shardsSource(r.InputShards)
}

// shardsSource lists files with their sha256 as physarium.source does.
func shardsSource(shards []InputShard) string {
	names := make([]string, len(shards))
	sums := make([]string, len(shards))
	for i, s := range shards {
		names[i], sums[i] = s.Name, s.SHA256
	}
	return errata.Source(names, sums)
}
