// Package prune is the surgery pipeline: it reads a GGUF model, runs the
// Physarium kernel over every target projection tensor tile by tile, zeroes
// the weights the mould starved, re-encodes only the blocks that changed,
// and writes a new GGUF carrying the physarium.* errata keys.
package prune

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"time"

	"github.com/physarium/physarium-gguf/errata"
	"github.com/physarium/physarium-gguf/gguf"
	"github.com/physarium/physarium-gguf/imatrix"
	"github.com/physarium/physarium-gguf/internal/cpuclock"
	"github.com/physarium/physarium-gguf/kernel"
	"github.com/physarium/physarium-gguf/method"
)

// Options configure a run. The zero value prunes the default targets in
// natural mode with the default kernel constants on every CPU.
type Options struct {
	Selection Selection
	// Params are the kernel constants and mode; the zero value means
	// kernel.DefaultParams().
	Params *kernel.Params
	// Impl chooses the kernel implementation (kernel.Auto by default).
	Impl kernel.Impl
	// Threads is the number of workers that run the kernel and the
	// surgery; decoding (a decoder for every four workers), reading,
	// hashing and writing run beside them. 0 means runtime.NumCPU().
	Threads int
	// DryRun computes and reports without writing a GGUF.
	DryRun bool
	// Overwrite allows replacing an existing output file.
	Overwrite bool
	// SkipUnsupported leaves selected tensors of types that cannot be
	// decoded or encoded untouched instead of failing.
	SkipUnsupported bool
	// Control, when set, is the path of the control twin: a file in which
	// exactly the blocks that the pruned file re-encodes are re-encoded the
	// same way from the original values, with nothing zeroed (ERRATA.md
	// rule 1: it separates the re-encoding cost from the pruning cost).
	Control string
	// Progress, when set, is called from one goroutine after each band.
	Progress func(Progress)
	// Method is the name of the method that decides what dies (a
	// method.Lookup name); "" means DefaultMethod(Imatrix). The plain
	// baselines magnitude and wanda need sparsity mode.
	Method string
	// Imatrix is the path of a llama.cpp importance matrix (GGUF or legacy
	// .dat), needed by activation-flow and wanda, and by the re-encoding
	// of IQ2_XXS, IQ2_XS and IQ1_S targets (quantize.NeedsWeights); the
	// other IQ grid targets are re-encoded with it when it is given,
	// whatever the method.
	Imatrix string
	// ImatrixMissingV1 lets a target without an importance-matrix entry be
	// pruned on |w| alone (v1 food) instead of failing; such tensors are
	// listed in Report.ImatrixMissing and in physarium.imatrix.
	ImatrixMissingV1 bool
	// Rank is how activation-flow ranks in sparsity mode; "" means
	// method.DefaultRank.
	Rank Rank
	// Split says how the output is split into shards; the zero value
	// keeps the input's.
	Split Split
	// AnyShard lets the input name any shard of a split model, not only
	// the first.
	AnyShard bool
	// Calibration is the path of a calibration file with Gram matrices
	// (calibrate --gram), read by the methods that reconstruct survivors
	// (sparsegpt).
	Calibration string
	// Damp is the relative damping of the inverse Hessians,
	// lambda = Damp * mean(diag H); 0 means method.DefaultDamp.
	Damp float64
	// BlockSize is the OBS column block; 0 means obs.DefaultBlockSize.
	BlockSize int
	// Pattern, when not None, asks for an N:M pattern (sparsity mode):
	// every group of M consecutive input weights of a row ends with N
	// zeros, chosen by the method's own score.
	Pattern method.Pattern
	// Reconstruct keeps the method's mask and then reconstructs the
	// survivors from the Calibration file's Grams (method.Reconstructing);
	// for activation-flow eating the full food, the mask is chosen per
	// column block on the weights as the updates left them
	// (method.WithReconstruction).
	Reconstruct bool
	// Retype, when set, writes every target tensor in this type (every
	// block re-encoded from the pruned values) instead of the input's.
	Retype *gguf.Type
	// Factors choose the factors of activation-flow's full food, eaten
	// when Calibration is given without Imatrix; None means
	// method.DefaultFactors.
	Factors method.Factors

	fullFood bool // set by File: the run eats the full food
}

