// Package calibrate collects activation statistics of a model's target
// tensors from a real run of llama.cpp over a calibration text: per input
// channel the token count, sum x, sum |x| and sum x^2 (float64), and
// optionally the Gram matrix sum x x^T of every distinct input, and writes
// them as a calibration file (package imatrix) that is also a valid
// llama-imatrix file.
//
// # The run, as llama-imatrix does it
//
// The text (one trailing newline dropped, as llama.cpp's -f does) is
// tokenized with the model's special tokens (BOS); it must hold at least two
// chunks of Ctx tokens. Chunks of Ctx tokens are evaluated from a cleared KV
// cache, the first token of each replaced by BOS when the model adds one,
// max(1, 2048/Ctx) chunks side by side in one batch of min(2048,
// chunks x Ctx) tokens, every token asking for its logits (so the last
// layer computes all of them). Through the graph evaluation callback the
// run reads the input (src[1]) of every MUL_MAT node whose weight (src[0])
// is a target, when it is F32 and at least 16 tokens wide (llama-imatrix's
// rule), and of every MUL_MAT_ID node whose weight is a target: there each
// expert's statistics take only the tokens routed to it (the ids in
// src[2]), one row per (token, chosen expert). The in_sum2 and counts
// written are thus the figures llama-imatrix writes for the same model,
// text and context size.
//
// # Shared inputs
//
// attn_q, attn_k and attn_v multiply one tensor (the attention norm's
// output), ffn_gate and ffn_up another. An input is recognised by its
// graph node: the node's name together with the operation (MUL_MAT or
// MUL_MAT_ID, and for MUL_MAT_ID the ids node's name). Within one graph
// evaluation the second and later weights that read the same node (the
// same tensor, at the same address) do not add it again: a weight seen
// twice for one input, or an input at a new address, starts the next
// evaluation; after discovery such a weight's node is not even asked for,
// so llama.cpp computes it without stopping to call back. Each input's
// statistics are stored once, and every weight names the input it reads
// (calibrate.tensor_inputs).
//
// # Interruption
//
// Once the context is cancelled (or the collection failed), the callback
// asks for the next node and stops the evaluation there, so the rest of
// the decode costs one node per graph evaluation; Run then removes the
// temporary output and returns the context's error.
//
// # Memory
//
// The Gram of an n-wide input takes n(n+1)/2 doubles per matrix, and a
// Gram is complete only once the whole text has run. So that the Grams
// held at once stay near one layer's worth, the run first evaluates one
// batch to learn the inputs (nothing is accumulated then), plans, and runs
// the text once per group of whole consecutive layers whose Grams fit
// PassMemory (by default one layer's worth, or DefaultPassFloor when that
// is more, so that a small model runs in one pass); a layer over the
// budget is split by its inputs, and an input whose Gram alone exceeds
// MaxMemory is refused. Pass 1 collects the moments and the first group's
// Grams over the whole graph; a later pass stops every graph evaluation
// once its group's layers are done (the callback ends the evaluation at
// the next target weight), so pass k of a model of L layers, one layer a
// pass, costs about k/L of a forward pass and the run about L/2 forward
// passes plus the Grams. Each group is written to the output as soon as
// its pass ends, and the next group reuses its memory, so the peak is one
// group's matrices plus llama.cpp's own. The bytes written do not depend
// on the plan: each Gram sums the same rows in the same order whichever
// pass collects it.
package calibrate

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/physarium/physarium-gguf/errata"
	"github.com/physarium/physarium-gguf/gguf"
	"github.com/physarium/physarium-gguf/imatrix"
	"github.com/physarium/physarium-gguf/llamacpp"
)

