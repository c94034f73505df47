package cli

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"syscall"
	"time"

	ucli "github.com/urfave/cli/v2"
	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"

	"github.com/physarium/physarium-gguf/calibrate"
	"github.com/physarium/physarium-gguf/llamacpp"
)

func (a *App) calibrateCommand() *ucli.Command {
	return &ucli.Command{
		Name:      "calibrate",
		Usage:     "collect activation statistics (and Gram matrices) through llama.cpp",
		ArgsUsage: "MODEL OUT.gguf",
		Description: `Runs MODEL in llama.cpp over --text, chunk by chunk as llama-imatrix does,
and collects for every target tensor's input, per input channel, the token
count, sum x, sum |x| and sum x^2 (float64); with --gram also the Gram matrix
sum x x^T of every distinct input (F64, packed lower triangle). MoE experts
count only the tokens routed to them.

OUT.gguf is also a valid llama-imatrix file (the same in_sum2 and counts
llama-imatrix writes): llama-quantize --imatrix and prune --imatrix read it.
inspect shows it. The Gram needs n(n+1)/2 doubles per n-wide input, and
is complete only at the end of the text: so that memory stays near one
layer's Grams, the text is run once per group of layers whose Grams fit
--max-memory (by default one layer's worth, or 256 MiB when that is more),
each pass after the first stopping after its layers, and each group's
Grams are written out when its pass ends. A larger --max-memory means
fewer passes. The plan is printed first; an input whose Gram alone does
not fit is refused.

A model split into shards (llama-gguf-split's name-NNNNN-of-MMMMM.gguf) is
given by its first shard, or by any shard with --split; every shard is
checked, and calibrate.model_sha256 lists every shard's sha256.

llama.cpp is loaded at run time from --llama-lib DIR or $` + llamacpp.LibEnv + `.

Examples:
  physarium-gguf calibrate --llama-lib DIR --text calib.txt --ctx 128 model.gguf calib.gguf
  physarium-gguf calibrate --text calib.txt --gram --max-memory 4G model.gguf calib.gguf`,
		Flags: []ucli.Flag{
			&ucli.StringFlag{Name: "text", Aliases: []string{"f"}, Usage: "the calibration text (required; one trailing newline is dropped, as llama-imatrix -f)"},
			&ucli.IntFlag{Name: "ctx", Aliases: []string{"c"}, Value: 512, Usage: "tokens per chunk, as llama-imatrix -c"},
			&ucli.IntFlag{Name: "chunks", Value: 0, Usage: "use at most N chunks (0: all)"},
			&ucli.IntFlag{Name: "threads", Aliases: []string{"t"}, Value: runtime.NumCPU(), Usage: "threads for the forward pass and the Gram"},
			&ucli.BoolFlag{Name: "gram", Usage: "also collect the Gram matrix X^T X of every input (for SparseGPT)"},
			&ucli.StringSliceFlag{Name: "include", Usage: "also target tensors matching this regular expression (repeatable)"},
			&ucli.StringSliceFlag{Name: "exclude", Usage: "do not target tensors matching this regular expression (repeatable)"},
			&ucli.StringFlag{Name: "layers", Usage: "target only these blocks, e.g. 0-3,7"},
			&ucli.StringFlag{Name: "max-memory", Usage: "the most the Gram matrices may take at once, e.g. 4G; more means fewer passes over the text (default: one layer's Grams, at least 256M, at most half the machine's memory)"},
			&ucli.StringFlag{Name: "llama-lib", Usage: "directory of llama.cpp's shared libraries (default $" + llamacpp.LibEnv + ")"},
			&ucli.BoolFlag{Name: "force", Usage: "replace an existing OUT.gguf"},
			&ucli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "no plan, progress or summary"},
			splitFlag,
		},
		Action: a.calibrate,
	}
}

// halfMemory returns half the machine's RAM, or 0 when unknown.
func halfMemory() uint64 {
	var si syscall.Sysinfo_t
	if err := syscall.Sysinfo(&si); err != nil {
		return 0
	}
	return uint64(si.Totalram) * uint64(si.Unit) / 2
}

