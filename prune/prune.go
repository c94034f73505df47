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
	"sync"
	"sync/atomic"
	"time"

	"github.com/physarium/physarium-gguf/gguf"
	"github.com/physarium/physarium-gguf/imatrix"
	"github.com/physarium/physarium-gguf/kernel"
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
	// Method decides what dies; "" means MagnitudeFlow, or ActivationFlow
	// when Imatrix is set. Magnitude and Wanda are the plain baselines and
	// need sparsity mode.
	Method Method
	// Imatrix is the path of a llama.cpp importance matrix (GGUF or legacy
	// .dat), needed by ActivationFlow and Wanda.
	Imatrix string
	// ImatrixMissingV1 lets a target without an importance-matrix entry be
	// pruned on |w| alone (v1 food) instead of failing; such tensors are
	// listed in Report.ImatrixMissing and in physarium.imatrix.
	ImatrixMissingV1 bool
	// Rank is how ActivationFlow ranks in sparsity mode; "" means
	// DefaultRank (RankFlowShare).
	Rank Rank
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
	start := time.Now()
	if opts.DryRun && opts.Control != "" {
		return nil, errors.New("prune: a dry run writes no control twin")
	}
	if !opts.DryRun {
		if err := checkPaths(in, out, opts.Overwrite); err != nil {
			return nil, err
		}
	}
	if opts.Control != "" {
		if err := checkPaths(in, opts.Control, opts.Overwrite); err != nil {
			return nil, err
		}
		if samePath(out, opts.Control) {
			return nil, fmt.Errorf("prune: the control twin %s is the output file", opts.Control)
		}
	}
	params := kernel.DefaultParams()
	if opts.Params != nil {
		params = *opts.Params
	}
	threads := opts.Threads
	if threads <= 0 {
		threads = runtime.NumCPU()
	}
	sel, err := opts.Selection.compile()
	if err != nil {
		return nil, err
	}
	f, err := gguf.Open(in)
	if err != nil {
		return nil, err
	}
	defer f.Close()

	method := opts.Method
	if method == "" {
		method = MagnitudeFlow
		if opts.Imatrix != "" {
			method = ActivationFlow
		}
	}
	if _, err := ParseMethod(string(method)); err != nil {
		return nil, err
	}
	rank, err := ParseRank(string(opts.Rank))
	if err != nil {
		return nil, err
	}
	if method.NeedsImatrix() && opts.Imatrix == "" {
		return nil, fmt.Errorf("prune: method %s needs an importance matrix (--imatrix)", method)
	}
	if !method.NeedsImatrix() && opts.Imatrix != "" {
		return nil, fmt.Errorf("prune: method %s uses no importance matrix; drop --imatrix or choose activation-flow or wanda", method)
	}
	if method.Version() == 0 && params.Mode != kernel.Sparsity {
		return nil, fmt.Errorf("prune: the %s baseline needs sparsity mode (--mode sparsity --sparsity S)", method)
	}
	mp := &methodPlan{method: method, rank: rank, mode: params.Mode, sparsity: params.Sparsity}
	mp.natural = params
	mp.natural.Mode, mp.natural.Sparsity = kernel.Natural, 0
	var imat *imatrix.Matrix
	if opts.Imatrix != "" {
		if imat, err = imatrix.Load(opts.Imatrix); err != nil {
			return nil, fmt.Errorf("prune: %w", err)
		}
	}

	r := &Report{
		Input: filepath.Base(in), DryRun: opts.DryRun,
		Version: method.Version(), Method: string(method), Importance: Importance(method, params.Mode, rank),
		Mode: params.Mode.String(), Params: params.String(),
		Threads: threads, Tile: TileSize, Tiling: "non-overlapping",
		Targets: opts.Selection.Patterns(),
	}
	if !opts.DryRun {
		r.Output = out
	}
	plans, err := plan(f, sel, opts.SkipUnsupported, r)
	if err != nil {
		return nil, err
	}
	if len(r.Tensors) == 0 {
		return nil, fmt.Errorf("prune: %s: none of its %d tensors is a target (%d selected ones skipped as unsupported): nothing to prune; see --include, --exclude and --layers", in, len(f.Tensors), len(r.Skipped))
	}
	if imat != nil {
		if err := attachImatrix(plans, imat, opts.ImatrixMissingV1, r); err != nil {
			return nil, err
		}
		r.Imatrix = describeImatrix(imat, r.ImatrixMissing)
	}
	if method == ActivationFlow && params.Mode == kernel.Sparsity {
		r.Rank = string(rank)
	}
	workers := make([]*worker, threads)
	for i := range workers {
		k, err := kernel.New(opts.Impl, params)
		if err != nil {
			return nil, fmt.Errorf("prune: %w", err)
		}
		workers[i] = &worker{f: f, k: k, ps: plans, control: opts.Control != "", m: mp}
		if method == ActivationFlow && params.Mode == kernel.Sparsity && rank.usesMould() && rank != RankTile {
			if workers[i].kn, err = kernel.New(opts.Impl, mp.natural); err != nil {
				return nil, fmt.Errorf("prune: %w", err)
			}
		}
		r.Kernel = k.Impl().String()
	}
	if method.Version() == 0 {
		r.Kernel = "none"
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if method == Magnitude {
		if err := magnitudeThresholds(ctx, f, plans, params.Sparsity); err != nil {
			return nil, err
		}
	}
	// The input's sha256 comes from the bytes the run reads, when the
	// tensors lie in file order; otherwise from a pass of its own.
	var ih *inputHash
	var hashed <-chan hashResult
	if inOrder(f) {
		ih = newInputHash(f)
	} else {
		hashed = hashFile(ctx, f)
	}
	stopHash := func() {
		cancel()
		if hashed != nil {
			<-hashed
		}
	}

	// The data go straight to their place in the output; the header, whose
	// figures are known only at the end, is written last into the room left
	// for a provisional one (see provisional).
	var sinks []*gguf.Writer
	if !opts.DryRun {
		prov := provisional(r, params, opts.Control, out)
		keys := [][]gguf.KV{Keys(prov)}
		outs := []string{out}
		if opts.Control != "" {
			keys = append(keys, ControlKeys(prov))
			outs = append(outs, opts.Control)
		}
		for i, o := range outs {
			w, err := gguf.CreateDeferred(o, outputHeader(f, keys[i]), gguf.CreateOptions{Overwrite: opts.Overwrite})
			if err != nil {
				stopHash()
				return nil, fmt.Errorf("prune: %w", err)
			}
			defer w.Abort()
			sinks = append(sinks, w)
		}
	}
	if err := run(ctx, f, plans, workers, r, sinks, ih, opts.Progress); err != nil {
		stopHash()
		return nil, err
	}
	var h hashResult
	if ih != nil {
		h.sum, h.err = ih.sum(ctx)
	} else {
		h = <-hashed
	}
	if h.err != nil {
		return nil, h.err
	}
	r.InputSHA256 = h.sum
	r.finish()
	if !opts.DryRun {
		if err := sinks[0].CloseHeader(outputHeader(f, Keys(r))); err != nil {
			return nil, fmt.Errorf("prune: %w", err)
		}
		if sinks[0].Moved() {
			headerMisses.Add(1)
		}
		if opts.Control != "" {
			sum, err := fileSHA256(ctx, out)
			if err == nil {
				r.Control = &ControlTwin{Path: opts.Control, Of: filepath.Base(out), OfSHA256: sum}
				err = sinks[1].CloseHeader(outputHeader(f, ControlKeys(r)))
			}
			if err != nil {
				os.Remove(out)
				return nil, fmt.Errorf("prune: %w", err)
			}
		}
	}
	r.Seconds = time.Since(start).Seconds()
	return r, nil
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

// run streams every tensor's data, in file order, to data: copies of the
// non-target tensors and the pruned bands of the targets, processed by the
// workers concurrently and written back in order.
//
// run returns only when every goroutine it started has finished, so that
// the caller may close f (unmap it) at once.
//
// The producer reads every byte of tensor data once, in file order: each
// target band, and the copied tensors in chunks of copyChunk bytes, which
// pass the workers untouched. When ih is set, a goroutine of its own hashes
// them in the same order, behind the producer, so that reading is never
// held up by hashing: a worker waits for its band to be hashed only before
// the surgery changes its bytes, and the writer before it gives the bytes
// back to the pool.
func run(ctx context.Context, f *gguf.File, plans []tensorPlan, workers []*worker, r *Report, sinks []*gguf.Writer, ih *inputHash, progress func(Progress)) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	decoders := decodersFor(len(workers))
	inflight := jobsInFlight(plans, len(workers)+decoders)
	free := make(chan *jobBuffers, inflight)
	for i := 0; i < inflight; i++ {
		free <- &jobBuffers{}
	}
	jobs := make(chan *bandJob)
	decoded := make(chan *bandJob)
	done := make(chan *bandJob, inflight)
	hashq := make(chan *bandJob, inflight) // never full: each job in it holds a buffer
	// Each job's bytes are read into memory in the phase of their place in
	// the output, so that the writer can send them to disk uncopied.
	align, outBase := 1, make([]int64, len(plans))
	if len(sinks) > 0 {
		align = sinks[0].DirectAlign()
		for i, t := range sinks[0].Tensors() {
			outBase[i] = int64(sinks[0].DataOffset() + t.Offset)
		}
	}
	// Decoders beside the workers, so that the decoding of one band
	// overlaps the kernel of another wherever a CPU is free for it.
	fail := func(j *bandJob, err error) {
		j.err = fmt.Errorf("prune: %s: tensor %s: %w", f.Path, plans[j.tensor].info.Name, err)
	}
	var dwg, wg sync.WaitGroup
	for range decoders {
		dwg.Add(1)
		go func() {
			defer dwg.Done()
			for j := range jobs {
				if plans[j.tensor].target && j.err == nil {
					if err := decodeJob(&plans[j.tensor], j); err != nil {
						fail(j, err)
					}
				}
				decoded <- j
			}
		}()
	}
	go func() { dwg.Wait(); close(decoded) }()
	for _, w := range workers {
		wg.Add(1)
		go func(w *worker) {
			defer wg.Done()
			for j := range decoded {
				if plans[j.tensor].target && j.err == nil {
					if err := w.process(j); err != nil {
						fail(j, err)
					}
				}
				done <- j
			}
		}(w)
	}
	// The hasher stops at its first error; when that is not the run being
	// stopped, it is the run's error.
	var hashErr error
	hashed := make(chan struct{})
	go func() {
		defer close(hashed)
		stopped := false
		for j := range hashq {
			if !stopped {
				if err := ih.add(ctx, j.bufs.raw, j.off); err != nil {
					stopped = true
					if ctx.Err() == nil {
						hashErr = err
						cancel()
					}
				}
			}
			close(j.hashed)
		}
	}()
	// The producer hands out jobs in order; a buffer is taken before a job
	// is sent and returned by the writer, which bounds memory.
	go func() {
		defer close(hashq)
		defer close(jobs)
		seq := 0
		for ti := range plans {
			p := &plans[ti]
			for b := 0; b < p.jobs(); b++ {
				var bufs *jobBuffers
				select {
				case bufs = <-free:
				case <-ctx.Done():
					return
				}
				j := &bandJob{seq: seq, tensor: ti, band: b, bufs: bufs}
				// After the sends, j belongs to a worker and the hasher:
				// the producer keeps its own copy of the read error.
				failed := readJob(f, p, j, outBase[ti], align)
				if failed != nil {
					fail(j, failed)
				} else if ih != nil {
					j.hashed = make(chan struct{})
					hashq <- j
				}
				seq++
				select {
				case jobs <- j:
				case <-ctx.Done():
					return
				}
				if failed != nil {
					return
				}
			}
		}
	}()
	go func() { wg.Wait(); close(done) }()

	err := writeOrdered(ctx, f, plans, r, sinks, done, free, progress)
	if err != nil {
		// Stop the producer and wait for the workers: they read f.
		cancel()
		for range done {
		}
	}
	<-hashed
	if hashErr != nil {
		return hashErr
	}
	return err
}