// Progress tells how far a run is.
type Progress struct {
	Tensor      string // the tensor being written
	TensorIndex int    // 0-based index of that tensor
	Tensors     int    // tensors in the file
	Bytes       int64  // tensor bytes written so far
	TotalBytes  int64  // tensor bytes in the file
}

// File prunes the GGUF at in and writes the result to out (unless
// opts.DryRun). It never modifies in, refuses out equal to in, and on any
// error or cancellation leaves neither out nor a temporary file behind.
func File(ctx context.Context, in, out string, opts Options) (*Report, error) {
	start, startCPU := time.Now(), cpuclock.Process()
	if err := checkOptions(in, out, opts); err != nil {
		return nil, err
	}
	params := kernel.DefaultParams()
	if opts.Params != nil {
		params = *opts.Params
	}
	sel, err := opts.Selection.compile()
	if err != nil {
		return nil, err
	}
	model, err := gguf.OpenModel(in, gguf.ModelOptions{AnyShard: opts.AnyShard})
	if err != nil {
		return nil, err
	}
	defer model.Close()
	f := model.View
	layout, err := planOutput(model, out, opts)
	if err != nil {
		return nil, err
	}
	opts = withCalibrationFood(opts)
	m, cfg, err := resolveMethod(ctx, opts, params)
	if err != nil {
		return nil, err
	}
	defer cfg.Calibration.Close()
	r, plans, err := planRun(f, f.Path, out, sel, opts, m, cfg)
	if err != nil {
		return nil, err
	}
	if len(layout.paths) > 1 {
		r.Output, r.Outputs = layout.paths[0], layout.paths
	}
	if opts.Retype != nil {
		layout.types = outputTypes(f, plans)
	}
	workers, err := newWorkers(plans, m, cfg, opts, r)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if err := prepareTargets(ctx, f, plans, m, cfg); err != nil {
		return nil, err
	}
	h := startHash(ctx, model, cancel)
	// The data go straight to their place in the output; the header, whose
	// figures are known only at the end, is written last into the room left
	// for a provisional one (see provisional).
	sinks, err := openSinks(f, r, params, opts, layout)
	if err != nil {
		h.stop()
		return nil, err
	}
	defer sinks.abort()
	if err := run(ctx, f, plans, workers, r, sinks, h.inOrder, opts.Progress); err != nil {
		h.stop()
		return nil, err
	}
	if err := h.sum(ctx, model, r); err != nil {
		return nil, err
	}
	describeRun(r, m, cfg, opts)
	r.finish()
	if err := closeSinks(ctx, f, r, sinks, opts); err != nil {
		return nil, err
	}
	r.Seconds = time.Since(start).Seconds()
	r.CPU.Total = (cpuclock.Process() - startCPU).Seconds()
	return r, nil
}

// checkOptions refuses the options File cannot honour before anything is
// opened: the split sizes, the outputs and the retyping.
func checkOptions(in, out string, opts Options) error {
	if err := opts.Split.check(); err != nil {
		return err
	}
	if err := checkOutputs(in, out, opts); err != nil {
		return err
	}
	return checkRetype(opts)
}

// describeRun records in r the run's pattern, its calibration file, and
// whether and how the survivors were reconstructed.
func describeRun(r *Report, m method.Method, cfg method.Config, opts Options) {
	if !cfg.Pattern.None() {
		r.Pattern = cfg.Pattern.String()
	}
	if c := cfg.Calibration; c != nil {
		r.Calibration = c.Describe()
	}
	if c, ok := m.(method.Calibrated); ok && c.NeedsCalibration() {
		c := cfg.Calibration
		r.Reconstructed = true
		r.Reconstruction = "mask=" + m.Name() + " (adaptive, per column block) " + c.Parameters(method.BlockSizeOf(cfg))
		if opts.Reconstruct && cfg.Factors.None() {
			r.Reconstruction = "mask=" + m.Name() + " (fixed first, then the survivors by OBS) " + c.Parameters(method.BlockSizeOf(cfg))
		}
	}
}

