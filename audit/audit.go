// Package audit re-derives the physarium.* surgery figures of a GGUF file
// from its tensor data and compares them with what the file states.
//
// Reading the file alone it recounts the denominators (target, processed
// through the 256x256 tiling, model), the zeros of every target tensor and
// everything that follows from them; given the original (Options.Against)
// it also checks that nothing outside the surgery changed and recounts
// zero_before, the weights made zero and, where the tensor type allows it,
// the kills themselves. Every stored figure gets a Check that says whether
// it was verified exactly, only within bounds, or could not be verified,
// and on which basis ("file" or "against"); a stored figure outside its
// recount is a Disagreement.
//
// What the tensor data can and cannot tell (measured on generated models;
// see the package tests):
//   - F32, F16, BF16 (one weight per "block"): a kill is a weight that was
//     non-zero and is now exactly 0, and no other weight changes, so with
//     the original every per-tensor kill count is recounted exactly; alone,
//     zeros in the targets = zero_before + exact_zero exactly.
//   - Quantized types with a zero code (Q8_0, Q4_0, Q4_1, Q*_K, ...): kills
//     read exactly 0, but re-encoding a block can also round a surviving
//     weight to 0 (Q4_1, Q2_K do), so "non-zero before, zero now" is only an
//     upper bound of the kills, and "one kill per changed block" a lower
//     bound.
//   - Types without a zero code (IQ4_NL, IQ4_XS, ...): a killed weight reads
//     as the code nearest to zero and a block holding a kill may even
//     re-encode to its old bytes; the kills are bounded by the changed
//     blocks below and the non-zero weights above.
//
// Replay: the kernel is deterministic and bit-identical on every
// implementation, so with the original a version-1 (magnitude-flow) file is
// audited by running the kernel again on the original's decoded values with
// the stored physarium.params and physarium.mode, tiled as prune tiles
// (bands of 256 rows per matrix, tiles of 256 columns, experts separately).
// That gives the exact kill mask, whatever the type: the kill counts,
// exact_zero, the rates and the errata become exact, and every block is
// checked byte for byte (a block with a kill must be the re-encoding of the
// original's values with the kills zeroed, by this build's
// quantize.EncodeKeepZeros; a block without one must be the original's).
// The magnitude baseline (version 0) is replayed from its documented rule
// (magnitude.go: per matrix the round(s*n) smallest |w|, zeros first, ties
// by index), with the same block-by-block checks. activation-flow on the
// full v2 food (physarium.importance names it; no reconstruction, no
// pattern) is replayed through the method's own deciders from
// Options.Calibration, which must be the file physarium.calibration
// names (its sha256), with the same checks (v2full.go). Other methods are
// reported as not verifiable by replay: activation-flow on an imatrix
// (version 2) and wanda (version 0) need the importance matrix, which the
// audit is not given.
//
// Methods: the labels physarium.version, method, activation_aware, mode,
// importance and imatrix are checked against each other exactly as prune
// writes them for each method (see method.go), and the errata wording is
// errata.Wording filled with the recount. In sparsity mode the kill count of
// every tensor follows from the original's zeros and the method's rule
// (per 256x256 tile for the kernel, per output row for wanda and the row
// ranks of activation-flow, per matrix for magnitude), so with the
// original the kill counts are exact for every method even without a
// replay (a "sparsity.rule" disagreement when the data excludes them).
//
// Control twins (physarium.control = true, written by prune --control) are
// checked as such: every kill figure 0, the control wording, and with the
// original every changed block a re-encoding of the original's values;
// with the pruned twin (Options.Pruned) its sha256 and the set of
// re-encoded blocks.
package audit

import (
	"context"
	"fmt"

	"github.com/physarium/physarium-gguf/errata"
	"github.com/physarium/physarium-gguf/gguf"
	"github.com/physarium/physarium-gguf/imatrix"
)

// Options configure an audit.
type Options struct {
	// Against is the path of the original (unpruned) file; empty audits the
	// file alone.
	Against string
	// ChunkWeights bounds the weights decoded at a time per tensor (0 means
	// 1<<20); memory does not grow with the model. The replay and the
	// control comparison go band by band (256 rows of a matrix) instead.
	ChunkWeights int
	// NoReplay skips replaying the kernel on the original's values.
	NoReplay bool
	// Pruned is the path of the pruned twin of a control twin (the file
	// named by physarium.control_of); auditing a file that is no control
	// twin with it is an error.
	Pruned string
	// Calibration is the calibration file (a calibrate file) named by
	// physarium.calibration. With Against, a file whose survivors moved
	// (physarium.reconstructed: SparseGPT or --reconstruct) has its mask and
	// survivors replayed from the file's Gram matrices, and an
	// activation-flow file eating the full v2 food has its kills replayed
	// from the file's moments and Grams; both must give the same bytes.
	Calibration string
	// AnyShard lets each path name any shard of a split model, not only
	// the first; a split model is read whole either way.
	AnyShard bool
	// Imatrix is the path of the importance matrix (or calibration file)
	// the pruning run read: prune re-encodes IQ grid blocks with its
	// weights, and the audit needs them to expect the same bytes. Without
	// it such tensors are reported as not verifiable, by name.
	Imatrix string
}