// Options configures Run.
type Options struct {
	// Model is the GGUF model to run: a file, or the first shard of a
	// model split by llama.cpp's rule (any shard with AnyShard); every
	// shard is checked as gguf.OpenModel checks them.
	Model string
	// AnyShard lets Model name any shard of a split model.
	AnyShard bool
	// Out is the calibration file to write (through a temporary file).
	Out string
	// Force replaces an existing Out.
	Force bool
	// Text is the calibration text as read from its file.
	Text []byte
	// TextName is the text's file name, recorded in the output.
	TextName string
	// Ctx is the chunk length in tokens (512 if 0).
	Ctx int
	// Chunks limits the number of chunks (0: all).
	Chunks int
	// Threads is the number of threads of the forward pass and the Gram.
	Threads int
	// Gram also collects the Gram matrix of every input.
	Gram bool
	// Include, Exclude and Layers choose the targets as prune's flags do.
	Include, Exclude []string
	Layers           string
	// MaxMemory bounds the Gram matrices held at once, in bytes (required
	// with Gram).
	MaxMemory uint64
	// PassMemory is the budget of Grams one pass over the text collects,
	// in bytes, within MaxMemory (0: the largest layer's Grams, or
	// DefaultPassFloor if that is more). More means fewer passes.
	PassMemory uint64
	// Plan, when set, is called once the run is planned, before the
	// forward passes.
	Plan func(Plan)
	// Progress, when set, is called after every chunk group.
	Progress func(Progress)
}

// Plan describes a planned run.
type Plan struct {
	Tokens, Chunks, Ctx, Parallel int
	// Targets and Inputs count the weights and their distinct inputs (the
	// inputs are known before the passes only with Gram).
	Targets, Inputs int
	// GramBytes is the size of all the Gram matrices; PeakGramBytes the
	// largest group held at once; Passes the number of runs over the text.
	GramBytes, PeakGramBytes uint64
	Passes                   int
}

// Progress reports how far Run has come.
type Progress struct {
	// Done and Total count chunk groups over all passes.
	Done, Total int
	// Pass is the current pass (1-based) of Passes.
	Pass, Passes int
	// Tokens is the number of tokens evaluated so far.
	Tokens int
	// Elapsed is the time since the first pass began.
	Elapsed time.Duration
}

// Result summarises a finished run.
type Result struct {
	Plan
	// Elapsed is the time of the passes (tokenizing and loading excluded).
	Elapsed time.Duration
	// Calibration holds the moments and inputs (Grams not kept in memory).
	Calibration *imatrix.Calibration
	// Stopped counts the graph evaluations that passes after the first
	// ended once their layers were done.
	Stopped int
}

// ErrText is wrapped by the refusal of a text too short for two chunks.
var ErrText = errors.New("calibration text too short")

// ErrNoTargets is wrapped when the model has no target tensor.
var ErrNoTargets = errors.New("no target tensors")

// ErrMemory is wrapped when a Gram does not fit MaxMemory.
var ErrMemory = errors.New("over the memory limit")

const batchSize = 2048

// targetSet returns the selection and the target tensors (name to input
// width) of the model whose tensors f lists, using errata's rules as prune
// does.
func targetSet(o Options, f *gguf.File) (*errata.Targets, map[string]int, error) {
	sel, entry, err := errata.ParseTargets(errata.TargetEntries(o.Include, o.Exclude, o.Layers))
	if err != nil {
		return nil, nil, fmt.Errorf("calibrate: target pattern %q: %w", entry, err)
	}
	widths := map[string]int{}
	for _, t := range f.Tensors {
		if len(t.Shape) >= 2 && sel.Match(t.Name) {
			widths[t.Name] = int(t.Shape[0])
		}
	}
	if len(widths) == 0 {
		return nil, nil, fmt.Errorf("calibrate: %s: %w (the selection matches none of its %d tensors)", o.Model, ErrNoTargets, len(f.Tensors))
	}
	return sel, widths, nil
}