// checkOutputs refuses outputs that would overwrite the input, an existing
// file without opts.Overwrite, or each other.
func checkOutputs(in, out string, opts Options) error {
	if opts.DryRun && opts.Control != "" {
		return errors.New("prune: a dry run writes no control twin")
	}
	if !opts.DryRun {
		if err := checkPaths(in, out, opts.Overwrite); err != nil {
			return err
		}
	}
	if opts.Control != "" {
		if err := checkPaths(in, opts.Control, opts.Overwrite); err != nil {
			return err
		}
		if samePath(out, opts.Control) {
			return fmt.Errorf("prune: the control twin %s is the output file", opts.Control)
		}
	}
	return nil
}

// planRun loads the importance matrix, starts the report and decides the
// fate of every tensor of f.
func planRun(f *gguf.File, in, out string, sel *compiledSelection, opts Options, m method.Method, cfg method.Config) (*Report, []tensorPlan, error) {
	var imat *imatrix.Matrix
	if opts.Imatrix != "" {
		var err error
		if imat, err = imatrix.Load(opts.Imatrix); err != nil {
			return nil, nil, fmt.Errorf("prune: %w", err)
		}
	}
	threads := opts.Threads
	if threads <= 0 {
		threads = runtime.NumCPU()
	}
	r := &Report{
		Input: filepath.Base(in), DryRun: opts.DryRun,
		Version: m.Version(), Method: m.Name(), Importance: m.Importance(cfg),
		Mode: cfg.Params.Mode.String(), Params: cfg.Params.String(),
		Threads: threads, Tile: errata.TileSize, Tiling: errata.Tiling,
		Targets: opts.Selection.Patterns(),
		Rank:    string(method.RankOf(m, cfg)),
	}
	if !opts.DryRun {
		r.Output = out
	}
	plans, err := plan(f, sel, opts.SkipUnsupported, r)
	if err != nil {
		return nil, nil, err
	}
	if len(r.Tensors) == 0 {
		return nil, nil, fmt.Errorf("prune: %s: none of its %d tensors is a target (%d selected ones skipped as unsupported): nothing to prune; see --include, --exclude and --layers", in, len(f.Tensors), len(r.Skipped))
	}
	if opts.Retype != nil {
		if err := retypePlans(f, plans, *opts.Retype, r); err != nil {
			return nil, nil, err
		}
	}
	if imat != nil && m.NeedsImatrix() {
		if err := attachImatrix(plans, imat, opts.ImatrixMissingV1, r); err != nil {
			return nil, nil, err
		}
	}
	weights := imat
	if imat == nil && cfg.Calibration != nil && cfg.Calibration.File != nil {
		weights = &cfg.Calibration.File.Matrix
	}
	weighted, err := attachReencodeWeights(f.Path, plans, weights, r)
	if err != nil {
		return nil, nil, err
	}
	if imat != nil && !m.NeedsImatrix() && !weighted {
		return nil, nil, fmt.Errorf("prune: method %s uses no importance matrix and no target is re-encoded with one (only the IQ grid types are); drop --imatrix or choose %s", m.Name(), method.Names(method.Method.NeedsImatrix))
	}
	if imat != nil {
		r.Imatrix = describeImatrix(imat, r.ImatrixMissing)
	}
	return r, plans, nil
}

// newWorkers returns the run's workers, each with a decider of the method,
// and names the kernel in the report ("none" for a baseline, version 0).
func newWorkers(plans []tensorPlan, m method.Method, cfg method.Config, opts Options, r *Report) ([]*worker, error) {
	k, err := kernel.New(cfg.Impl, cfg.Params)
	if err != nil {
		return nil, fmt.Errorf("prune: %w", err)
	}
	r.Kernel = k.Impl().String()
	if m.Version() == 0 {
		r.Kernel = "none"
	}
	workers := make([]*worker, r.Threads)
	for i := range workers {
		d, err := m.NewDecider(cfg)
		if err != nil {
			return nil, fmt.Errorf("prune: %w", err)
		}
		workers[i] = &worker{plans: plans, control: opts.Control != "", decider: d}
	}
	return workers, nil
}