// Check statuses.
const (
	StatusExact        = "verified exactly"
	StatusBounds       = "within bounds"
	StatusUnverifiable = "not verifiable"
	StatusDisagrees    = "disagrees"
)

// Bases of a check: the file alone, or the file compared with its original.
const (
	BasisFile    = "file"
	BasisAgainst = "against"
)

// Check is the verdict on one stored figure (or one property of the file).
type Check struct {
	Key       string `json:"key"`
	Tensor    string `json:"tensor,omitempty"`
	Stored    string `json:"stored"`
	Recounted string `json:"recounted"`
	Status    string `json:"status"`
	Basis     string `json:"basis"`
	Note      string `json:"note,omitempty"`
}

// Disagreement is a stored figure (or property) that the recount refutes.
type Disagreement struct {
	Key       string `json:"key"`
	Tensor    string `json:"tensor,omitempty"`
	Stored    string `json:"stored"`
	Recounted string `json:"recounted"`
}

// Count is a recounted number of weights: exact when Lo == Hi and Exact,
// otherwise the interval the data allows.
type Count struct {
	Lo    uint64 `json:"lo"`
	Hi    uint64 `json:"hi"`
	Exact bool   `json:"exact"`
	// trivial: the data gives no bound beyond 0 <= n <= weights.
	trivial bool
}

func exact(n uint64) Count { return Count{Lo: n, Hi: n, Exact: true} }

// String formats the count as "N" or "in [lo, hi]".
func (c Count) String() string {
	if c.Exact {
		return fmt.Sprint(c.Lo)
	}
	return fmt.Sprintf("in [%d, %d]", c.Lo, c.Hi)
}

func (c Count) contains(n uint64) bool { return n >= c.Lo && n <= c.Hi }

func (c Count) add(d Count) Count {
	return Count{Lo: c.Lo + d.Lo, Hi: c.Hi + d.Hi, Exact: c.Exact && d.Exact}
}

// TensorAudit is the recount of one target tensor (or, in a file without
// physarium.* keys, of one projection tensor).
type TensorAudit struct {
	Name  string   `json:"name"`
	Type  string   `json:"type"`
	Shape []uint64 `json:"shape"`
	// ZeroCode is "exact", "preserving" or "none" (quantize.ZeroKind), or
	// "unknown" when the type cannot be encoded.
	ZeroCode string `json:"zero_code"`
	Weights  uint64 `json:"weights"` // denominator "tensor"
	// Coverage is the weights the tiling covers over the tensor's weights.
	Coverage errata.Rate `json:"coverage"`
	// Zeros counts the weights that read exactly 0 now.
	Zeros errata.Rate `json:"zeros"`
	// Decoded is false when the type cannot be decoded (Zeros is then 0).
	Decoded bool `json:"decoded"`

	// StoredKilled is physarium.tensors.killed for this tensor; Killed its
	// recount; KillRate the rate over the tensor (numerator: the exact
	// recount, or the stored count when only bounds are known).
	StoredKilled *uint64      `json:"stored_killed,omitempty"`
	Killed       *Count       `json:"killed,omitempty"`
	KillRate     *errata.Rate `json:"kill_rate,omitempty"`

	// With the original: weights zero before, weights non-zero before and
	// zero now, weights whose value changed, and blocks whose bytes changed.
	ZeroBefore     *errata.Rate `json:"zero_before,omitempty"`
	Zeroed         *errata.Rate `json:"zeroed,omitempty"`
	ChangedWeights *errata.Rate `json:"changed_weights,omitempty"`
	ChangedBlocks  *errata.Rate `json:"changed_blocks,omitempty"`

	// Replay is the kernel replayed on the original's values (--against,
	// version 1); Control compares a control twin's blocks.
	Replay  *TensorReplay  `json:"replay,omitempty"`
	Control *ControlBlocks `json:"control,omitempty"`
	// RetypedFrom is the original's type of a target written in the
	// physarium.retype type, when audited against the original.
	RetypedFrom string `json:"retyped_from,omitempty"`

	scan scan
	pass pass
}

// ReplayInfo says whether and how the kernel was replayed.
type ReplayInfo struct {
	Ran bool `json:"ran"`
	// Kernel is the implementation that ran, Params the parameters it ran
	// with (physarium.params); Reason says why the replay did not run.
	Kernel string `json:"kernel,omitempty"`
	Params string `json:"params,omitempty"`
	Reason string `json:"reason,omitempty"`
}

