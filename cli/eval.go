package cli

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	ucli "github.com/urfave/cli/v2"
	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"

	"github.com/physarium/physarium-gguf/errata"
	"github.com/physarium/physarium-gguf/gguf"
	"github.com/physarium/physarium-gguf/internal/filehash"
	"github.com/physarium/physarium-gguf/llamacpp"
)

func (a *App) evalCommand() *ucli.Command {
	return &ucli.Command{
		Name:      "eval",
		Usage:     "the evaluation experiment: perplexity and KL divergence through llama.cpp",
		ArgsUsage: "MODEL...",
		Description: `Measures each MODEL's perplexity on a held-out text exactly as llama.cpp's
llama-perplexity does (chunks of --ctx tokens, BOS at each chunk start where
the model adds one, the second half of each chunk scored, the same +/-), and
with --base DENSE.gguf the statistics of llama-perplexity --kl-divergence of
each MODEL against DENSE: mean KLD +/-, median, 99th and 99.9th percentiles,
how often the top token is DENSE's (+/-), the mean and RMS change of the
correct token's probability, and PPL(MODEL)/PPL(DENSE) +/-. The models run in
lockstep, chunk by chunk, so DENSE's distributions are never written out
unless --save-base-logits asks for llama-perplexity's logits file.

This is the evaluation experiment (errata rule 1): eval writes nothing into
any GGUF. Its report names everything needed to repeat it: each model's
sha256, method, kill rate with its denominator and source; the text's
sha256 and token count; ctx, batch, chunks, tokens scored, threads and the
llama.cpp build. It refuses to compare models whose vocabularies differ and
warns when --base is not the file a pruned MODEL names as its source.

A model split into shards (llama-gguf-split's name-NNNNN-of-MMMMM.gguf) is
given by its first shard, or by any shard with --split: every shard is
checked as the other commands check them, llama.cpp loads the whole model,
and the report lists every shard's sha256.

llama.cpp is loaded at run time from --llama-lib DIR or $` + llamacpp.LibEnv + `: a
directory with libllama.so and libggml*.so of ` + llamacpp.SupportedRelease + `
(for example the bins/linux-x64 directory of the npm package
@node-llama-cpp/linux-x64@3.21.1). Another version is refused.

Examples:
  physarium-gguf eval --llama-lib DIR --text eval.txt --ctx 128 model.gguf
  physarium-gguf eval --text eval.txt --base dense.gguf dense.gguf control.gguf pruned.gguf`,
		Flags: []ucli.Flag{
			&ucli.StringFlag{Name: "text", Aliases: []string{"f"}, Usage: "the evaluation text (required; one trailing newline is dropped, as llama-perplexity -f)"},
			&ucli.IntFlag{Name: "ctx", Aliases: []string{"c"}, Value: 512, Usage: "tokens per chunk, as llama-perplexity -c"},
			&ucli.IntFlag{Name: "chunks", Value: 0, Usage: "evaluate at most N chunks (0: all)"},
			&ucli.IntFlag{Name: "batch", Aliases: []string{"b"}, Value: 2048, Usage: "logical batch size, as llama-perplexity -b (>= 2*ctx evaluates batch/ctx chunks side by side)"},
			&ucli.IntFlag{Name: "threads", Aliases: []string{"t"}, Value: runtime.NumCPU(), Usage: "threads for the forward pass and the scoring"},
			&ucli.StringFlag{Name: "base", Usage: "the dense model to measure each MODEL's KL divergence against"},
			&ucli.StringFlag{Name: "save-base-logits", Usage: "also write --base's log-probabilities to `FILE` in llama-perplexity's --kl-divergence-base format"},
			&ucli.StringFlag{Name: "json", Usage: "write the report as JSON to `FILE` (- for stdout, the table then goes to stderr)"},
			&ucli.StringFlag{Name: "llama-lib", Usage: "directory of llama.cpp's shared libraries (default $" + llamacpp.LibEnv + ")"},
			&ucli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "no progress and no table (the --json report is still written)"},
			splitFlag,
		},
		Action: a.eval,
	}
}