func (a *App) calibrate(c *ucli.Context) error {
	args := c.Args().Slice()
	for _, s := range args {
		if strings.HasPrefix(s, "-") && len(s) > 1 {
			return usageErrorf("calibrate: flag %s after the files: flags must come before MODEL OUT.gguf", s)
		}
	}
	if len(args) != 2 {
		return usageErrorf("calibrate: want MODEL OUT.gguf, got %d arguments (run '%s calibrate --help')", len(args), Name)
	}
	textPath := c.String("text")
	if textPath == "" {
		return usageErrorf("calibrate: --text FILE is required (run '%s calibrate --help')", Name)
	}
	ctxN, chunks, threads := c.Int("ctx"), c.Int("chunks"), c.Int("threads")
	switch {
	case ctxN < 16:
		return usageErrorf("calibrate: --ctx %d: want at least 16", ctxN)
	case chunks < 0:
		return usageErrorf("calibrate: --chunks %d: want 0 (all) or more", chunks)
	case threads < 1:
		return usageErrorf("calibrate: --threads %d: want at least 1", threads)
	}
	limit, budget := halfMemory(), uint64(0)
	if s := c.String("max-memory"); s != "" {
		v, err := calibrate.ParseBytes(s)
		if err != nil {
			return usageErrorf("calibrate: --max-memory: %v", err)
		}
		limit, budget = v, v
	}
	if limit == 0 {
		limit = 1 << 30
	}
	libDir, err := llamacpp.LibDir(c.String("llama-lib"))
	if err != nil {
		return &ExitError{Code: ExitUsage, Err: fmt.Errorf("calibrate: %w", err)}
	}
	text, err := os.ReadFile(textPath)
	if err != nil {
		return fmt.Errorf("calibrate: text %w", err)
	}
	lib, err := llamacpp.Load(libDir)
	if err != nil {
		return err
	}
	quiet := c.Bool("quiet")
	o := calibrate.Options{Model: args[0], AnyShard: c.Bool("split"), Out: args[1], Force: c.Bool("force"), Text: text, TextName: textPath,
		Ctx: ctxN, Chunks: chunks, Threads: threads, Gram: c.Bool("gram"), Include: c.StringSlice("include"),
		Exclude: c.StringSlice("exclude"), Layers: c.String("layers"), MaxMemory: limit, PassMemory: budget}
	var bar *calibrateProgress
	if !quiet {
		o.Plan = func(p calibrate.Plan) {
			fmt.Fprintf(a.Stderr, "calibrate: %d chunks of %d tokens (%d side by side), %d targets reading %d inputs\n",
				p.Chunks, p.Ctx, p.Parallel, p.Targets, p.Inputs)
			if o.Gram {
				fmt.Fprintf(a.Stderr, "calibrate: Gram matrices %s in all, %s at once (limit %s), %d pass(es) over the text\n",
					calibrate.FormatBytes(p.GramBytes), calibrate.FormatBytes(p.PeakGramBytes), calibrate.FormatBytes(limit), p.Passes)
			}
		}
		bar = &calibrateProgress{w: a.Stderr}
		o.Progress = bar.update
	}
	res, err := calibrate.Run(c.Context, lib, o)
	if bar != nil {
		bar.finish(err == nil)
	}
	if err != nil {
		return err
	}
	if !quiet {
		fmt.Fprintf(a.Stderr, "calibrate: wrote %s: %d tensors, %d inputs, %d tokens in %s (%.0f tokens/s)\n", args[1],
			res.Targets, res.Inputs, res.Tokens*res.Passes, res.Elapsed.Round(time.Millisecond),
			float64(res.Tokens*res.Passes)/max(res.Elapsed.Seconds(), 1e-9))
	}
	return nil
}

// calibrateProgress shows calibrate's progress on stderr: a bar (chunk
// groups over all passes, tokens/s, time left) on a terminal, a plain line
// every few seconds otherwise.
type calibrateProgress struct {
	w    io.Writer
	p    *mpb.Progress
	bar  *mpb.Bar
	last time.Time
	cur  calibrate.Progress
}

func (b *calibrateProgress) speed() string {
	return fmt.Sprintf("%.0f tokens/s", float64(b.cur.Tokens)/max(b.cur.Elapsed.Seconds(), 1e-9))
}

func (b *calibrateProgress) eta() string {
	if b.cur.Done == 0 {
		return "?"
	}
	rest := b.cur.Elapsed.Seconds() / float64(b.cur.Done) * float64(b.cur.Total-b.cur.Done)
	return (time.Duration(rest) * time.Second).String()
}

func (b *calibrateProgress) update(p calibrate.Progress) {
	b.cur = p
	if b.p == nil && b.last.IsZero() && isTerminal(b.w) {
		b.p = mpb.New(mpb.WithOutput(b.w), mpb.WithWidth(40), mpb.WithAutoRefresh())
		b.bar = b.p.AddBar(int64(p.Total),
			mpb.PrependDecorators(
				decor.Name("calibrate ", decor.WCSyncSpaceR),
				decor.Any(func(decor.Statistics) string {
					return fmt.Sprintf("pass %d/%d, group %d/%d", b.cur.Pass, b.cur.Passes, b.cur.Done, b.cur.Total)
				}, decor.WCSyncSpaceR),
			),
			mpb.AppendDecorators(
				decor.Any(func(decor.Statistics) string { return b.speed() }, decor.WCSyncSpace),
				decor.Name(" left "),
				decor.Any(func(decor.Statistics) string { return b.eta() }),
			))
	}
	if b.bar != nil {
		b.bar.SetCurrent(int64(p.Done))
		return
	}
	if time.Since(b.last) < 2*time.Second && p.Done < p.Total {
		return
	}
	b.last = time.Now()
	fmt.Fprintf(b.w, "calibrate: pass %d/%d, %d/%d chunk groups, %d tokens, %s, %s left\n", p.Pass, p.Passes, p.Done, p.Total, p.Tokens, b.speed(), b.eta())
}

func (b *calibrateProgress) finish(ok bool) {
	if b.p == nil {
		return
	}
	if ok {
		b.bar.SetCurrent(int64(b.cur.Total))
	}
	b.bar.Abort(false)
	b.p.Wait()
}