// Report is the outcome of an audit.
type Report struct {
	File          string `json:"file"`
	Against       string `json:"against,omitempty"`
	AgainstSHA256 string `json:"against_sha256,omitempty"`
	// Pruned is true when the file carries physarium.* keys.
	Pruned bool `json:"pruned"`
	// Control is true for a control twin (physarium.control = true);
	// PrunedTwin and PrunedTwinSHA256 name the pruned twin given with it.
	Control          bool   `json:"control,omitempty"`
	PrunedTwin       string `json:"pruned_twin,omitempty"`
	PrunedTwinSHA256 string `json:"pruned_twin_sha256,omitempty"`
	// Replay says whether the kernel was replayed on the original's values.
	Replay  ReplayInfo `json:"replay"`
	Version int        `json:"version,omitempty"`
	Method  string     `json:"method,omitempty"`
	Mode    string     `json:"mode,omitempty"`

	// Weights are the recounted denominators; TargetTensors the number of
	// target tensors.
	Weights       errata.Weights `json:"weights"`
	TargetTensors int            `json:"target_tensors"`
	Coverage      errata.Rate    `json:"coverage"`
	// Zeros counts target weights that read exactly 0 now, over the target
	// and over the model.
	Zeros        errata.Rate `json:"zeros_over_target"`
	ZerosOfModel errata.Rate `json:"zeros_over_model"`

	// The surgery figures (pruned files only): the stored kill count, its
	// recount, and the rates recomputed from recounted denominators.
	StoredKilled *uint64      `json:"stored_killed,omitempty"`
	Killed       *Count       `json:"killed,omitempty"`
	OverTarget   *errata.Rate `json:"kill_rate_over_target,omitempty"`
	OverModel    *errata.Rate `json:"kill_rate_over_model,omitempty"`
	// With the original.
	ZeroBefore *errata.Rate `json:"zero_before,omitempty"`
	Zeroed     *errata.Rate `json:"zeroed,omitempty"`

	Tensors       []TensorAudit  `json:"tensors"`
	Checks        []Check        `json:"checks"`
	Disagreements []Disagreement `json:"disagreements"`
	// NonfiniteCopied counts the NaN and infinite values of the tensors
	// that are not targets, over the model's weights (pruned files only).
	NonfiniteCopied *errata.Rate `json:"nonfinite_copied,omitempty"`
	// Verdict is "agree" or "disagree".
	Verdict string `json:"verdict"`
}

// OK reports whether every stored figure agrees with the recount.
func (r *Report) OK() bool { return len(r.Disagreements) == 0 }

// check records a check, and a disagreement when status says so.
func (r *Report) check(c Check) {
	r.Checks = append(r.Checks, c)
	if c.Status == StatusDisagrees {
		r.Disagreements = append(r.Disagreements, Disagreement{Key: c.Key, Tensor: c.Tensor, Stored: c.Stored, Recounted: c.Recounted})
	}
}

// disagree records a failed check.
func (r *Report) disagree(key, tensor, stored, recounted, basis string) {
	r.check(Check{Key: key, Tensor: tensor, Stored: stored, Recounted: recounted, Status: StatusDisagrees, Basis: basis})
}

// File audits the GGUF at path. The error is reserved for files that cannot
// be read (or a cancelled context); disagreements are in the Report.
func File(ctx context.Context, path string, opts Options) (*Report, error) {
	mo := gguf.ModelOptions{AnyShard: opts.AnyShard}
	fm, err := gguf.OpenModel(path, mo)
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	defer fm.Close()
	f := fm.View
	var o *gguf.File
	var origShards []*gguf.File
	if opts.Against != "" {
		om, err := gguf.OpenModel(opts.Against, mo)
		if err != nil {
			return nil, fmt.Errorf("audit: original: %w", err)
		}
		defer om.Close()
		o, origShards = om.View, om.Shards
	}
	var p *gguf.File
	var twinShards []*gguf.File
	if opts.Pruned != "" {
		pm, err := gguf.OpenModel(opts.Pruned, mo)
		if err != nil {
			return nil, fmt.Errorf("audit: pruned twin: %w", err)
		}
		defer pm.Close()
		p, twinShards = pm.View, pm.Shards
	}
	chunk := opts.ChunkWeights
	if chunk <= 0 {
		chunk = 1 << 20
	}
	a := &auditor{ctx: ctx, file: f, orig: o, origShards: origShards, twin: p, twinShards: twinShards, chunk: chunk, noReplay: opts.NoReplay, calPath: opts.Calibration, r: &Report{File: path, Against: opts.Against, PrunedTwin: opts.Pruned}}
	if err := a.loadCalibration(opts.Calibration); err != nil {
		return nil, err
	}
	if opts.Imatrix != "" {
		if a.imat, err = imatrix.Load(opts.Imatrix); err != nil {
			return nil, fmt.Errorf("audit: %w", err)
		}
	}
	if err := a.run(); err != nil {
		return nil, err
	}
	r := a.r
	r.Verdict = "agree"
	if !r.OK() {
		r.Verdict = "disagree"
	}
	if r.Tensors == nil {
		r.Tensors = []TensorAudit{}
	}
	if r.Checks == nil {
		r.Checks = []Check{}
	}
	if r.Disagreements == nil {
		r.Disagreements = []Disagreement{}
	}
	return r, nil
}