// runHash is the sha256 of the input, computed from the bytes the run
// reads when the tensors lie in file order (inOrder), otherwise by a pass
// of its own (apart); the shards of a split input each get a pass of their
// own (shards).
type runHash struct {
	inOrder *inputHash
	apart   <-chan hashResult
	shards  <-chan shardsResult
	cancel  context.CancelFunc
}

// startHash starts hashing the input; cancel stops the run's context.
func startHash(ctx context.Context, m *gguf.Model, cancel context.CancelFunc) *runHash {
	h := &runHash{cancel: cancel}
	switch f := m.View; {
	case m.Split():
		h.shards = shardHashes(ctx, m)
	case inOrder(f):
		h.inOrder = newInputHash(f)
	default:
		h.apart = hashFile(ctx, f)
	}
	return h
}

// stop cancels the run and waits for a hash pass of its own to end.
func (h *runHash) stop() {
	h.cancel()
	if h.apart != nil {
		<-h.apart
	}
	if h.shards != nil {
		<-h.shards
	}
}

// sum sets the input's sha256 (of every shard of a split input) in r once
// the run has read every byte.
func (h *runHash) sum(ctx context.Context, m *gguf.Model, r *Report) error {
	var sums []string
	var cpu time.Duration
	switch {
	case h.inOrder != nil:
		// What lies after the last tensor's data.
		var sum string
		err := timed(&cpu, func() (err error) {
			sum, err = h.inOrder.sum(ctx)
			return err
		})
		if err != nil {
			return err
		}
		sums = []string{sum}
	case h.apart != nil:
		res := <-h.apart
		if res.err != nil {
			return res.err
		}
		sums, cpu = []string{res.sum}, res.cpu
	default:
		res := <-h.shards
		if res.err != nil {
			return res.err
		}
		sums, cpu = res.sums, res.cpu
	}
	r.CPU.Hash += cpu.Seconds()
	r.InputSHA256 = sums[0]
	if m.Split() {
		for i, s := range m.Shards {
			r.InputShards = append(r.InputShards, InputShard{Name: filepath.Base(s.Path), SHA256: sums[i]})
		}
	}
	return nil
}

// openSinks creates the output's shards (and the control twin) with room
// in the first shard for the header of the provisional report of r; a dry
// run has no sinks.
func openSinks(f *gguf.File, r *Report, params kernel.Params, opts Options, layout *outputLayout) (*sinks, error) {
	if opts.DryRun {
		return nil, nil
	}
	prov := provisional(r, params, layout)
	s := &sinks{layout: layout}
	keys := [][]gguf.KV{Keys(prov)}
	sets := [][]string{layout.paths}
	if opts.Control != "" {
		keys = append(keys, ControlKeys(prov))
		sets = append(sets, layout.control)
	}
	for i, paths := range sets {
		var set []*gguf.Writer
		for no, o := range paths {
			var w *gguf.Writer
			var err error
			if no == 0 {
				w, err = gguf.CreateDeferred(o, layout.header(f, keys[i], 0), gguf.CreateOptions{Overwrite: opts.Overwrite})
			} else {
				w, err = gguf.Create(o, layout.header(f, nil, no), gguf.CreateOptions{Overwrite: opts.Overwrite})
			}
			if err != nil {
				s.sets = append(s.sets, set)
				s.abort()
				return nil, fmt.Errorf("prune: %w", err)
			}
			w.Hold()
			set = append(set, w)
		}
		s.sets = append(s.sets, set)
	}
	return s, nil
}

