package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	ucli "github.com/urfave/cli/v2"

	"github.com/physarium/physarium-gguf/audit"
)

func (a *App) auditCommand() *ucli.Command {
	return &ucli.Command{
		Name:      "audit",
		Usage:     "re-derive the physarium.* figures of a GGUF from its tensor data",
		ArgsUsage: "FILE",
		Description: `Reads FILE and recounts from the tensor data what its physarium.* keys
state: the denominators (target, processed through the 256x256 tiling,
model), the coverage, the zeros of every target tensor, the kills as far as
the data shows them, the rates and the errata wording. With --against
ORIGINAL it also checks that the tensors, their types and shapes, every
key outside physarium.* and every non-target tensor's bytes are the
original's, that every changed block of a target holds a kill, that the
original's sha256 is the one in physarium.source, and recounts zero_before
and the kills.

Replay: for a version-1 (magnitude-flow) file and --against ORIGINAL, the
kernel is re-run on the original's decoded values with the stored
physarium.params and physarium.mode (it is deterministic and bit-identical
on every implementation), tiled as prune tiles them. That gives the exact
kill mask for every type: per-tensor and total kills, exact_zero and the
rates are then exact, every block holding a kill must be the re-encoding
of the original's values with the kills zeroed and every other block the
original's. --no-replay skips it (kills of quantized types are then only
bounded). An activation-flow file pruned on the full v2 food (prune
--calibration without --imatrix, no --reconstruct) is replayed the same way
through activation-flow's own deciders when --calibration gives the same
calibration file.

A file whose survivors moved (physarium.reconstructed: sparsegpt, or any
method with --reconstruct) is replayed with --calibration FILE (the
calibrate --gram file whose sha256 physarium.calibration names) and
--against ORIGINAL: the method decides every band of the original again
with the stored damping and column block, and every block holding a kill
or a moved survivor must be the re-encoding of the replayed values, every
other block the original's; the kills, physarium.survivors_changed and
physarium.reconstruction_error are then exact. Methods that rank with an
importance matrix (wanda, activation-flow) are replayed when
physarium.imatrix describes the calibration file's own.

The magnitude baseline (physarium.version 0) is replayed from its rule
(per matrix, the round(s*n) smallest |w|, zeros first, ties by index) with
the same block-by-block checks. activation-flow (version 2) and the wanda
baseline (version 0) are reported as not verifiable by replay, with the
reason: they rank with an importance matrix the audit is not given. Their labels
are checked against each other exactly as prune writes them (version,
method, activation_aware, mode, importance, the presence of
physarium.imatrix and the targets it lists as pruned on |w| alone by
--imatrix-missing v1), and the errata wording is rebuilt from the recount
for every method. In sparsity mode, with --against ORIGINAL, the kill
count of every tensor follows from the original's zeros and the method's
rule (per 256x256 tile for the kernel, per output row
round(s*(o+1)*n)-round(s*o*n) for wanda and the row ranks of v2, per
matrix round(s*n) for magnitude), so the kill counts, rates and errata are
exact there too.

Control twins (physarium.control = true, written by prune --control) are
audited as such: zero kill figures, the control wording, and with
--against every changed block a re-encoding of the original's values;
--pruned PRUNED also checks control_of's sha256 and that the control
re-encoded exactly the blocks the pruned twin did.

IQ grid targets (IQ1_S ... IQ3_S) are re-encoded by prune with the
importance weights of the run's --imatrix (or --calibration file): pass
the same file as --imatrix for the audit to expect the same bytes; without
it such tensors are reported as not verifiable, by name.

Every check says whether it was verified exactly, only within bounds, or
not at all, and whether it rests on the file alone or on the original.
A file without physarium.* keys gets the sparsity of each projection tensor.

Exit status: 0 when everything agrees, 1 when anything disagrees (each
disagreement named: key, tensor, stored value, recounted value), 2 on usage
or read errors.

Examples:
  physarium-gguf audit model.pruned.gguf
  physarium-gguf audit --against model.gguf model.pruned.gguf
  physarium-gguf audit --json --against model.gguf model.pruned.gguf | jq .disagreements
  physarium-gguf audit --against model.gguf --pruned model.pruned.gguf model.control.gguf`,
		Flags: []ucli.Flag{
			&ucli.BoolFlag{Name: "json", Usage: "print the audit as JSON"},
			&ucli.StringFlag{Name: "against", Usage: "the original (unpruned) file to compare with"},
			&ucli.StringFlag{Name: "pruned", Usage: "for a control twin: the pruned file it names in physarium.control_of"},
			&ucli.StringFlag{Name: "calibration", Usage: "the calibration file physarium.calibration names: replays a reconstructed file's mask and survivors (sparsegpt, --reconstruct), or the kills of an activation-flow file that ate the full v2 food (with --against)"},
			&ucli.BoolFlag{Name: "no-replay", Usage: "do not replay the kernel on the original's values (kills then only bounded for quantized types)"},
			&ucli.StringFlag{Name: "imatrix", Usage: "the importance matrix (or calibration file) the pruning run read, for the re-encoding of IQ grid targets"},
			splitFlag,
		},
		Action: a.audit,
	}
}

