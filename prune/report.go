package prune

import (
	"math"
	"sort"

	"github.com/physarium/physarium-gguf/errata"
)

// Rate is a fraction that always travels with its denominator
// (errata.Rate).
type Rate = errata.Rate

// Weights holds the three denominators of ERRATA.md (errata.Weights).
type Weights = errata.Weights

// TensorReport is the row of one target tensor.
type TensorReport struct {
	Name       string   `json:"name"`
	Type       string   `json:"type"`
	Shape      []uint64 `json:"shape"`
	Weights    uint64   `json:"weights"` // denominator "tensor"
	Processed  uint64   `json:"processed"`
	Killed     uint64   `json:"killed"`
	ZeroBefore uint64   `json:"zero_before"`
	// ExactZero counts killed weights that read back as exactly 0.0.
	ExactZero uint64 `json:"exact_zero"`
	KillRate  Rate   `json:"kill_rate"`
	// Blocks is the tensor's ggml block count; Reencoded how many of them
	// held a kill and were re-encoded (the others keep their bytes).
	Blocks    uint64 `json:"blocks"`
	Reencoded uint64 `json:"reencoded_blocks"`
	// SurvivorsChanged counts the surviving weights whose value the method
	// changed (reconstruction), before re-encoding.
	SurvivorsChanged uint64 `json:"survivors_changed,omitempty"`
	// OutputError is the change of the tensor's layer output on the
	// calibration inputs after reconstruction (before re-encoding),
	// sum_o (w_o-v_o)^T G (w_o-v_o); OutputEnergy the dense output's
	// energy sum_o w_o^T G w_o.
	OutputError  float64 `json:"output_error,omitempty"`
	OutputEnergy float64 `json:"output_energy,omitempty"`
	// SurvivorRMSE is the root-mean-square change of the surviving weights
	// of re-encoded blocks, caused by re-encoding them.
	SurvivorRMSE float64 `json:"survivor_rmse"`
	// MaxKilledAbs is the largest |value| a killed weight reads back as
	// (0 for types with a zero code; see ZeroNone types).
	MaxKilledAbs float64 `json:"max_killed_abs"`
	// MaxKilledRel is the largest |value| a killed weight reads back as
	// over the largest |value| of its block (0 for types with a zero code).
	MaxKilledRel float64 `json:"max_killed_rel"`
	// ZeroCode says whether the type can hold an exact zero.
	ZeroCode bool `json:"zero_code"`
	// RetypedFrom is the input's type of a tensor written in another
	// (--retype; Type is the output's), else "".
	RetypedFrom string `json:"retyped_from,omitempty"`

	survivorSq float64 // sum of squared survivor changes
	survivorN  uint64  // surviving weights in re-encoded blocks
}

// KindRange is the smallest and largest per-tensor kill rate of one
// projection kind (attn_q, ffn_down, ...).
type KindRange struct {
	Kind    string `json:"kind"`
	Tensors int    `json:"tensors"`
	Min     Rate   `json:"min"`
	MinName string `json:"min_tensor"`
	Max     Rate   `json:"max"`
	MaxName string `json:"max_tensor"`
}

// LayerRate is the kill rate over the target weights of one block.
type LayerRate struct {
	Layer int  `json:"layer"`
	Rate  Rate `json:"kill_rate"`
}

// SkippedTensor is a tensor the selection chose but the run left untouched
// (--skip-unsupported); it is not counted in the target denominator.
type SkippedTensor struct {
	Name    string `json:"name"`
	Type    string `json:"type"`
	Weights uint64 `json:"weights"`
	Reason  string `json:"reason"`
}

// NonTargetRole is the weight count of the tensors of one role that are
// not targets, and why (errata.Classify, with the selection's flags).
type NonTargetRole struct {
	Role    string `json:"role"`
	Reason  string `json:"reason"`
	Tensors int    `json:"tensors"`
	Weights uint64 `json:"weights"` // part of the denominator "model"
}

// addNonTarget counts a tensor that is not a target under its role and
// reason, in the order they first appear.
func (r *Report) addNonTarget(v errata.Verdict, weights uint64) {
	for i := range r.NonTargets {
		if n := &r.NonTargets[i]; n.Role == v.Role && n.Reason == v.Reason {
			n.Tensors++
			n.Weights += weights
			return
		}
	}
	r.NonTargets = append(r.NonTargets, NonTargetRole{Role: v.Role, Reason: v.Reason, Tensors: 1, Weights: weights})
}

// ControlTwin names the requantization-only twin written beside a pruned
// file (Options.Control).
type ControlTwin struct {
	// Path is the control twin, or its first shard when the output is
	// split; Paths then lists every shard (split as the output).
	Path  string   `json:"path"`
	Paths []string `json:"paths,omitempty"`
	// Of and OfSHA256 are the base name and sha256 of the pruned file it
	// belongs to; for a split output every shard's, in order, joined by
	// ", " (errata.SourceSeparator), as OfShards lists them.
	Of       string       `json:"of"`
	OfSHA256 string       `json:"of_sha256"`
	OfShards []InputShard `json:"of_shards"`
}