// EvalReport is eval's report: the evaluation experiment, with what is
// needed to repeat it.
type EvalReport struct {
	// Experiment is always "evaluation" (errata rule 1).
	Experiment string `json:"experiment"`
	// Text is the evaluation text.
	Text EvalText `json:"text"`
	// Ctx, Batch, Chunks, Scored and Threads are the settings and counts.
	Ctx     int `json:"ctx"`
	Batch   int `json:"batch"`
	Chunks  int `json:"chunks"`
	Scored  int `json:"tokens_scored"`
	Threads int `json:"threads"`
	// Llama names the llama.cpp build.
	Llama EvalLlama `json:"llama_cpp"`
	// Base is the reference model of the KL divergence, when given.
	Base *EvalModel `json:"base,omitempty"`
	// Models are the evaluated models, in command-line order.
	Models []EvalModel `json:"models"`
	// Warnings repeat what was warned on stderr.
	Warnings []string `json:"warnings,omitempty"`
}

// EvalShard is one shard of a split model.
type EvalShard struct {
	File   string `json:"file"`
	SHA256 string `json:"sha256"`
}

// EvalText identifies the evaluation text.
type EvalText struct {
	Name   string `json:"name"`
	SHA256 string `json:"sha256"`
	Tokens int    `json:"tokens"`
}

// EvalLlama identifies the llama.cpp build.
type EvalLlama struct {
	Dir         string `json:"dir"`
	GGMLVersion string `json:"ggml_version"`
	GGMLCommit  string `json:"ggml_commit"`
	System      string `json:"system_info"`
}

// EvalModel is one model's identity and figures.
type EvalModel struct {
	File string `json:"file"`
	// SHA256 is the file's sha256; for a split model every shard's, in
	// order, separated by ", " (as physarium.source lists them).
	SHA256 string `json:"sha256"`
	// Shards names every shard of a split model with its sha256.
	Shards []EvalShard `json:"shards,omitempty"`
	// Method is physarium.method ("" for a file prune did not write).
	Method string `json:"method,omitempty"`
	// Killed and Target are physarium.killed and physarium.weights.target;
	// KillRate is physarium.kill_rate.over_target (killed / target).
	Killed   uint64  `json:"killed,omitempty"`
	Target   uint64  `json:"weights_target,omitempty"`
	KillRate float64 `json:"kill_rate_over_target,omitempty"`
	// Source is physarium.source, the dense original ("name sha256:hex").
	Source string `json:"source,omitempty"`
	// ControlOf is physarium.control_of for a control twin.
	ControlOf string  `json:"control_of,omitempty"`
	PPL       float64 `json:"ppl"`
	PPLErr    float64 `json:"ppl_err"`
	// TokensPerSecond counts the tokens evaluated (chunks times ctx).
	TokensPerSecond float64              `json:"tokens_per_second"`
	KLD             *llamacpp.Divergence `json:"kld,omitempty"`
}

func (a *App) eval(c *ucli.Context) error {
	args, err := evalArgsFrom(c)
	if err != nil {
		return err
	}
	text, err := os.ReadFile(args.textPath)
	if err != nil {
		return fmt.Errorf("eval: text %w", err)
	}
	if err := llamacpp.CheckText(args.textPath, text); err != nil {
		return fmt.Errorf("eval: %w", err)
	}
	rep, err := a.describeEval(&args, text)
	if err != nil {
		return err
	}
	lib, err := llamacpp.Load(args.libDir)
	if err != nil {
		return fmt.Errorf("eval: %w", err)
	}
	rep.Llama = EvalLlama{Dir: lib.Dir, GGMLVersion: lib.GGMLVersion, GGMLCommit: lib.GGMLCommit, System: strings.TrimSpace(lib.SystemInfo())}
	res, err := a.runEval(c, lib, args, text)
	if err != nil {
		return err
	}
	fillEvalReport(rep, res)

	table := a.Stdout
	if args.jsonPath == "-" {
		table = a.Stderr
	}
	if args.jsonPath != "" {
		if err := writeJSONReport(a.Stdout, args.jsonPath, rep); err != nil {
			return fmt.Errorf("eval: %w", err)
		}
	}
	if !args.quiet {
		writeEvalTable(table, rep)
	}
	return nil
}

