package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	ucli "github.com/urfave/cli/v2"
	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"

	"github.com/physarium/physarium-gguf/kernel"
	"github.com/physarium/physarium-gguf/method"
	"github.com/physarium/physarium-gguf/obs"
	"github.com/physarium/physarium-gguf/prune"
)

func (a *App) pruneCommand() *ucli.Command {
	return &ucli.Command{
		Name:      "prune",
		Usage:     "prune a GGUF model's projection weights with the Physarium kernel",
		ArgsUsage: "IN OUT",
		Description: `Memory-maps IN, picks the attention, feed-forward, state-space and RWKV
projection tensors of every block (attn_q, attn_k, attn_v, attn_qkv,
attn_output, the MLA projections, ffn_gate, ffn_up, ffn_down and their
fused, expert and shared forms, ssm_in, ssm_out, time_mix_*, ...; see
docs/TARGETS.md, and --list-targets for one model), decodes them band by band, runs the Physarium
kernel on non-overlapping 256x256 tiles, zeroes the weights it kills,
re-encodes only the blocks that hold a kill (each tensor keeps its type),
and writes OUT with every other tensor and key unchanged plus the
physarium.* keys that state what was done, with the denominator of every
kill rate.

IN is never modified, nor replaced: an OUT that is IN, also through a
link, is refused. OUT is written to OUT.partial-PID beside it and renamed
into place; on any error, on Ctrl-C (SIGINT), SIGTERM, SIGHUP or SIGQUIT
nothing is left behind, and such a file left by a run that was killed
outright (kill -9) is removed by the next run writing the same OUT.

OUT (and the --control file) must be absent, or with --force a regular
file: a directory, a device, a FIFO or a socket is refused even with
--force. A symbolic link is written through: the file it leads to is
replaced (the temporary file goes beside that file) and the link stays; a
link that leads nowhere is refused.

Modes:
  natural   (default) the mould decides how much of each tile dies
  sparsity  each tile ends with exactly round(S * weights) zeros (--sparsity S);
            v2 activation-flow and wanda instead end each output row with
            round(S * row length) zeros, magnitude each tensor (per matrix)

Methods:
  magnitude-flow   v1, the mould eats |w| (default without --imatrix)
  activation-flow  v2, the mould eats |w|*a_i, a_i = sqrt(in_sum2_i/count_i)
                   from --imatrix (default with it); in sparsity mode the
                   ranking is --rank (physarium.importance states the formula)
  magnitude        baseline, no kernel: smallest |w| of each tensor
  wanda            baseline, no kernel: smallest |w|*a_i of each output row
  sparsegpt        SparseGPT (Frantar & Alistarh 2023): from --calibration's
                   Gram matrices, the smallest w^2/[U]_jj^2 of each 256-row x
                   --blocksize block die and the survivors take the OBS update
  Baselines are written with physarium.version 0.

Examples:
  physarium-gguf prune model.gguf model.pruned.gguf
  physarium-gguf prune --mode sparsity --sparsity 0.3 model.gguf out.gguf
  physarium-gguf prune --layers 0-3 --exclude 'ffn_down' --report r.json in.gguf out.gguf
  physarium-gguf prune --dry-run --report - model.gguf x   # JSON report on stdout, no file
  physarium-gguf prune --list-targets model.gguf   # each tensor's role, target or why not
  physarium-gguf prune --control control.gguf model.gguf pruned.gguf
  physarium-gguf prune --imatrix imatrix.gguf --mode sparsity --sparsity 0.4 in.gguf out.gguf
  physarium-gguf prune --method wanda --imatrix imatrix.gguf --mode sparsity --sparsity 0.4 in.gguf out.gguf
  physarium-gguf prune --method sparsegpt --calibration calib.gguf --mode sparsity --sparsity 0.5 in.gguf out.gguf
  physarium-gguf prune --reconstruct --calibration calib.gguf --mode sparsity --sparsity 0.5 in.gguf out.gguf
  physarium-gguf prune --method wanda --imatrix imatrix.gguf --pattern 2:4 in.gguf out.gguf

With --control, perplexity(control) - perplexity(original) is what
re-encoding cost and perplexity(pruned) - perplexity(control) what pruning
cost: two numbers, never one.`,
		Flags: append([]ucli.Flag{
			&ucli.StringFlag{Name: "mode", Value: "natural", Usage: "kill rule: natural or sparsity"},
			&ucli.Float64Flag{Name: "sparsity", Usage: "fraction of each tile to zero in sparsity mode, 0 < S < 1"},
			&ucli.StringFlag{Name: "kernel", Value: "auto", Usage: "kernel implementation: auto, generic, avx2 or avx512"},
			&ucli.IntFlag{Name: "threads", Usage: "kernel and surgery workers; decoding (one decoder per four workers), reading, hashing and writing run beside them (default: one per CPU)"},
			&ucli.StringSliceFlag{Name: "include", Usage: "also target tensors whose name matches this regular expression (repeatable)"},
			&ucli.StringSliceFlag{Name: "exclude", Usage: "leave out tensors whose name matches this regular expression (repeatable)"},
			&ucli.StringFlag{Name: "layers", Usage: "only these blocks, e.g. 0-3,7"},
			&ucli.BoolFlag{Name: "skip-unsupported", Usage: "leave selected tensors of types that cannot be decoded or encoded untouched (they leave the target denominator)"},
			&ucli.StringFlag{Name: "report", Usage: "write the JSON report to this file (- for stdout)"},
			&ucli.StringFlag{Name: "control", Usage: "also write the control twin to this file: the same blocks re-encoded, nothing zeroed (separates re-encoding cost from pruning cost)"},
			&ucli.StringFlag{Name: "imatrix", Usage: "llama.cpp importance matrix (GGUF or legacy .dat from llama-imatrix): enables v2 activation-flow (food |w|*sqrt(in_sum2/count)) and wanda; IQ grid targets are re-encoded with its weights (in_sum2/count), required for IQ2_XXS, IQ2_XS and IQ1_S"},
			&ucli.StringFlag{Name: "imatrix-missing", Value: "error", Usage: "a target without an imatrix entry: error, or v1 (prune it on |w| alone; listed in the report and physarium.imatrix)"},
			&ucli.StringFlag{Name: "method", Usage: "activation-flow (v2, default with --imatrix), magnitude-flow (v1, default without), the plain baselines magnitude (per-tensor |w|) and wanda (|w|*a_i per output row), or sparsegpt (needs --calibration); the last three need --mode sparsity"},
			&ucli.StringFlag{Name: "calibration", Usage: "calibration file (calibrate; --gram for Gram matrices), read by sparsegpt, --reconstruct, and activation-flow without --imatrix (the full v2 food)"},
			&ucli.StringFlag{Name: "factors", Usage: "factors of activation-flow's full food from --calibration: a subset of act,stab,contrib,seqcontrib, each optionally ^EXPONENT (default: " + method.DefaultFactors.String() + ", with --reconstruct " + method.DefaultReconstructFactors.String() + ")"},
			&ucli.Float64Flag{Name: "damp", Value: method.DefaultDamp, Usage: "relative damping of the inverse Hessians: lambda = DAMP * mean(diag H)"},
			&ucli.IntFlag{Name: "blocksize", Value: obs.DefaultBlockSize, Usage: "column block of the OBS updates and of sparsegpt's mask"},
			&ucli.StringFlag{Name: "pattern", Usage: "N:M pattern (2:4, 4:8): in every group of M consecutive input weights of a row exactly N die, chosen by the method's own score; sets sparsity mode at N/M"},
			&ucli.BoolFlag{Name: "reconstruct", Usage: "keep the method's mask, then move the survivors to preserve each layer's output on --calibration's inputs (OBS)"},
			&ucli.StringFlag{Name: "rank", Usage: "v2 sparsity-mode ranking: flow-share (default), row-mould, row-flow, row-flow-mould or tile"},
			&ucli.BoolFlag{Name: "dry-run", Usage: "compute and report, write no GGUF"},
			&ucli.BoolFlag{Name: "list-targets", Usage: "print each tensor of IN (the only argument) with its role and whether it is a target, and why not; --include, --exclude and --layers apply"},
			&ucli.BoolFlag{Name: "json", Usage: "with --list-targets: print JSON"},
			&ucli.BoolFlag{Name: "force", Usage: "replace OUT if it is a regular file (or a link to one)"},
			&ucli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "no progress and no summary"},
		}, append(pruneSplitFlags(), retypeFlag)...),
		Action: a.prune,
	}
}