// Run calibrates o.Model over o.Text and writes o.Out.
func Run(ctx context.Context, lib *llamacpp.Library, o Options) (*Result, error) {
	if err := checkRunOptions(&o); err != nil {
		return nil, err
	}
	mf, err := openModel(o)
	if err != nil {
		return nil, err
	}
	sel, widths, err := targetSet(o, mf.view)
	if err != nil {
		return nil, err
	}
	model, err := lib.LoadModel(mf.first)
	if err != nil {
		return nil, fmt.Errorf("calibrate: %w", err)
	}
	defer model.Close()
	tokens, err := tokenizeText(model, o)
	if err != nil {
		return nil, err
	}
	nChunk := len(tokens) / o.Ctx
	if o.Chunks > 0 {
		nChunk = min(nChunk, o.Chunks)
	}
	nSeq := max(1, batchSize/o.Ctx)
	nBatch := min(batchSize, nSeq*o.Ctx)
	col := newCollector(ctx, sel, widths, o.Threads)
	lctx, err := model.NewContext(llamacpp.ContextParams{NCtx: nSeq * o.Ctx, NBatch: nBatch, NSeq: nSeq, Threads: o.Threads, OnTensor: col.callback})
	if err != nil {
		return nil, fmt.Errorf("calibrate: %w", err)
	}
	defer lctx.Close()
	batch, err := llamacpp.NewBatch(nBatch)
	if err != nil {
		return nil, fmt.Errorf("calibrate: %w", err)
	}
	defer batch.Close()
	r := &runner{o: o, ctx: ctx, lctx: lctx, batch: batch, col: col, tokens: tokens, nChunk: nChunk, nSeq: nSeq, nBatch: nBatch,
		bos: model.BOS, addBOS: model.AddBOS}
	plan, groups, err := r.plan()
	if err != nil {
		return nil, err
	}
	cal := newCalibration(o, lib, col, nChunk, mf)
	h, err := cal.Header()
	if err != nil {
		return nil, err
	}
	w, err := gguf.Create(o.Out, h, gguf.CreateOptions{Overwrite: o.Force})
	if err != nil {
		return nil, fmt.Errorf("calibrate: %w", err)
	}
	res := &Result{Plan: plan, Calibration: cal}
	start := time.Now()
	err = r.passes(groups, cal, w, start)
	res.Elapsed = time.Since(start)
	res.Stopped = col.stopped
	if err != nil {
		w.Abort()
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, fmt.Errorf("calibrate: %w", err)
	}
	return res, nil
}

// checkRunOptions fills in the default context and refuses bad settings,
// an unusable text and an output that cannot be written, before any work.
func checkRunOptions(o *Options) error {
	if o.Ctx == 0 {
		o.Ctx = 512
	}
	switch {
	case o.Ctx < 16:
		return fmt.Errorf("calibrate: ctx %d: want at least 16 (llama-imatrix skips batches of fewer tokens)", o.Ctx)
	case o.Threads < 1:
		return fmt.Errorf("calibrate: threads %d: want at least 1", o.Threads)
	case o.Chunks < 0:
		return fmt.Errorf("calibrate: chunks %d: want 0 (all) or more", o.Chunks)
	case o.Gram && o.MaxMemory == 0:
		return fmt.Errorf("calibrate: the Gram needs a memory limit")
	}
	if err := llamacpp.CheckText(o.TextName, o.Text); err != nil {
		return fmt.Errorf("calibrate: %w", err)
	}
	if err := gguf.CheckTarget(o.Out, o.Force); err != nil {
		return fmt.Errorf("calibrate: %w", err)
	}
	return checkWritableDir(o.Out)
}

// tokenizeText tokenizes the text (without one trailing newline) with the
// model and refuses tokens outside its vocabulary or fewer than two chunks.
func tokenizeText(model *llamacpp.Model, o Options) ([]int32, error) {
	text := o.Text
	if text[len(text)-1] == '\n' {
		text = text[:len(text)-1]
	}
	tokens, err := model.Tokenize(text, true, false)
	if err != nil {
		return nil, fmt.Errorf("calibrate: %s: %w", o.TextName, err)
	}
	for i, t := range tokens {
		if t < 0 || int(t) >= model.NVocab {
			return nil, fmt.Errorf("calibrate: %s: token %d at %d outside the vocabulary of %s", o.TextName, t, i, o.Model)
		}
	}
	if len(tokens) < 2*o.Ctx {
		return nil, fmt.Errorf("calibrate: %s tokenizes to %d tokens, fewer than two chunks of %d (as llama-imatrix, at least %d): %w",
			o.TextName, len(tokens), o.Ctx, 2*o.Ctx, ErrText)
	}
	return tokens, nil
}