// InputShard is one shard of a split input.
type InputShard struct {
	Name   string `json:"name"` // base name
	SHA256 string `json:"sha256"`
}

// Report is everything a run did and measured: the surgery figures of
// ERRATA.md, each rate with its numerator and denominator.
type Report struct {
	Input       string `json:"input"`
	InputSHA256 string `json:"input_sha256"`
	Output      string `json:"output,omitempty"` // empty for a dry run
	// InputShards are the shards of a split input, with their sha256.
	InputShards []InputShard `json:"input_shards,omitempty"`
	// Outputs are the shards of a split output (Output is the first).
	Outputs     []string `json:"outputs,omitempty"`
	DryRun      bool     `json:"dry_run"`
	Version     int      `json:"version"`
	Method      string   `json:"method"`
	Importance  string   `json:"importance"`
	Mode        string   `json:"mode"`
	Params      string   `json:"params"`
	Kernel      string   `json:"kernel"`
	Threads     int      `json:"threads"`
	Tile        int      `json:"tile"`
	Tiling      string   `json:"tiling"`
	Targets     []string `json:"targets"`
	Weights     Weights  `json:"weights"`
	TargetCount int      `json:"target_tensors"`
	Killed      uint64   `json:"killed"`
	ZeroBefore  uint64   `json:"zero_before"`
	ExactZero   uint64   `json:"exact_zero"`
	OverTarget  Rate     `json:"kill_rate_over_target"`
	OverModel   Rate     `json:"kill_rate_over_model"`
	Coverage    Rate     `json:"coverage"`
	ExactZeroOf Rate     `json:"exact_zero_over_killed"`
	// SurvivorsChanged counts the surviving weights a reconstructing
	// method changed, over the target weights.
	SurvivorsChanged Rate `json:"survivors_changed"`
	// Reconstructed says the method also changed survivors;
	// Reconstruction is then physarium.reconstruction. Calibration is
	// physarium.calibration of any run that read a calibration file.
	Reconstructed  bool   `json:"reconstructed,omitempty"`
	Calibration    string `json:"calibration,omitempty"`
	Reconstruction string `json:"reconstruction,omitempty"`
	// Pattern is the N:M pattern of the run ("" without one).
	Pattern string `json:"pattern,omitempty"`
	// Retype is the type every target was written in (--retype), else "".
	Retype string `json:"retype,omitempty"`
	// ReconstructionError is the layer-output change on the calibration
	// inputs summed over the targets, over their dense output energy.
	ReconstructionError float64         `json:"reconstruction_error,omitempty"`
	Tensors             []TensorReport  `json:"tensors"`
	Kinds               []KindRange     `json:"kinds"`
	Layers              []LayerRate     `json:"layers"`
	Skipped             []SkippedTensor `json:"skipped"`
	SkippedNote         string          `json:"skipped_note,omitempty"`
	// NonTargets lists, by role and reason, every tensor that is neither a
	// target nor skipped: the target weights, the skipped weights and these
	// add up to the model's weights.
	NonTargets []NonTargetRole `json:"non_targets"`
	Seconds    float64         `json:"seconds"`
	// CPU is the run's CPU time, whole and by stage (all zero where the
	// threads' clocks are not read: outside Linux).
	CPU     CPUSeconds `json:"cpu_seconds"`
	Imatrix string     `json:"imatrix,omitempty"`
	// ImatrixMissing lists the targets that had no importance-matrix entry
	// and were pruned on |w| alone (--imatrix-missing v1).
	ImatrixMissing []string `json:"imatrix_missing,omitempty"`
	// ReencodeWeights lists the targets whose changed blocks were encoded
	// with importance weights (the IQ grid types: the in_sum2/count of
	// every input column, from --imatrix or the --calibration file's
	// importance matrix; physarium.imatrix or physarium.calibration names
	// the file).
	ReencodeWeights []string `json:"reencode_weights,omitempty"`
	// Rank is the v2 sparsity-mode ranking (activation-flow in sparsity
	// mode only); physarium.importance states its formula.
	Rank string `json:"rank,omitempty"`
	// NonfiniteCopied counts the NaN and infinite values of the tensors
	// that are not targets, copied byte for byte (physarium.nonfinite_copied),
	// over the model's weights; NonfiniteTensors names those tensors.
	NonfiniteCopied  Rate              `json:"nonfinite_copied"`
	NonfiniteTensors []NonfiniteTensor `json:"nonfinite_tensors,omitempty"`
	Control          *ControlTwin      `json:"control,omitempty"`
	Errata           string            `json:"errata"`
}