// pruneOptions turns the flags into prune.Options.
func pruneOptions(c *ucli.Context) (prune.Options, error) {
	var o prune.Options
	p, pat, err := pruneMode(c)
	if err != nil {
		return o, err
	}
	o.Pattern = pat
	impl, err := kernel.ParseImpl(c.String("kernel"))
	if err != nil {
		return o, usageErrorf("prune: --kernel: %v", err)
	}
	if !kernel.Available(impl) {
		return o, usageErrorf("prune: --kernel %s is not available on this CPU or in this build", impl)
	}
	if c.Int("threads") < 0 {
		return o, usageErrorf("prune: --threads %d: must be positive", c.Int("threads"))
	}
	o.Params = &p
	o.Impl = impl
	o.Threads = c.Int("threads")
	o.Selection = prune.Selection{Include: c.StringSlice("include"), Exclude: c.StringSlice("exclude"), Layers: c.String("layers")}
	if o.Selection.Layers != "" {
		if err := prune.CheckLayers(o.Selection.Layers); err != nil {
			return o, usageErrorf("%v", err)
		}
	}
	o.DryRun = c.Bool("dry-run")
	o.Control = c.String("control")
	if o.DryRun && o.Control != "" {
		return o, usageErrorf("prune: --control and --dry-run exclude each other")
	}
	o.Overwrite = c.Bool("force")
	if err := pruneRetype(c, &o); err != nil {
		return o, err
	}
	if err := pruneSplit(c, &o); err != nil {
		return o, err
	}
	o.SkipUnsupported = c.Bool("skip-unsupported")
	if err := pruneMethod(c, &o); err != nil {
		return o, err
	}
	return o, checkMethod(c, o, p)
}

