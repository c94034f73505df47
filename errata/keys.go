package errata

import "github.com/physarium/physarium-gguf/gguf"

// Key is one physarium.* metadata key of ERRATA.md.
type Key struct {
	Name     string         // without KeyPrefix, e.g. "weights.target"
	Type     gguf.ValueType // the value's type
	Elem     gguf.ValueType // the element type of an ARRAY
	Optional bool           // written only by some runs
	Meaning  string         // one line
}

// Names of the keys that code refers to by name.
const (
	KeyVersion         = "version"
	KeyMethod          = "method"
	KeyActivationAware = "activation_aware"
	KeyImportance      = "importance"
	KeyTile            = "tile"
	KeyTiling          = "tiling"
	KeyMode            = "mode"
	KeyParams          = "params"
	KeyTargets         = "targets"
	KeyWeightsTarget   = "weights.target"
	KeyWeightsProc     = "weights.processed"
	KeyWeightsModel    = "weights.model"
	KeyKilled          = "killed"
	KeyZeroBefore      = "zero_before"
	KeyExactZero       = "exact_zero"
	KeyMaxKilledRel    = "max_killed_rel"
	KeyRetype          = "retype"
	KeyRateOverTarget  = "kill_rate.over_target"
	KeyRateOverModel   = "kill_rate.over_model"
	KeyCoverage        = "coverage"
	KeyTensorsName     = "tensors.name"
	KeyTensorsKilled   = "tensors.killed"
	KeyTensorsWeights  = "tensors.weights"
	KeySource          = "source"
	KeyImatrix         = "imatrix"
	KeyPattern         = "pattern"
	KeyReconstructed   = "reconstructed"
	KeyCalibration     = "calibration"
	KeyReconstruction  = "reconstruction"
	KeySurvivorsMoved  = "survivors_changed"
	KeyOutputError     = "reconstruction_error"
	KeyErrata          = "errata"
	KeyControl         = "control"
	KeyControlOf       = "control_of"
	KeyReencoded       = "reencoded_blocks"
	KeyNonfinite       = "nonfinite_copied"
)

// Keys is the key table in the order of ERRATA.md, which is the order
// prune writes them in, but for the wording: Ordered puts it last, after a
// control twin's keys.
var Keys = []Key{
	{KeyVersion, gguf.TypeUint32, 0, false, "1 = magnitude-flow, 2 = activation-flow, 0 = a baseline without the kernel"},
	{KeyMethod, gguf.TypeString, 0, false, "the method that decided the kills"},
	{KeyActivationAware, gguf.TypeBool, 0, false, "whether the method read activation statistics"},
	{KeyImportance, gguf.TypeString, 0, false, "the formula actually used"},
	{KeyTile, gguf.TypeUint32, 0, false, "the tile side, 256"},
	{KeyTiling, gguf.TypeString, 0, false, "non-overlapping"},
	{KeyMode, gguf.TypeString, 0, false, "natural or sparsity"},
	{KeyParams, gguf.TypeString, 0, false, "the kernel constants, key=value separated by spaces"},
	{KeyPattern, gguf.TypeString, 0, true, "N:M: every group of M consecutive input weights of a row ends with N zeros (written only for a pattern run)"},
	{KeyTargets, gguf.TypeArray, gguf.TypeString, false, "the tensor-name patterns that chose the targets"},
	{KeyWeightsTarget, gguf.TypeUint64, 0, false, "denominator target"},
	{KeyWeightsProc, gguf.TypeUint64, 0, false, "denominator processed"},
	{KeyWeightsModel, gguf.TypeUint64, 0, false, "denominator model"},
	{KeyKilled, gguf.TypeUint64, 0, false, "weights zeroed by the method"},
	{KeyZeroBefore, gguf.TypeUint64, 0, false, "target weights that were already zero"},
	{KeyExactZero, gguf.TypeUint64, 0, false, "killed weights that read back as exactly 0.0"},
	{KeyMaxKilledRel, gguf.TypeFloat64, 0, true, "the largest |value| a killed weight reads back as, over the largest |value| of its block (written when a target's type has no zero code)"},
	{KeyRetype, gguf.TypeString, 0, true, "the type every target tensor was written in (--retype; the input's types are the original's), written only then"},
	{KeyNonfinite, gguf.TypeUint64, 0, true, "NaN or infinite values of the tensors that are not targets, copied byte for byte; denominator model (written when not 0)"},
	{KeyRateOverTarget, gguf.TypeFloat64, 0, false, "killed / target"},
	{KeyRateOverModel, gguf.TypeFloat64, 0, false, "killed / model"},
	{KeyCoverage, gguf.TypeFloat64, 0, false, "processed / target"},
	{KeyTensorsName, gguf.TypeArray, gguf.TypeString, false, "each target tensor"},
	{KeyTensorsKilled, gguf.TypeArray, gguf.TypeUint64, false, "kills per target tensor, same order"},
	{KeyTensorsWeights, gguf.TypeArray, gguf.TypeUint64, false, "elements per target tensor, same order"},
	{KeySource, gguf.TypeString, 0, false, "the input file's base name and its sha256 (of every shard of a split input)"},
	{KeyImatrix, gguf.TypeString, 0, true, "the importance matrix, its datasets and chunk count (methods that read one)"},
	{KeyReconstructed, gguf.TypeBool, 0, true, "true when the method also changed surviving weights (written by methods that can)"},
	{KeyCalibration, gguf.TypeString, 0, true, "the calibration file's name and sha256, its text's name and sha256, and its tokens"},
	{KeyReconstruction, gguf.TypeString, 0, true, "the reconstruction's parameters: damp, blocksize, and the factors that needed more damping"},
	{KeySurvivorsMoved, gguf.TypeUint64, 0, true, "surviving weights whose value the method changed, before re-encoding; denominator target"},
	{KeyOutputError, gguf.TypeFloat64, 0, true, "the layer-output change on the calibration inputs, sum over targets of sum_o (w_o-v_o)^T G (w_o-v_o), over the dense output energy sum_o w_o^T G w_o (G the undamped Gram; values before re-encoding)"},
	{KeyErrata, gguf.TypeString, 0, false, "the wording, with the numbers filled in"},
	{KeyControl, gguf.TypeBool, 0, true, "true in a control twin (re-encoding only)"},
	{KeyControlOf, gguf.TypeString, 0, true, "a control twin's pruned file and its sha256"},
	{KeyReencoded, gguf.TypeUint64, 0, true, "a control twin's re-encoded blocks"},
}