// evalArgs are eval's checked arguments.
type evalArgs struct {
	models                       []string
	textPath, base, saveBase     string
	ctxN, batch, chunks, threads int
	libDir, jsonPath             string
	quiet, anyShard              bool
}

// evalArgsFrom reads and checks eval's arguments; a bad one is a usage error.
func evalArgsFrom(c *ucli.Context) (evalArgs, error) {
	a := evalArgs{models: c.Args().Slice()}
	if len(a.models) == 0 {
		return a, usageErrorf("eval: missing MODEL (run '%s eval --help')", Name)
	}
	for _, m := range a.models {
		if strings.HasPrefix(m, "-") && len(m) > 1 {
			return a, usageErrorf("eval: flag %s after the models: flags must come before MODEL... (run '%s eval --help')", m, Name)
		}
	}
	a.textPath = c.String("text")
	if a.textPath == "" {
		return a, usageErrorf("eval: --text FILE is required (run '%s eval --help')", Name)
	}
	a.ctxN, a.batch, a.chunks, a.threads = c.Int("ctx"), c.Int("batch"), c.Int("chunks"), c.Int("threads")
	switch {
	case a.ctxN < 4:
		return a, usageErrorf("eval: --ctx %d: want at least 4", a.ctxN)
	case a.batch < 1:
		return a, usageErrorf("eval: --batch %d: want at least 1", a.batch)
	case a.chunks < 0:
		return a, usageErrorf("eval: --chunks %d: want 0 (all) or more", a.chunks)
	case a.threads < 1:
		return a, usageErrorf("eval: --threads %d: want at least 1", a.threads)
	}
	a.base, a.saveBase = c.String("base"), c.String("save-base-logits")
	if a.saveBase != "" && a.base == "" {
		return a, usageErrorf("eval: --save-base-logits needs --base")
	}
	libDir, err := llamacpp.LibDir(c.String("llama-lib"))
	if err != nil {
		return a, &ExitError{Code: ExitUsage, Err: fmt.Errorf("eval: %w", err)}
	}
	a.libDir, a.jsonPath, a.quiet, a.anyShard = libDir, c.String("json"), c.Bool("quiet"), c.Bool("split")
	return a, nil
}

// describeEval starts the report with the text's and every model's
// identity, and warns (on stderr and in the report) of a model whose
// physarium.source names another original than --base. It replaces each
// path in args by the one llama.cpp loads (a split model's first shard).
func (a *App) describeEval(args *evalArgs, text []byte) (*EvalReport, error) {
	rep := &EvalReport{Experiment: "evaluation", Text: EvalText{Name: filepath.Base(args.textPath), SHA256: sha256Hex(text)}}
	if args.base != "" {
		m, first, err := describeModel(args.base, args.anyShard)
		if err != nil {
			return nil, err
		}
		rep.Base, args.base = &m, first
	}
	for i, p := range args.models {
		m, first, err := describeModel(p, args.anyShard)
		if err != nil {
			return nil, err
		}
		rep.Models = append(rep.Models, m)
		args.models[i] = first
	}
	if rep.Base == nil {
		return rep, nil
	}
	for _, m := range rep.Models {
		names, sums, ok := sourceParts(m.Source)
		if ok && sums != rep.Base.SHA256 {
			w := fmt.Sprintf("%s names %s (sha256:%s) as its original (physarium.source), but --base %s has sha256:%s", m.File, names, sums, rep.Base.File, rep.Base.SHA256)
			rep.Warnings = append(rep.Warnings, w)
			fmt.Fprintf(a.Stderr, "eval: warning: %s\n", w)
		}
	}
	return rep, nil
}