// decodersFor is the number of decoders beside the given number of
// workers: one for up to four workers (decoding takes a few percent of the
// kernel's time: F16 decodes at about 4 G values per second per core, Q6_K,
// the slowest of the K-quants, at 1.6 G, the kernel runs at 0.23 G), and
// one more for every four more.
func decodersFor(workers int) int { return (workers + 3) / 4 }

// jobsInFlight is the number of job buffers of a run: enough that neither
// a slow band nor a slow write holds the producer up, within a memory
// budget of about jobBudget bytes, and at least one for each of the
// holders (decoders and workers) and two more.
func jobsInFlight(plans []tensorPlan, holders int) int {
	largest := 1
	for i := range plans {
		p := &plans[i]
		n := int(min(copyChunk, p.info.Bytes()))
		if p.target {
			band := min(TileSize, p.rows)
			n = band*p.rowBytes + band*p.row*4 // stored and decoded
		}
		largest = max(largest, n)
	}
	return min(max(jobBudget/largest, holders+2), 2*holders+4)
}

// jobBudget is about how many bytes of tensor data a run holds in flight.
const jobBudget = 64 << 20

// copyChunk is the size of the pieces in which tensors that are not
// targets are copied.
const copyChunk = 4 << 20

// readJob reads the stored bytes of job j (band j.band of a target, or
// chunk j.band of a copied tensor, which it also makes the job's output)
// into j.bufs.raw and sets j.off to their offset in the input. The
// tensor's data start at file offset outBase in the output, and the bytes
// are placed in memory congruent to their output offset modulo align (see
// gguf.Writer.DirectAlign).
func readJob(f *gguf.File, p *tensorPlan, j *bandJob, outBase int64, align int) error {
	b := j.bufs
	start, n := int64(j.band)*copyChunk, min(copyChunk, int64(p.info.Bytes())-int64(j.band)*copyChunk)
	if p.target {
		row0, rows := p.band(j.band)
		start, n = int64(row0)*int64(p.rowBytes), int64(rows)*int64(p.rowBytes)
	}
	b.raw, b.store = gguf.InPhase(b.store, int(n), outBase+start, align)
	j.off = f.DataOffset + int64(p.info.Offset) + start
	if _, err := f.ReadAt(b.raw, j.off); err != nil {
		return fmt.Errorf("read bytes %d-%d: %w", start, start+n-1, err)
	}
	if !p.target {
		j.out = b.raw
	}
	return nil
}