// closeSinks writes the final headers of the finished report r: the
// output's, then the control twin's, which names the output's sha256.
// Every shard of the output is complete before the first is renamed into
// place.
func closeSinks(ctx context.Context, f *gguf.File, r *Report, s *sinks, opts Options) error {
	if opts.DryRun {
		return nil
	}
	set := s.sets[0]
	if err := s.closeAll(f, set, Keys(r)); err != nil {
		return err
	}
	if set[0].Moved() {
		headerMisses.Add(1)
	}
	if err := commitAll(set, s.layout.paths); err != nil {
		return err
	}
	if opts.Control == "" {
		return nil
	}
	c, err := s.layout.controlTwin(ctx)
	if err == nil {
		r.Control = c
		if err = s.closeAll(f, s.sets[1], ControlKeys(r)); err == nil {
			err = commitAll(s.sets[1], s.layout.control)
		}
	}
	if err != nil {
		for _, p := range s.layout.paths {
			os.Remove(p)
		}
		return err
	}
	return nil
}

// checkPaths refuses an output that is the input (also through a link) and
// an existing output without overwrite.
func checkPaths(in, out string, overwrite bool) error {
	ai, err1 := filepath.Abs(in)
	ao, err2 := filepath.Abs(out)
	if err1 == nil && err2 == nil && ai == ao {
		return fmt.Errorf("prune: output %s is the input file", out)
	}
	si, err := os.Stat(in)
	if err != nil {
		return fmt.Errorf("prune: %w", err)
	}
	if err := gguf.CheckTarget(out, true); err != nil { // directories, devices, FIFOs, dangling links
		return fmt.Errorf("prune: %w", err)
	}
	so, err := os.Stat(out)
	switch {
	case err == nil && os.SameFile(si, so):
		return fmt.Errorf("prune: output %s is the input file %s", out, in)
	case err == nil && !overwrite:
		return fmt.Errorf("prune: output %s exists (use --force to replace it)", out)
	case err != nil && !errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("prune: %w", err)
	}
	return nil
}

// samePath reports whether a and b name the same file (also through links).
func samePath(a, b string) bool {
	aa, err1 := filepath.Abs(a)
	ab, err2 := filepath.Abs(b)
	if err1 == nil && err2 == nil && aa == ab {
		return true
	}
	sa, err1 := os.Stat(a)
	sb, err2 := os.Stat(b)
	return err1 == nil && err2 == nil && os.SameFile(sa, sb)
}

// adjustProvisional, when set, changes the provisional report (tests use
// it to exercise a header that does not fit its room).
var adjustProvisional func(*Report)

// headerMisses counts the outputs whose final header did not fit the room
// left for the provisional one (for tests).
var headerMisses atomic.Int64

// provisional returns a copy of the planned report r filled with the
// figures the run is expected to produce (the kill rate of the mode, every
// weight processed, every block with a kill re-encoded, a placeholder
// checksum of the right length), from which the output's room for its
// header is sized. The header's length depends on the figures only through
// the digits of the kill counts and percentages in the errata wording, so
// a close guess gives a header of the same padded length; a wrong one only
// costs CloseHeader a copy of the data.
func provisional(r *Report, params kernel.Params, layout *outputLayout) *Report {
	rate := 0.22 // natural mode: about what the calibrated kernel kills
	if params.Mode == kernel.Sparsity {
		rate = params.Sparsity
	}
	p := *r
	p.Tensors = append([]TensorReport(nil), r.Tensors...)
	for i := range p.Tensors {
		t := &p.Tensors[i]
		t.Processed = t.Weights
		t.Killed = uint64(rate * float64(t.Weights))
		t.Reencoded = min(t.Killed, t.Blocks)
	}
	p.InputSHA256 = strings.Repeat("0", sha256.Size*2)
	p.finish()
	if adjustProvisional != nil {
		adjustProvisional(&p)
	}
	if len(layout.control) > 0 {
		sums := make([]string, len(layout.paths))
		for i := range sums {
			sums[i] = p.InputSHA256
		}
		p.Control = layout.newControlTwin(sums)
	}
	return &p
}