// runEval evaluates the models with the progress bar (unless quiet),
// writing --save-base-logits when asked and removing it on failure.
func (a *App) runEval(c *ucli.Context, lib *llamacpp.Library, args evalArgs, text []byte) (*llamacpp.Result, error) {
	opts := llamacpp.Options{Models: args.models, Base: args.base, Text: text, TextName: args.textPath,
		CtxSize: args.ctxN, Batch: args.batch, Chunks: args.chunks, Threads: args.threads}
	var saveFile *os.File
	if args.saveBase != "" {
		var err error
		saveFile, err = os.Create(args.saveBase)
		if err != nil {
			return nil, fmt.Errorf("eval: --save-base-logits: %w", err)
		}
		defer saveFile.Close()
		opts.SaveBaseLogits = saveFile
	}
	var bar *evalProgress
	if !args.quiet {
		bar = newEvalProgress(a.Stderr)
		opts.Progress = bar.update
	}
	res, err := llamacpp.Evaluate(c.Context, lib, opts)
	if bar != nil {
		bar.finish(err == nil)
	}
	if err != nil {
		if saveFile != nil {
			saveFile.Close()
			os.Remove(args.saveBase)
		}
		return nil, fmt.Errorf("eval: %w", err)
	}
	if saveFile != nil {
		if err := saveFile.Close(); err != nil {
			return nil, fmt.Errorf("eval: --save-base-logits: %w", err)
		}
	}
	return res, nil
}

// fillEvalReport copies the settings and each model's figures into the report.
func fillEvalReport(rep *EvalReport, res *llamacpp.Result) {
	rep.Text.Tokens, rep.Ctx, rep.Batch, rep.Chunks, rep.Scored, rep.Threads = res.Tokens, res.CtxSize, res.Batch, res.Chunks, res.Scored, res.Threads
	fill := func(m *EvalModel, r llamacpp.ModelResult) {
		m.PPL, m.PPLErr, m.KLD = r.PPL, r.PPLErr, r.KLD
		m.TokensPerSecond = r.TokensPerSecond(res)
	}
	if rep.Base != nil {
		fill(rep.Base, *res.Base)
	}
	for i := range rep.Models {
		fill(&rep.Models[i], res.Models[i])
	}
}

// describeModel reads a model's identity: sha256 (of every shard of a
// split model) and the physarium.* keys that tie it to its surgery, and
// returns the path llama.cpp loads it from (a split model's first shard).
// A file that is not a GGUF, or shards that do not make one model, are
// refused here.
func describeModel(path string, anyShard bool) (EvalModel, string, error) {
	mf, err := gguf.OpenModel(path, gguf.ModelOptions{AnyShard: anyShard})
	if err != nil {
		return EvalModel{}, "", fmt.Errorf("eval: model %s: %w", path, err)
	}
	defer mf.Close()
	f := mf.View
	m := EvalModel{File: filepath.Base(path)}
	str := func(k string) string {
		if kv, ok := f.KV("physarium." + k); ok {
			s, _ := kv.Value.AsString()
			return s
		}
		return ""
	}
	u64 := func(k string) uint64 {
		if kv, ok := f.KV("physarium." + k); ok {
			v, _ := kv.Value.AsUint64()
			return v
		}
		return 0
	}
	m.Method, m.Source, m.ControlOf = str("method"), str("source"), str("control_of")
	m.Killed, m.Target = u64("killed"), u64("weights.target")
	if kv, ok := f.KV("physarium.kill_rate.over_target"); ok {
		m.KillRate, _ = kv.Value.AsFloat64()
	}
	var sums []string
	for _, s := range mf.Shards {
		sum, err := filehash.SHA256(context.Background(), s.Path)
		if err != nil {
			return EvalModel{}, "", fmt.Errorf("eval: model %w", err)
		}
		sums = append(sums, sum)
		if mf.Split() {
			m.Shards = append(m.Shards, EvalShard{File: filepath.Base(s.Path), SHA256: sum})
		}
	}
	m.SHA256 = strings.Join(sums, errata.SourceSeparator)
	return m, mf.Shards[0].Path, nil
}