// pruneMode reads --pattern, --mode and --sparsity: the kernel's
// parameters (a pattern N:M sets sparsity mode at N/M) and the pattern.
func pruneMode(c *ucli.Context) (kernel.Params, method.Pattern, error) {
	p := kernel.DefaultParams()
	var pat method.Pattern
	if c.IsSet("pattern") {
		var err error
		if pat, err = method.ParsePattern(c.String("pattern")); err != nil {
			return p, pat, usageErrorf("prune: --pattern: %v", err)
		}
		if c.IsSet("mode") || c.IsSet("sparsity") {
			return p, pat, usageErrorf("prune: --pattern %s sets sparsity mode at %d/%d; drop --mode and --sparsity", pat, pat.N, pat.M)
		}
		p.Mode, p.Sparsity = kernel.Sparsity, float64(pat.N)/float64(pat.M)
	}
	switch mode := c.String("mode"); {
	case !pat.None():
	case mode == "natural":
		if c.IsSet("sparsity") {
			return p, pat, usageErrorf("prune: --sparsity needs --mode sparsity")
		}
	case mode == "sparsity":
		s := c.Float64("sparsity")
		if !(s > 0 && s < 1) {
			return p, pat, usageErrorf("prune: --mode sparsity needs --sparsity S with 0 < S < 1 (got %v)", s)
		}
		p.Mode, p.Sparsity = kernel.Sparsity, s
	default:
		return p, pat, usageErrorf("prune: --mode %q: want natural or sparsity", c.String("mode"))
	}
	return p, pat, nil
}

// pruneMethod reads the method's flags into o: --method, --imatrix,
// --rank, --calibration, --damp, --blocksize, --reconstruct, --factors
// and --imatrix-missing.
func pruneMethod(c *ucli.Context, o *prune.Options) error {
	if c.IsSet("method") { // else chosen by prune from --imatrix
		o.Method = c.String("method")
		if _, err := method.Parse(o.Method); err != nil {
			return usageErrorf("prune: %v", err)
		}
	}
	o.Imatrix = c.String("imatrix")
	o.Rank = method.Rank(c.String("rank"))
	o.Calibration = c.String("calibration")
	o.Damp = c.Float64("damp")
	o.BlockSize = c.Int("blocksize")
	o.Reconstruct = c.Bool("reconstruct")
	if c.IsSet("factors") {
		f, err := method.ParseFactors(c.String("factors"))
		if err != nil {
			return usageErrorf("prune: --factors: %v", err)
		}
		o.Factors = f
	}
	if o.Reconstruct && o.Calibration == "" {
		return usageErrorf("prune: --reconstruct needs --calibration FILE (calibrate --gram)")
	}
	if !(o.Damp > 0) || o.BlockSize < 1 {
		return usageErrorf("prune: --damp %v and --blocksize %d must be positive", o.Damp, o.BlockSize)
	}
	switch c.String("imatrix-missing") {
	case "error":
	case "v1":
		if o.Imatrix == "" {
			return usageErrorf("prune: --imatrix-missing v1 needs --imatrix")
		}
		o.ImatrixMissingV1 = true
	default:
		return usageErrorf("prune: --imatrix-missing %q: want error or v1", c.String("imatrix-missing"))
	}
	return nil
}