// plan learns the target inputs from one batch (nothing accumulates), then
// splits them into the passes the memory limit allows and reports the plan.
func (r *runner) plan() (Plan, [][]*input, error) {
	o, col := r.o, r.col
	col.mode = modeDiscover
	if err := r.probe(); err != nil {
		return Plan{}, nil, err
	}
	if len(col.inputs) == 0 {
		return Plan{}, nil, fmt.Errorf("calibrate: %s: %w: no MUL_MAT of a target tensor ran in llama.cpp's graph", o.Model, ErrNoTargets)
	}
	plan := Plan{Tokens: r.nChunk * o.Ctx, Chunks: r.nChunk, Ctx: o.Ctx, Parallel: r.nSeq, Targets: len(col.targets), Inputs: len(col.inputs), Passes: 1}
	groups := [][]*input{col.inputs}
	if o.Gram {
		var err error
		if groups, err = planGroups(col.inputs, o.PassMemory, o.MaxMemory); err != nil {
			return Plan{}, nil, fmt.Errorf("calibrate: %s: %w", o.Model, err)
		}
		plan.Passes = len(groups)
		for _, g := range groups {
			s := groupBytes(g)
			plan.GramBytes += s
			plan.PeakGramBytes = max(plan.PeakGramBytes, s)
		}
	}
	if o.Plan != nil {
		o.Plan(plan)
	}
	return plan, groups, nil
}

// newCalibration describes the file to write: the run's provenance, every
// input the targets read and every target's moments, still empty.
func newCalibration(o Options, lib *llamacpp.Library, col *collector, nChunk int, mf *modelFiles) *imatrix.Calibration {
	textSum := sha256.Sum256(o.Text)
	cal := &imatrix.Calibration{
		Matrix:  imatrix.Matrix{Format: imatrix.GGUF, Datasets: []string{o.TextName}, ChunkCount: nChunk, ChunkSize: o.Ctx},
		Tensors: map[string]*imatrix.Moments{},
		Info: imatrix.Info{Text: filepath.Base(o.TextName), TextSHA256: hex.EncodeToString(textSum[:]), Model: mf.names,
			ModelSHA256: mf.sums, Llama: lib.GGMLVersion + " " + lib.GGMLCommit, Ctx: o.Ctx, Chunks: nChunk,
			Tokens: uint64(nChunk * o.Ctx), Gram: o.Gram},
	}
	for _, in := range col.inputs {
		cal.Inputs = append(cal.Inputs, &imatrix.Input{Name: in.name, Node: in.node, Width: in.a.width, Mats: in.a.mats})
	}
	for _, t := range col.targetOrder {
		cal.Tensors[t.name] = &imatrix.Moments{Name: t.name, Input: t.in.name, Width: t.in.a.width, Mats: t.in.a.mats}
	}
	return cal
}

// checkWritableDir refuses an output whose directory cannot take a file,
// before the run.
func checkWritableDir(out string) error {
	dir := filepath.Dir(out)
	f, err := os.CreateTemp(dir, ".calibrate-check-*")
	if err != nil {
		return fmt.Errorf("calibrate: cannot write %s: %w", out, err)
	}
	name := f.Name()
	f.Close()
	return os.Remove(name)
}

func groupBytes(g []*input) uint64 {
	var s uint64
	for _, in := range g {
		s += in.gramBytes()
	}
	return s
}

// DefaultPassFloor is the least Gram memory a pass may hold by default:
// on a model whose layers need less, several layers share a pass (a pass
// costs up to a forward pass over the text).
const DefaultPassFloor = 256 << 20