// sourceParts splits physarium.source ("name sha256:hex", for a split
// model one such part per shard) into its names and its sha256s, each
// joined by errata.SourceSeparator; ok is false when it is not of that form.
func sourceParts(source string) (names, sums string, ok bool) {
	if source == "" {
		return "", "", false
	}
	var ns, ss []string
	for _, part := range strings.Split(source, errata.SourceSeparator) {
		name, sum, found := strings.Cut(part, " sha256:")
		if !found {
			return "", "", false
		}
		ns, ss = append(ns, name), append(ss, sum)
	}
	return strings.Join(ns, errata.SourceSeparator), strings.Join(ss, errata.SourceSeparator), true
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// files names the model's file (every shard of a split model) with its
// sha256.
func (m EvalModel) files() string {
	if len(m.Shards) == 0 {
		return m.File + " sha256:" + m.SHA256
	}
	parts := make([]string, len(m.Shards))
	for i, s := range m.Shards {
		parts[i] = s.File + " sha256:" + s.SHA256
	}
	return fmt.Sprintf("%s (%d shards: %s)", m.File, len(m.Shards), strings.Join(parts, errata.SourceSeparator))
}

// identity describes a model's surgery in one line.
func (m EvalModel) identity() string {
	switch {
	case m.ControlOf != "":
		return fmt.Sprintf("control twin (re-encoding only) of %s", m.ControlOf)
	case m.Method != "":
		s := fmt.Sprintf("%s: %d of %d target weights killed (%.4f %%, denominator: all weights of the target tensors)", m.Method, m.Killed, m.Target, 100*m.KillRate)
		if m.Source != "" {
			s += "; source " + m.Source
		}
		return s
	default:
		return "no physarium.* keys (not written by prune)"
	}
}

// writeEvalTable prints the report: the heading that names the experiment
// and its inputs, then one row per model.
func writeEvalTable(w io.Writer, r *EvalReport) {
	fmt.Fprintf(w, "Evaluation experiment (not surgery figures; nothing was written into any GGUF)\n")
	fmt.Fprintf(w, "text:      %s sha256:%s, %d tokens\n", r.Text.Name, r.Text.SHA256, r.Text.Tokens)
	fmt.Fprintf(w, "settings:  ctx %d, batch %d, %d chunks, %d tokens scored, threads %d\n", r.Ctx, r.Batch, r.Chunks, r.Scored, r.Threads)
	fmt.Fprintf(w, "llama.cpp: ggml %s (commit %s) from %s\n", r.Llama.GGMLVersion, r.Llama.GGMLCommit, r.Llama.Dir)
	if r.Base != nil {
		fmt.Fprintf(w, "base:      %s, PPL %.4f +/- %.5f\n", r.Base.files(), r.Base.PPL, r.Base.PPLErr)
	}
	for i, m := range r.Models {
		fmt.Fprintf(w, "[%d]        %s\n           %s\n", i+1, m.files(), m.identity())
	}
	fmt.Fprintln(w)
	if r.Base == nil {
		fmt.Fprintf(w, "%-4s %-34s %-20s %s\n", "#", "model", "PPL", "tokens/s")
		for i, m := range r.Models {
			fmt.Fprintf(w, "%-4s %-34s %-20s %.0f\n", fmt.Sprintf("[%d]", i+1), clip(m.File, 34), pm(m.PPL, m.PPLErr, 4), m.TokensPerSecond)
		}
	} else {
		fmt.Fprintf(w, "%-4s %-30s %-18s %-18s %-22s %-9s %-9s %-9s %-17s %-15s %s\n",
			"#", "model", "PPL", "PPL/PPL(base)", "mean KLD", "med KLD", "KLD p99", "p99.9", "same top %", "RMS dp %", "mean dp %")
		for i, m := range r.Models {
			d := m.KLD
			fmt.Fprintf(w, "%-4s %-30s %-18s %-18s %-22s %-9.6f %-9.6f %-9.6f %-17s %-15s %s\n",
				fmt.Sprintf("[%d]", i+1), clip(m.File, 30), pm(m.PPL, m.PPLErr, 4), pm(d.PPLRatio, d.PPLRatioErr, 4),
				pm(d.MeanKLD, d.MeanKLDErr, 6), d.MedianKLD, d.KLD99, d.KLD999,
				pm(100*d.SameTop, 100*d.SameTopErr, 3), pm(100*d.RMSDeltaP, 100*d.RMSDeltaPErr, 3), pm(100*d.MeanDeltaP, 100*d.MeanDeltaPErr, 3))
		}
	}
	for _, warn := range r.Warnings {
		fmt.Fprintf(w, "warning: %s\n", warn)
	}
}

func pm(v, e float64, digits int) string {
	return fmt.Sprintf("%.*f ± %.*f", digits, v, digits, e)
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n+1:]
}

