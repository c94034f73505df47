package prune

import (
	"fmt"
	"sort"
)

// Rate is a fraction that always travels with its denominator (rule 2 of the
// errata): Numerator of Denominator, where Of names the denominator.
type Rate struct {
	Numerator   uint64  `json:"numerator"`
	Denominator uint64  `json:"denominator"`
	Of          string  `json:"of"`
	Percent     float64 `json:"percent"`
}

// NewRate returns num/den as a Rate over the named denominator; a zero
// denominator gives 0 %.
func NewRate(num, den uint64, of string) Rate {
	r := Rate{Numerator: num, Denominator: den, Of: of}
	if den > 0 {
		r.Percent = 100 * float64(num) / float64(den)
	}
	return r
}

// String formats the rate with its denominator, e.g.
// "22.2200 % (1450 of 6525 target weights)".
func (r Rate) String() string {
	return fmt.Sprintf("%.4f %% (%d of %d %s weights)", r.Percent, r.Numerator, r.Denominator, r.Of)
}

// Weights holds the three denominators of ERRATA.md.
type Weights struct {
	Target    uint64 `json:"target"`    // every element of every target tensor
	Processed uint64 `json:"processed"` // every element some tile covered
	Model     uint64 `json:"model"`     // every element of every tensor in the file
}

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

// ControlTwin names the requantization-only twin written beside a pruned
// file (Options.Control).
type ControlTwin struct {
	Path     string `json:"path"`
	Of       string `json:"of"`        // base name of the pruned file it belongs to
	OfSHA256 string `json:"of_sha256"` // that file's sha256
}

// Report is everything a run did and measured: the surgery figures of
// ERRATA.md, each rate with its numerator and denominator.
type Report struct {
	Input       string          `json:"input"`
	InputSHA256 string          `json:"input_sha256"`
	Output      string          `json:"output,omitempty"` // empty for a dry run
	DryRun      bool            `json:"dry_run"`
	Version     int             `json:"version"`
	Method      string          `json:"method"`
	Importance  string          `json:"importance"`
	Mode        string          `json:"mode"`
	Params      string          `json:"params"`
	Kernel      string          `json:"kernel"`
	Threads     int             `json:"threads"`
	Tile        int             `json:"tile"`
	Tiling      string          `json:"tiling"`
	Targets     []string        `json:"targets"`
	Weights     Weights         `json:"weights"`
	TargetCount int             `json:"target_tensors"`
	Killed      uint64          `json:"killed"`
	ZeroBefore  uint64          `json:"zero_before"`
	ExactZero   uint64          `json:"exact_zero"`
	OverTarget  Rate            `json:"kill_rate_over_target"`
	OverModel   Rate            `json:"kill_rate_over_model"`
	Coverage    Rate            `json:"coverage"`
	ExactZeroOf Rate            `json:"exact_zero_over_killed"`
	Tensors     []TensorReport  `json:"tensors"`
	Kinds       []KindRange     `json:"kinds"`
	Layers      []LayerRate     `json:"layers"`
	Skipped     []SkippedTensor `json:"skipped"`
	SkippedNote string          `json:"skipped_note,omitempty"`
	Seconds     float64         `json:"seconds"`
	Imatrix     string          `json:"imatrix,omitempty"`
	// ImatrixMissing lists the targets that had no importance-matrix entry
	// and were pruned on |w| alone (--imatrix-missing v1).
	ImatrixMissing []string `json:"imatrix_missing,omitempty"`
	// Rank is the v2 sparsity-mode ranking (activation-flow in sparsity
	// mode only); physarium.importance states its formula.
	Rank    string       `json:"rank,omitempty"`
	Control *ControlTwin `json:"control,omitempty"`
	Errata  string       `json:"errata"`
}

// finish derives the totals, rates, kind ranges and layer rates from the
// per-tensor rows.
func (r *Report) finish() {
	r.TargetCount = len(r.Tensors)
	r.Weights.Target, r.Weights.Processed = 0, 0
	r.Killed, r.ZeroBefore, r.ExactZero = 0, 0, 0
	kinds := map[string]*KindRange{}
	var kindOrder []string
	layers := map[int]*[2]uint64{}
	for i := range r.Tensors {
		t := &r.Tensors[i]
		t.KillRate = NewRate(t.Killed, t.Weights, "tensor")
		if t.survivorN > 0 {
			t.SurvivorRMSE = sqrt(t.survivorSq / float64(t.survivorN))
		}
		r.Weights.Target += t.Weights
		r.Weights.Processed += t.Processed
		r.Killed += t.Killed
		r.ZeroBefore += t.ZeroBefore
		r.ExactZero += t.ExactZero
		kind := Kind(t.Name)
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
		if l, ok := Layer(t.Name); ok {
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
		r.Layers = append(r.Layers, LayerRate{Layer: l, Rate: NewRate(lr[0], lr[1], "layer target")})
	}
	sort.Slice(r.Layers, func(i, j int) bool { return r.Layers[i].Layer < r.Layers[j].Layer })
	r.OverTarget = NewRate(r.Killed, r.Weights.Target, "target")
	r.OverModel = NewRate(r.Killed, r.Weights.Model, "model")
	r.Coverage = NewRate(r.Weights.Processed, r.Weights.Target, "target")
	r.ExactZeroOf = NewRate(r.ExactZero, r.Killed, "killed")
	r.Errata = Errata(r)
}