// planGroups splits the inputs, in order, into groups of whole layers
// whose Grams fit budget (0: the largest layer's, at least
// DefaultPassFloor), within limit; a layer over the budget is split by its
// inputs. An input over limit is refused.
func planGroups(inputs []*input, budget, limit uint64) ([][]*input, error) {
	var layers [][]*input
	for i, in := range inputs {
		if b := in.gramBytes(); b > limit {
			return nil, fmt.Errorf("the Gram of %s (%d wide, %d matrices) needs %s, %w of %s (--max-memory)",
				in.name, in.a.width, in.a.mats, FormatBytes(b), ErrMemory, FormatBytes(limit))
		}
		if i == 0 || in.layer != inputs[i-1].layer {
			layers = append(layers, nil)
		}
		layers[len(layers)-1] = append(layers[len(layers)-1], in)
	}
	if budget == 0 {
		budget = DefaultPassFloor
		for _, l := range layers {
			budget = max(budget, groupBytes(l))
		}
	}
	budget = min(budget, limit)
	var groups [][]*input
	var cur []*input
	add := func(ins []*input) {
		if len(cur) > 0 && groupBytes(cur)+groupBytes(ins) > budget {
			groups = append(groups, cur)
			cur = nil
		}
		cur = append(cur, ins...)
	}
	for _, l := range layers {
		if groupBytes(l) <= budget {
			add(l)
			continue
		}
		for _, in := range l {
			add([]*input{in})
		}
	}
	return append(groups, cur), nil
}

// FormatBytes prints a size in binary units ("1.5 GiB").
func FormatBytes(b uint64) string {
	const unit = 1024
	if b < unit {
		return fmt.Sprintf("%d B", b)
	}
	v, u := float64(b), 0
	for v >= unit && u < 5 {
		v /= unit
		u++
	}
	return fmt.Sprintf("%.1f %ciB", v, "KMGTPE"[u-1])
}

// ParseBytes parses a size such as "512M", "2G", "1.5GiB" or "1000000"
// (binary units).
func ParseBytes(s string) (uint64, error) {
	t := strings.TrimSpace(strings.ToUpper(s))
	t = strings.TrimSuffix(strings.TrimSuffix(t, "B"), "I")
	mult := 1.0
	if t != "" {
		if i := strings.IndexByte("KMGT", t[len(t)-1]); i >= 0 {
			mult = math.Pow(1024, float64(i+1))
			t = t[:len(t)-1]
		}
	}
	var v float64
	if _, err := fmt.Sscanf(t, "%g", &v); err != nil || v <= 0 || math.IsInf(v, 0) || v*mult >= 1<<63 {
		return 0, fmt.Errorf("calibrate: size %q: want a positive number with an optional K, M, G or T suffix", s)
	}
	return uint64(v * mult), nil
}

// runner drives the forward passes.
type runner struct {
	o             Options
	ctx           context.Context
	lctx          *llamacpp.Context
	batch         *llamacpp.Batch
	col           *collector
	tokens        []int32
	nChunk, nSeq  int
	nBatch        int
	bos           int32
	addBOS        bool
	done, total   int
	evaluated     int
	pass, npasses int
	start         time.Time
}

// decode evaluates tokens[start:start+n] of nSeq chunks as llama-imatrix.
func (r *runner) group(i int) error {
	ctxN := r.o.Ctx
	start := i * ctxN
	nSeqBatch := min(r.nSeq, r.nChunk-i)
	r.lctx.Clear()
	numBatches := (ctxN + r.nBatch - 1) / r.nBatch
	buf := make([]int32, 0, r.nBatch)
	for j := range numBatches {
		if err := r.ctx.Err(); err != nil {
			return err
		}
		batchStart := start + j*r.nBatch
		size := min(start+ctxN-batchStart, r.nBatch)
		r.batch.Reset()
		for seq := range nSeqBatch {
			s := batchStart + seq*ctxN
			buf = append(buf[:0], r.tokens[s:s+size]...)
			if r.addBOS && j == 0 {
				buf[0] = r.bos
			}
			if _, err := r.batch.Add(buf, j*r.nBatch, seq, 0); err != nil {
				return fmt.Errorf("calibrate: %w", err)
			}
		}
		if err := r.lctx.Decode(r.batch); err != nil {
			if cerr := r.col.err; cerr != nil {
				return cerr
			}
			return fmt.Errorf("calibrate: %w", err)
		}
		if r.col.err != nil {
			return r.col.err
		}
		r.evaluated += nSeqBatch * size
	}
	return nil
}