// checkMethod refuses, as usage errors, a method, rank or mode that do not
// fit each other (the method's own rules, which prune.File applies too).
func checkMethod(c *ucli.Context, o prune.Options, p kernel.Params) error {
	name := o.Method
	if name == "" {
		name = prune.DefaultMethod(o.Imatrix)
	}
	m, _ := method.Lookup(name) // parsed above
	cfg := method.Config{Params: p, Impl: o.Impl}
	var err error
	if cfg.Rank, err = method.ParseRank(string(o.Rank)); err != nil {
		return usageErrorf("prune: %v", err)
	}
	if c.IsSet("rank") && (len(m.Ranks(p.Mode)) == 0 || o.Imatrix == "" && o.Calibration == "") {
		return usageErrorf("prune: --rank applies to %s only", rankedMethods())
	}
	if err := m.Validate(cfg); err != nil {
		return usageErrorf("prune: --method %s: %v", name, err)
	}
	return nil
}

// rankedMethods names the methods that take a rank, and in which mode.
func rankedMethods() string {
	return method.Names(func(m method.Method) bool { return len(m.Ranks(kernel.Sparsity)) > 0 }) + " in sparsity mode"
}

func (a *App) prune(c *ucli.Context) error {
	if c.Bool("list-targets") {
		return a.listTargets(c)
	}
	if c.Bool("json") {
		return usageErrorf("prune: --json applies to --list-targets only")
	}
	paths, err := args(c, "IN", "OUT")
	if err != nil {
		return err
	}
	opts, err := pruneOptions(c)
	if err != nil {
		return err
	}
	in, out := paths[0], paths[1]
	reportPath := c.String("report")
	summary := a.Stdout
	if reportPath == "-" {
		summary = a.Stderr
	}
	quiet := c.Bool("quiet")
	var bar *progressBar
	if !quiet {
		bar = newProgressBar(a.Stderr, "prune "+filepath.Base(in))
		opts.Progress = bar.update
	}
	if !opts.DryRun {
		if err := a.removeStale("prune", append(append([]string{out, opts.Control}, shardTargets(out)...), shardTargets(opts.Control)...)...); err != nil {
			return err
		}
	}
	r, err := prune.File(c.Context, in, out, opts)
	if bar != nil {
		bar.finish(err == nil)
	}
	if err != nil {
		return err
	}
	if reportPath != "" {
		if err := writeJSONReport(a.Stdout, reportPath, r); err != nil {
			return err
		}
	}
	if !quiet {
		writeSummary(summary, r)
	}
	return nil
}

// writeJSONReport writes r as indented JSON to path (- for stdout).
func writeJSONReport(stdout io.Writer, path string, r any) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("report: %w", err)
	}
	b = append(b, '\n')
	if path == "-" {
		_, err = stdout.Write(b)
		return err
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	return nil
}

// writeSummary prints the surgery figures of a report, every rate with its
// denominator.
func writeSummary(w io.Writer, r *prune.Report) {
	fmt.Fprintf(w, "Physarium-v%d surgery (%s), %s mode, %s [%s kernel, %d threads, %.1f s]\n",
		r.Version, r.Method, r.Mode, r.Params, r.Kernel, r.Threads, r.Seconds)
	if r.DryRun {
		fmt.Fprintf(w, "dry run: no file written\n")
	} else {
		fmt.Fprintf(w, "wrote %s\n", r.Output)
		if len(r.Outputs) > 1 {
			fmt.Fprintf(w, "  the first of %d shards (%s ... %s); the physarium.* keys are in it\n", len(r.Outputs), filepath.Base(r.Outputs[0]), filepath.Base(r.Outputs[len(r.Outputs)-1]))
		}
	}
	if r.Control != nil {
		if n := len(r.Control.Paths); n > 1 {
			fmt.Fprintf(w, "wrote control twin %s (re-encoding only)\n  the first of %d shards (%s ... %s), split as the output; belongs to its %d shards:\n", r.Control.Path, n, filepath.Base(r.Control.Paths[0]), filepath.Base(r.Control.Paths[n-1]), n)
			for _, s := range r.Control.OfShards {
				fmt.Fprintf(w, "    %s sha256:%s\n", s.Name, s.SHA256)
			}
		} else {
			fmt.Fprintf(w, "wrote control twin %s (re-encoding only, belongs to %s sha256:%s)\n", r.Control.Path, r.Control.Of, r.Control.OfSHA256)
		}
	}
	fmt.Fprintf(w, "target tensors:   %d (%d target weights; %d model weights)\n", r.TargetCount, r.Weights.Target, r.Weights.Model)
	fmt.Fprintf(w, "killed:           %d\n", r.Killed)
	fmt.Fprintf(w, "over target:      %s\n", r.OverTarget)
	fmt.Fprintf(w, "over model:       %s\n", r.OverModel)
	fmt.Fprintf(w, "coverage:         %s\n", r.Coverage)
	fmt.Fprintf(w, "zero before:      %d of %d target weights (never counted as kills)\n", r.ZeroBefore, r.Weights.Target)
	fmt.Fprintf(w, "exact zeros:      %s\n", r.ExactZeroOf)
	writeNonTargets(w, r.NonTargets)
	for _, s := range r.Skipped {
		fmt.Fprintf(w, "skipped:          %s (%s, %d weights): %s\n", s.Name, s.Type, s.Weights, s.Reason)
	}
	for _, t := range r.NonfiniteTensors {
		fmt.Fprintf(w, "WARNING:          %s is not a target and holds %d NaN or infinite values, copied byte for byte\n", t.Name, t.Count)
	}
	if r.NonfiniteCopied.Numerator > 0 {
		fmt.Fprintf(w, "non-finite copied: %s (physarium.nonfinite_copied)\n", r.NonfiniteCopied)
	}
	if len(r.Kinds) > 0 {
		fmt.Fprintf(w, "per projection kind (kill rate over each tensor's weights):\n")
		for _, k := range r.Kinds {
			fmt.Fprintf(w, "  %-16s %3d tensors  min %s [%s]  max %s [%s]\n", k.Kind, k.Tensors, k.Min, k.MinName, k.Max, k.MaxName)
		}
	}
	if len(r.Layers) > 0 {
		fmt.Fprintf(w, "per layer (kill rate over the layer's target weights):\n")
		for _, l := range r.Layers {
			fmt.Fprintf(w, "  blk.%-4d %s\n", l.Layer, l.Rate)
		}
	}
	fmt.Fprintf(w, "\n%s\n", wrap(r.Errata, 78))
}

