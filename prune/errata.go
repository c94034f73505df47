package prune

import (
	"fmt"
	"math"

	"github.com/physarium/physarium-gguf/gguf"
)

// KeyPrefix starts every metadata key this tool writes.
const KeyPrefix = "physarium."

func sqrt(x float64) float64 { return math.Sqrt(x) }

// foodSentence says what the mould ate, for the errata wording.
func foodSentence(r *Report) string {
	switch r.Version {
	case 0:
		return fmt.Sprintf("Baseline, no Physarium kernel ran (physarium.version 0): the %s method killed the weights with the smallest %s.", r.Method, r.Importance)
	case 1:
		return "v1 eats static weight magnitude only: it sees no activations, no gradients, no contribution to the loss."
	}
	return fmt.Sprintf("v%d eats %s: activation statistics from an importance matrix, no gradients; stability is not computed.", r.Version, r.Importance)
}

// Errata returns the ERRATA.md wording with the report's numbers filled in.
func Errata(r *Report) string {
	return fmt.Sprintf("Physarium-v%d surgery (%s): %d of %d target projection weights killed (%.4f %%, denominator: all weights of the %d target tensors); %d of %d model weights (%.4f %%, denominator: every tensor in the file). Tile coverage of the target tensors: %.4f %% (non-overlapping 256x256 tiles). %s These are surgery figures; perplexity or benchmark numbers come from a separate evaluation and must be quoted separately, with their own test set.",
		r.Version, r.Method, r.Killed, r.Weights.Target, r.OverTarget.Percent, r.TargetCount,
		r.Killed, r.Weights.Model, r.OverModel.Percent, r.Coverage.Percent, foodSentence(r))
}

// Keys returns the physarium.* metadata keys of ERRATA.md for a finished
// report, in the documented order.
func Keys(r *Report) []gguf.KV {
	names := make([]string, len(r.Tensors))
	killed := make([]uint64, len(r.Tensors))
	weights := make([]uint64, len(r.Tensors))
	for i, t := range r.Tensors {
		names[i], killed[i], weights[i] = t.Name, t.Killed, t.Weights
	}
	kv := func(k string, v gguf.Value) gguf.KV { return gguf.KV{Key: KeyPrefix + k, Value: v} }
	kvs := []gguf.KV{
		kv("version", gguf.Uint32(uint32(r.Version))),
		kv("method", gguf.String(r.Method)),
		kv("activation_aware", gguf.Bool(r.Version >= 2 || r.Method == string(Wanda))),
		kv("importance", gguf.String(r.Importance)),
		kv("tile", gguf.Uint32(uint32(r.Tile))),
		kv("tiling", gguf.String(r.Tiling)),
		kv("mode", gguf.String(r.Mode)),
		kv("params", gguf.String(r.Params)),
		kv("targets", gguf.Strings(r.Targets)),
		kv("weights.target", gguf.Uint64(r.Weights.Target)),
		kv("weights.processed", gguf.Uint64(r.Weights.Processed)),
		kv("weights.model", gguf.Uint64(r.Weights.Model)),
		kv("killed", gguf.Uint64(r.Killed)),
		kv("zero_before", gguf.Uint64(r.ZeroBefore)),
		kv("exact_zero", gguf.Uint64(r.ExactZero)),
		kv("kill_rate.over_target", gguf.Float64(ratio(r.Killed, r.Weights.Target))),
		kv("kill_rate.over_model", gguf.Float64(ratio(r.Killed, r.Weights.Model))),
		kv("coverage", gguf.Float64(ratio(r.Weights.Processed, r.Weights.Target))),
		kv("tensors.name", gguf.Strings(names)),
		kv("tensors.killed", gguf.Uint64s(killed)),
		kv("tensors.weights", gguf.Uint64s(weights)),
		kv("source", gguf.String(r.Input+" sha256:"+r.InputSHA256)),
	}
	if r.Imatrix != "" {
		kvs = append(kvs, kv("imatrix", gguf.String(r.Imatrix)))
	}
	return append(kvs, kv("errata", gguf.String(r.Errata)))
}

// ratio is num/den as stored in the rate keys (a fraction, not a percent).
func ratio(num, den uint64) float64 {
	if den == 0 {
		return 0
	}
	return float64(num) / float64(den)
}

// ControlErrata is the errata wording of a control twin.
func ControlErrata(r *Report, reencoded uint64) string {
	return fmt.Sprintf("Physarium-v%d control twin (re-encoding only): 0 of %d target projection weights killed (0.0000 %%, denominator: all weights of the %d target tensors); 0 of %d model weights (0.0000 %%, denominator: every tensor in the file). The %d blocks that the pruned twin %s (sha256 %s) re-encoded are re-encoded here the same way from the original values, with nothing zeroed; every other block is the original. perplexity(control) - perplexity(original) is the re-encoding cost, perplexity(pruned) - perplexity(control) the pruning cost. These are surgery figures; perplexity or benchmark numbers come from a separate evaluation and must be quoted separately, with their own test set.",
		r.Version, r.Weights.Target, r.TargetCount, r.Weights.Model, reencoded, r.Control.Of, r.Control.OfSHA256)
}

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
		t.Killed, t.ExactZero = 0, 0
		c.Tensors[i] = t
	}
	c.Killed, c.ExactZero = 0, 0
	c.Errata = ControlErrata(r, reencoded)
	keys := Keys(&c)
	last := keys[len(keys)-1] // the errata stays last
	keys = append(keys[:len(keys)-1],
		gguf.KV{Key: KeyPrefix + "control", Value: gguf.Bool(true)},
		gguf.KV{Key: KeyPrefix + "control_of", Value: gguf.String(r.Control.Of + " sha256:" + r.Control.OfSHA256)},
		gguf.KV{Key: KeyPrefix + "reencoded_blocks", Value: gguf.Uint64(reencoded)},
		last)
	return keys
}