// Full returns the key with its prefix, e.g. "physarium.weights.target".
func (k Key) Full() string { return KeyPrefix + k.Name }

// TypeText is the key's type as ERRATA.md writes it ("UINT64",
// "ARRAY of STRING").
func (k Key) TypeText() string { return TypeText(k.Type, k.Elem) }

// Has reports whether v has the key's type.
func (k Key) Has(v gguf.Value) bool {
	return v.Type == k.Type && (k.Type != gguf.TypeArray || v.Elem == k.Elem)
}

// TypeText is a value type as ERRATA.md writes it.
func TypeText(t, elem gguf.ValueType) string {
	if t == gguf.TypeArray {
		return "ARRAY of " + elem.String()
	}
	return t.String()
}

// Lookup returns the table's entry for a key name without KeyPrefix.
func Lookup(name string) (Key, bool) {
	for _, k := range Keys {
		if k.Name == name {
			return k, true
		}
	}
	return Key{}, false
}

// KV returns the metadata entry KeyPrefix+name with value v.
func KV(name string, v gguf.Value) gguf.KV { return gguf.KV{Key: KeyPrefix + name, Value: v} }

// Ordered returns the given values (by key name without KeyPrefix) as
// metadata entries in the table's order, the errata wording last. A name
// outside the table is an error of the caller and panics.
func Ordered(values map[string]gguf.Value) []gguf.KV {
	for name := range values {
		if _, ok := Lookup(name); !ok {
			panic("errata: key " + name + " is not in the key table")
		}
	}
	kvs := make([]gguf.KV, 0, len(values))
	for _, k := range Keys {
		if v, ok := values[k.Name]; ok && k.Name != KeyErrata {
			kvs = append(kvs, KV(k.Name, v))
		}
	}
	if v, ok := values[KeyErrata]; ok {
		kvs = append(kvs, KV(KeyErrata, v))
	}
	return kvs
}

// ImatrixMissingMark starts, in physarium.imatrix, the list of targets that
// had no importance-matrix entry and were pruned on v1 food (|w| alone).
const ImatrixMissingMark = " missing(v1 food |w|)="