func (a *App) audit(c *ucli.Context) error {
	paths, err := args(c, "FILE")
	if err != nil {
		return err
	}
	r, err := runAuditOpts(c.Context, paths[0], audit.Options{Against: c.String("against"), Pruned: c.String("pruned"), NoReplay: c.Bool("no-replay"), Calibration: c.String("calibration"), AnyShard: c.Bool("split"), Imatrix: c.String("imatrix")})
	if err != nil {
		return err
	}
	w := bufio.NewWriter(a.Stdout)
	if c.Bool("json") {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		err = enc.Encode(r)
	} else {
		writeAudit(w, r)
	}
	if ferr := w.Flush(); err == nil {
		err = ferr
	}
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	return auditVerdict(r)
}

// runAudit audits path; read errors exit with ExitUsage (2).
func runAudit(ctx context.Context, path, against string) (*audit.Report, error) {
	return runAuditOpts(ctx, path, audit.Options{Against: against})
}

// runAuditOpts audits path with opts; read errors exit with ExitUsage (2).
func runAuditOpts(ctx context.Context, path string, opts audit.Options) (*audit.Report, error) {
	r, err := audit.File(ctx, path, opts)
	if err != nil {
		if errors.Is(err, context.Canceled) {
			return nil, err
		}
		return nil, &ExitError{Code: ExitUsage, Err: err}
	}
	return r, nil
}

// auditVerdict is nil when r agrees, else an error naming the
// disagreements (exit code 1).
func auditVerdict(r *audit.Report) error {
	if r.OK() {
		return nil
	}
	d := r.Disagreements[0]
	more := ""
	if len(r.Disagreements) > 1 {
		more = fmt.Sprintf(" (and %d more)", len(r.Disagreements)-1)
	}
	where := d.Key
	if d.Tensor != "" {
		where += " of " + d.Tensor
	}
	st, rc := diffShort(d.Stored, d.Recounted)
	return &ExitError{Code: ExitFailure, Err: fmt.Errorf("audit: %s disagrees with the recount: %s: stored %s, recounted %s%s", r.File, where, st, rc, more)}
}

// writeAudit prints the human summary of an audit.
func writeAudit(w io.Writer, r *audit.Report) {
	basis := "the file alone"
	if r.Against != "" {
		basis = "against the original " + r.Against
	}
	fmt.Fprintf(w, "audit of %s (%s)\n", r.File, basis)
	if !r.Pruned {
		fmt.Fprintln(w, "no physarium.* keys: sparsity of the projection tensors (weights that read exactly 0)")
	} else {
		fmt.Fprintf(w, "Physarium-v%d %s, mode %s\n", r.Version, r.Method, r.Mode)
		if r.Control {
			fmt.Fprintln(w, "control twin (re-encoding only): every kill figure must be 0")
			if r.PrunedTwin != "" {
				fmt.Fprintf(w, "pruned twin: %s (sha256 %s)\n", r.PrunedTwin, r.PrunedTwinSHA256)
			}
		}
		if r.Replay.Ran {
			fmt.Fprintf(w, "replay: the kernel (%s, %s) re-ran on the original's values: kills are exact\n", r.Replay.Kernel, r.Replay.Params)
			for _, c := range r.Checks {
				if c.Key == "replay" && c.Tensor != "" && c.Status == audit.StatusUnverifiable {
					fmt.Fprintf(w, "  except %s: %s\n", c.Tensor, c.Note)
				}
			}
		} else {
			fmt.Fprintf(w, "replay: NOT RUN, %s\n", r.Replay.Reason)
		}
	}
	fmt.Fprintf(w, "denominators: target %d weights (%d tensors), processed %d, model %d\n", r.Weights.Target, r.TargetTensors, r.Weights.Processed, r.Weights.Model)
	fmt.Fprintf(w, "coverage:               %s\n", r.Coverage)
	fmt.Fprintf(w, "zeros now over target:  %s\n", r.Zeros)
	fmt.Fprintf(w, "zeros now over model:   %s\n", r.ZerosOfModel)
	if r.ZeroBefore != nil {
		fmt.Fprintf(w, "zero before surgery:    %s\n", r.ZeroBefore)
		fmt.Fprintf(w, "made zero by surgery:   %s\n", r.Zeroed)
	}
	if r.Killed != nil {
		fmt.Fprintf(w, "killed: stored %d, recounted %s\n", *r.StoredKilled, r.Killed)
		fmt.Fprintf(w, "kill rate over target:  %s\n", r.OverTarget)
		fmt.Fprintf(w, "kill rate over model:   %s\n", r.OverModel)
	}
	writeAuditTensors(w, r)
	writeAuditChecks(w, r)
}