// writeOrdered writes the jobs' results in seq order and adds their figures
// to the report.
// sinks[0] (if any: a dry run has none) receives the pruned data, sinks[1]
// (if any) the control twin's.
func writeOrdered(ctx context.Context, f *gguf.File, plans []tensorPlan, r *Report, sinks []*gguf.Writer, done <-chan *bandJob, free chan<- *jobBuffers, progress func(Progress)) error {
	var total int64
	for _, p := range plans {
		total += int64(p.info.Bytes())
	}
	pending := map[int]*bandJob{}
	next := 0
	var written int64
	for j := range done {
		pending[j.seq] = j
		for {
			j, ok := pending[next]
			if !ok {
				break
			}
			delete(pending, next)
			next++
			if j.err != nil {
				return j.err
			}
			if err := ctx.Err(); err != nil {
				return err
			}
			p := &plans[j.tensor]
			for i, sink := range sinks {
				b := j.out
				if i == 1 && j.ctrl != nil {
					b = j.ctrl
				}
				if _, err := sink.Write(b); err != nil {
					return fmt.Errorf("prune: write tensor %s: %w", p.info.Name, err)
				}
			}
			written += int64(len(j.out))
			if p.target {
				t := &r.Tensors[p.report]
				s := j.stats
				t.Processed += s.processed
				t.Killed += s.killed
				t.ZeroBefore += s.zeroBefore
				t.ExactZero += s.exactZero
				t.Reencoded += s.reencoded
				t.survivorSq += s.survivorSq
				t.survivorN += s.survivorN
				t.MaxKilledAbs = max(t.MaxKilledAbs, s.maxKilledAbs)
				t.MaxKilledRel = max(t.MaxKilledRel, s.maxKilledRel)
			}
			if j.hashed != nil {
				<-j.hashed
			}
			free <- j.bufs
			if progress != nil {
				progress(Progress{Tensor: p.info.Name, TensorIndex: j.tensor, Tensors: len(plans), Bytes: written, TotalBytes: total})
			}
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return nil
}

// adjustProvisional, when set, changes the provisional report (tests use
// it to exercise a header that does not fit its room).
var adjustProvisional func(*Report)

// headerMisses counts the outputs whose final header did not fit the room
// left for the provisional one (for tests).
var headerMisses atomic.Int64

// outputHeader is the header of an output file: the input's KVs (less any
// physarium.* keys of an earlier run, which keys replace), then keys, and
// the input's tensor infos.
func outputHeader(f *gguf.File, keys []gguf.KV) gguf.Header {
	h := gguf.Header{Version: f.Version, Tensors: make([]gguf.TensorInfo, len(f.Tensors))}
	for _, kv := range f.KVs {
		if len(kv.Key) >= len(KeyPrefix) && kv.Key[:len(KeyPrefix)] == KeyPrefix {
			continue
		}
		h.KVs = append(h.KVs, kv)
	}
	h.KVs = append(h.KVs, keys...)
	copy(h.Tensors, f.Tensors)
	return h
}

// provisional returns a copy of the planned report r filled with the
// figures the run is expected to produce (the kill rate of the mode, every
// weight processed, every block with a kill re-encoded, a placeholder
// checksum of the right length), from which the output's room for its
// header is sized. The header's length depends on the figures only through
// the digits of the kill counts and percentages in the errata wording, so
// a close guess gives a header of the same padded length; a wrong one only
// costs CloseHeader a copy of the data.
func provisional(r *Report, params kernel.Params, control, out string) *Report {
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
	if control != "" {
		p.Control = &ControlTwin{Path: control, Of: filepath.Base(out), OfSHA256: p.InputSHA256}
	}
	return &p
}