// probe evaluates the first chunk (or up to one batch of it) with the
// collector discovering the inputs.
func (r *runner) probe() error {
	n := min(r.o.Ctx, r.nBatch)
	buf := append([]int32{}, r.tokens[:n]...)
	if r.addBOS {
		buf[0] = r.bos
	}
	r.lctx.Clear()
	r.batch.Reset()
	if _, err := r.batch.Add(buf, 0, 0, 0); err != nil {
		return fmt.Errorf("calibrate: %w", err)
	}
	if err := r.lctx.Decode(r.batch); err != nil {
		if r.col.err != nil {
			return r.col.err
		}
		return fmt.Errorf("calibrate: %w", err)
	}
	return r.col.err
}

// passes runs the text once per group and streams the results to w.
func (r *runner) passes(groups [][]*input, cal *imatrix.Calibration, w *gguf.Writer, start time.Time) error {
	r.npasses = len(groups)
	r.total = len(groups) * ((r.nChunk + r.nSeq - 1) / r.nSeq)
	r.start = start
	byName := map[string]*imatrix.Input{}
	for _, in := range cal.Inputs {
		byName[in.Name] = in
	}
	var arena []float64
	if r.o.Gram {
		var longest uint64
		for _, g := range groups {
			longest = max(longest, groupBytes(g))
		}
		arena = make([]float64, longest/8)
	}
	for p, g := range groups {
		r.pass = p + 1
		r.col.startPass(p == 0, r.o.Gram, g, arena)
		for i := 0; i < r.nChunk; i += r.nSeq {
			if err := r.group(i); err != nil {
				return err
			}
			r.done++
			if r.o.Progress != nil {
				r.o.Progress(Progress{Done: r.done, Total: r.total, Pass: r.pass, Passes: len(groups), Tokens: r.evaluated, Elapsed: time.Since(r.start)})
			}
		}
		if err := r.col.check(); err != nil {
			return err
		}
		if p == 0 {
			for _, t := range r.col.targetOrder {
				a := t.in.a
				m := cal.Tensors[t.name]
				m.Count, m.Sum, m.Abs, m.Sq, m.Sq32 = a.count, a.sum, a.abs, a.sq, a.sq32
			}
			if err := cal.WriteMoments(w); err != nil {
				return fmt.Errorf("calibrate: %w", err)
			}
			for _, in := range r.col.inputs {
				byName[in.name].Count = in.a.count
			}
		}
		if r.o.Gram {
			for _, in := range g {
				if err := checkGramCount(in, byName[in.name]); err != nil {
					return err
				}
				ci := byName[in.name]
				ci.Gram, ci.Count = in.a.g, in.a.gcount
				err := ci.WriteGram(w)
				ci.Gram = nil
				in.a.stopGram()
				if err != nil {
					return fmt.Errorf("calibrate: %w", err)
				}
			}
		}
	}
	return nil
}

// checkGramCount confirms that a pass's Gram took as many rows, matrix by
// matrix, as the moments of pass 1: a pass that stopped its evaluations too
// early, or saw other routing, would show here.
func checkGramCount(in *input, ci *imatrix.Input) error {
	for k, n := range in.a.gcount {
		if n != ci.Count[k] {
			return fmt.Errorf("calibrate: the Gram of %s (matrix %d) summed %v rows, its moments %v", in.name, k, n, ci.Count[k])
		}
	}
	return nil
}

// f32s converts little-endian float32 bytes to float64 values.
func f32s(dst []float64, b []byte) {
	for i := range dst {
		dst[i] = float64(math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:])))
	}
}