// CPUSeconds is the CPU time (user and system) of a run, in seconds: the
// process's over the whole run, and the time the threads of four stages
// spent in them, each read from its thread's own clock. Total minus Decide
// is everything but the method's decisions: reading, hashing, decoding,
// the surgery, writing and the Go runtime.
type CPUSeconds struct {
	Total float64 `json:"total"`
	// Decode is the decoding of the target bands.
	Decode float64 `json:"decode"`
	// Decide is the method's decisions (the kernel, for the flow methods)
	// and, for a reconstructing method, its survivors.
	Decide float64 `json:"decide"`
	// Surgery is zeroing the kills and re-encoding, decoding again and
	// measuring the blocks that hold one.
	Surgery float64 `json:"surgery"`
	// Hash is the input's sha256 (physarium.source; every shard's for a
	// split input).
	Hash float64 `json:"hash"`
}

// finish derives the totals, rates, kind ranges and layer rates from the
// per-tensor rows.
func (r *Report) finish() {
	r.TargetCount = len(r.Tensors)
	r.Weights.Target, r.Weights.Processed = 0, 0
	r.Killed, r.ZeroBefore, r.ExactZero = 0, 0, 0
	r.SurvivorsChanged = Rate{}
	kinds := map[string]*KindRange{}
	var kindOrder []string
	layers := map[int]*[2]uint64{}
	for i := range r.Tensors {
		t := &r.Tensors[i]
		t.KillRate = errata.NewRate(t.Killed, t.Weights, errata.OfTensor)
		if t.survivorN > 0 {
			t.SurvivorRMSE = math.Sqrt(t.survivorSq / float64(t.survivorN))
		}
		r.Weights.Target += t.Weights
		r.Weights.Processed += t.Processed
		r.Killed += t.Killed
		r.ZeroBefore += t.ZeroBefore
		r.ExactZero += t.ExactZero
		r.SurvivorsChanged.Numerator += t.SurvivorsChanged
		kind := errata.Kind(t.Name)
		k := kinds[kind]
		if k == nil {
			k = &KindRange{Kind: kind, Min: t.KillRate, MinName: t.Name, Max: t.KillRate, MaxName: t.Name}
			kinds[kind] = k
			kindOrder = append(kindOrder, kind)
		}
		k.Tensors++
		if t.KillRate.Percent < k.Min.Percent {
			k.Min, k.MinName = t.KillRate, t.Name
		}
		if t.KillRate.Percent > k.Max.Percent {
			k.Max, k.MaxName = t.KillRate, t.Name
		}
		if l, ok := errata.Layer(t.Name); ok {
			lr := layers[l]
			if lr == nil {
				lr = new([2]uint64)
				layers[l] = lr
			}
			lr[0] += t.Killed
			lr[1] += t.Weights
		}
	}
	r.Kinds = r.Kinds[:0]
	for _, k := range kindOrder {
		r.Kinds = append(r.Kinds, *kinds[k])
	}
	r.Layers = r.Layers[:0]
	for l, lr := range layers {
		r.Layers = append(r.Layers, LayerRate{Layer: l, Rate: errata.NewRate(lr[0], lr[1], errata.OfLayerTarget)})
	}
	sort.Slice(r.Layers, func(i, j int) bool { return r.Layers[i].Layer < r.Layers[j].Layer })
	r.OverTarget = errata.NewRate(r.Killed, r.Weights.Target, errata.OfTarget)
	r.SurvivorsChanged = errata.NewRate(r.SurvivorsChanged.Numerator, r.Weights.Target, errata.OfTarget)
	var e, en float64
	for _, t := range r.Tensors {
		e, en = e+t.OutputError, en+t.OutputEnergy
	}
	r.ReconstructionError = 0
	if en > 0 {
		r.ReconstructionError = e / en
	}
	r.OverModel = errata.NewRate(r.Killed, r.Weights.Model, errata.OfModel)
	r.Coverage = errata.NewRate(r.Weights.Processed, r.Weights.Target, errata.OfTarget)
	r.ExactZeroOf = errata.NewRate(r.ExactZero, r.Killed, errata.OfKilled)
	var nonfinite uint64
	for _, t := range r.NonfiniteTensors {
		nonfinite += t.Count
	}
	r.NonfiniteCopied = errata.NewRate(nonfinite, r.Weights.Model, errata.OfModel)
	r.Errata = errata.Wording(r.Figures())
}

// addNonfinite adds n NaN or infinite values of a copied tensor.
func (r *Report) addNonfinite(name string, n uint64) {
	if k := len(r.NonfiniteTensors); k > 0 && r.NonfiniteTensors[k-1].Name == name {
		r.NonfiniteTensors[k-1].Count += n
		return
	}
	r.NonfiniteTensors = append(r.NonfiniteTensors, NonfiniteTensor{Name: name, Count: n})
}