// writeAuditTensors prints the per-tensor lines of an audit.
func writeAuditTensors(w io.Writer, r *audit.Report) {
	fmt.Fprintln(w, "per tensor (zeros now over the tensor's weights):")
	for _, t := range r.Tensors {
		fmt.Fprintf(w, "  %-28s %-7s zeros %s", t.Name, t.Type, t.Zeros)
		if t.Killed != nil && t.StoredKilled != nil {
			fmt.Fprintf(w, "; killed stored %d, recounted %s", *t.StoredKilled, t.Killed)
		}
		if t.Replay != nil && t.Replay.KilledNonZero > 0 {
			fmt.Fprintf(w, "; %d killed read non-zero, max |value| %g", t.Replay.KilledNonZero, t.Replay.MaxKilledAbs)
		}
		if t.Control != nil {
			fmt.Fprintf(w, "; %d of %d blocks re-encoded", t.Control.Changed, t.Control.Blocks)
		}
		if !t.Decoded {
			fmt.Fprint(w, " (type cannot be decoded)")
		}
		fmt.Fprintln(w)
	}
}

// writeAuditChecks prints the checks by status and basis, the bounded and
// unverifiable file-wide ones, and the verdict.
func writeAuditChecks(w io.Writer, r *audit.Report) {
	counts := map[string]int{}
	for _, c := range r.Checks {
		counts[c.Status+" ("+c.Basis+")"]++
	}
	if len(r.Checks) > 0 {
		fmt.Fprintln(w, "checks:")
		for _, s := range []string{audit.StatusExact, audit.StatusBounds, audit.StatusUnverifiable, audit.StatusDisagrees} {
			for _, b := range []string{audit.BasisFile, audit.BasisAgainst} {
				if n := counts[s+" ("+b+")"]; n > 0 {
					fmt.Fprintf(w, "  %4d %s (%s)\n", n, s, map[string]string{audit.BasisFile: "file alone", audit.BasisAgainst: "against the original"}[b])
				}
			}
		}
		for _, c := range r.Checks {
			if (c.Status == audit.StatusBounds || c.Status == audit.StatusUnverifiable) && c.Tensor == "" {
				fmt.Fprintf(w, "  %s: %s: stored %s, recounted %s\n", c.Status, c.Key, short(c.Stored), short(c.Recounted))
			}
		}
	}
	if r.OK() {
		fmt.Fprintf(w, "verdict: agree (%d checks)\n", len(r.Checks))
		return
	}
	fmt.Fprintf(w, "verdict: DISAGREE (%d disagreements)\n", len(r.Disagreements))
	for _, d := range r.Disagreements {
		where := d.Key
		if d.Tensor != "" {
			where += " of " + d.Tensor
		}
		st, rc := diffShort(d.Stored, d.Recounted)
		fmt.Fprintf(w, "  %s: stored %s, recounted %s\n", where, st, rc)
	}
}

// diffShort shortens two long differing strings around their first
// difference.
func diffShort(a, b string) (string, string) {
	if len(a) <= 100 && len(b) <= 100 {
		return a, b
	}
	i := 0
	for i < len(a) && i < len(b) && a[i] == b[i] {
		i++
	}
	cut := func(s string) string {
		lo, hi := max(0, i-30), min(len(s), i+50)
		out := s[lo:hi]
		if lo > 0 {
			out = "..." + out
		}
		if hi < len(s) {
			out += "..."
		}
		return out
	}
	return cut(a), cut(b)
}

func short(s string) string {
	if len(s) > 100 {
		return s[:97] + "..."
	}
	return s
}