// progressBar shows a run's progress on stderr: a bar (tensors, bytes, rate,
// time left) on a terminal, a plain line per second otherwise.
type progressBar struct {
	w        io.Writer
	p        *mpb.Progress
	bar      *mpb.Bar
	name     string
	last     time.Time
	lastSeen prune.Progress
	start    time.Time
}

func newProgressBar(w io.Writer, name string) *progressBar {
	pb := &progressBar{w: w, name: name, start: time.Now()}
	if isTerminal(w) {
		pb.p = mpb.New(mpb.WithOutput(w), mpb.WithWidth(40), mpb.WithAutoRefresh())
	}
	return pb
}

// update is the prune.Progress callback.
func (pb *progressBar) update(p prune.Progress) {
	pb.lastSeen = p
	if pb.p != nil {
		if pb.bar == nil {
			pb.bar = pb.p.AddBar(p.TotalBytes,
				mpb.PrependDecorators(
					decor.Name(pb.name+" ", decor.WCSyncSpaceR),
					decor.Any(func(decor.Statistics) string {
						return fmt.Sprintf("tensor %d/%d", pb.lastSeen.TensorIndex+1, pb.lastSeen.Tensors)
					}, decor.WCSyncSpaceR),
					decor.Counters(decor.SizeB1024(0), "% .1f / % .1f"),
				),
				mpb.AppendDecorators(
					decor.AverageSpeed(decor.SizeB1024(0), "% .1f", decor.WCSyncSpace),
					decor.Name(" eta "),
					decor.AverageETA(decor.ET_STYLE_GO),
				),
			)
		}
		pb.bar.SetCurrent(p.Bytes)
		return
	}
	now := time.Now()
	if now.Sub(pb.last) < time.Second && p.Bytes < p.TotalBytes {
		return
	}
	pb.last = now
	el := now.Sub(pb.start).Seconds()
	rate := float64(p.Bytes) / max(el, 1e-9)
	left := "?"
	if rate > 0 {
		left = (time.Duration(float64(p.TotalBytes-p.Bytes)/rate) * time.Second).Round(time.Second).String()
	}
	fmt.Fprintf(pb.w, "%s: tensor %d/%d %s, %.1f/%.1f MiB, %.1f MiB/s, %s left\n",
		pb.name, p.TensorIndex+1, p.Tensors, p.Tensor, mib(p.Bytes), mib(p.TotalBytes), mib(int64(rate)), left)
}

func mib(n int64) float64 { return float64(n) / (1 << 20) }

// finish stops the bar; on failure the bar is left where it stopped.
func (pb *progressBar) finish(ok bool) {
	if pb.p == nil {
		return
	}
	if pb.bar != nil {
		if ok {
			pb.bar.SetCurrent(pb.lastSeen.TotalBytes)
		}
		pb.bar.Abort(false)
	}
	pb.p.Wait()
}