// evalProgress shows eval's progress on stderr: a bar (chunks, tokens/s,
// time left) on a terminal, a plain line every few seconds otherwise.
type evalProgress struct {
	w     io.Writer
	p     *mpb.Progress
	bar   *mpb.Bar
	last  time.Time
	state llamacpp.Progress
}

func newEvalProgress(w io.Writer) *evalProgress {
	e := &evalProgress{w: w}
	if isTerminal(w) {
		e.p = mpb.New(mpb.WithOutput(w), mpb.WithWidth(40), mpb.WithAutoRefresh())
	}
	return e
}

func (e *evalProgress) rate() float64 {
	return float64(e.state.Tokens) / max(e.state.Elapsed.Seconds(), 1e-9)
}

func (e *evalProgress) left() string {
	if e.state.Done == 0 {
		return "?"
	}
	per := e.state.Elapsed.Seconds() / float64(e.state.Done)
	return (time.Duration(per*float64(e.state.Total-e.state.Done)) * time.Second).Round(time.Second).String()
}

// update is the llamacpp.Progress callback.
func (e *evalProgress) update(p llamacpp.Progress) {
	e.state = p
	if e.p != nil {
		if e.bar == nil {
			e.bar = e.p.AddBar(int64(p.Total),
				mpb.PrependDecorators(
					decor.Name("eval ", decor.WCSyncSpaceR),
					decor.CountersNoUnit("chunk group %d/%d", decor.WCSyncSpaceR),
				),
				mpb.AppendDecorators(
					decor.Any(func(decor.Statistics) string { return fmt.Sprintf("%.0f tokens/s", e.rate()) }, decor.WCSyncSpace),
					decor.Name(" eta "),
					decor.Any(func(decor.Statistics) string { return e.left() }),
				),
			)
		}
		e.bar.SetCurrent(int64(p.Done))
		return
	}
	now := time.Now()
	if now.Sub(e.last) < 2*time.Second && p.Done < p.Total {
		return
	}
	e.last = now
	fmt.Fprintf(e.w, "eval: %d/%d chunk groups, %d tokens, %.0f tokens/s, %s left\n", p.Done, p.Total, p.Tokens, e.rate(), e.left())
}

func (e *evalProgress) finish(ok bool) {
	if e.p == nil {
		return
	}
	if e.bar != nil {
		if ok {
			e.bar.SetCurrent(int64(e.state.Total))
		}
		e.bar.Abort(false)
	}
	e.p.Wait()
}
