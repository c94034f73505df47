package prune

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/physarium/physarium-gguf/errata"
	"github.com/physarium/physarium-gguf/gguf"
)

// run streams every tensor's data, in file order, to the sinks: copies of
// the non-target tensors and the pruned bands of the targets, processed by
// the workers concurrently and written back in order.
//
// run returns only when every goroutine it started has finished, so that
// the caller may close f (unmap it) at once.
//
// The producer reads every byte of tensor data once, in file order: each
// target band, and the copied tensors in chunks of copyChunk bytes, which
// pass the workers untouched. When hash is set, a goroutine of its own
// hashes them in the same order, behind the producer, so that reading is
// never held up by hashing: a worker waits for its band to be hashed only
// before the surgery changes its bytes, and the writer before it gives the
// bytes back to the pool.
func run(ctx context.Context, f *gguf.File, plans []tensorPlan, workers []*worker, r *Report, sinks *sinks, hash *inputHash, progress func(Progress)) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	decoders := decodersFor(len(workers))
	inflight := jobsInFlight(plans, len(workers)+decoders)
	pl := &pipeline{
		f: f, plans: plans, hash: hash, cancel: cancel,
		free:    make(chan *jobBuffers, inflight),
		jobs:    make(chan *bandJob),
		decoded: make(chan *bandJob),
		done:    make(chan *bandJob, inflight),
		hashq:   make(chan *bandJob, inflight), // never full: each job in it holds a buffer
		hashed:  make(chan struct{}),
	}
	for range inflight {
		pl.free <- &jobBuffers{}
	}
	pl.placeInOutput(sinks)
	pl.startDecoders(decoders)
	pl.startWorkers(workers)
	go pl.hasher(ctx)
	go pl.produce(ctx)
	err := writeOrdered(ctx, f, plans, r, sinks, pl.done, pl.free, progress)
	if err != nil {
		// Stop the producer and wait for the workers: they read f.
		cancel()
		for range pl.done {
		}
	}
	r.CPU.Decode += pl.decodeCPU.Seconds()
	for _, w := range workers {
		r.CPU.Decide += w.cpu.decide.Seconds()
		r.CPU.Surgery += w.cpu.surgery.Seconds()
	}
	<-pl.hashed
	r.CPU.Hash += pl.hashCPU.Seconds()
	if pl.hashErr != nil {
		return pl.hashErr
	}
	return err
}

// pipeline is the state of one run: its stages pass jobs through the
// channels, from the producer to the decoders, the workers and the writer,
// and the job buffers back through free.
type pipeline struct {
	f      *gguf.File
	plans  []tensorPlan
	hash   *inputHash // hashes the bytes the producer reads, or nil
	cancel context.CancelFunc
	// align and outBase place each job's bytes in memory in the phase of
	// their place in the output (see gguf.Writer.DirectAlign), so that the
	// writer can send them to disk uncopied.
	align   int
	outBase []int64
	free    chan *jobBuffers
	jobs    chan *bandJob // producer -> decoders
	decoded chan *bandJob // decoders -> workers
	done    chan *bandJob // workers -> writer
	hashq   chan *bandJob // producer -> hasher
	hashed  chan struct{} // closed when the hasher is done
	hashErr error         // the hasher's error, when the run was not stopped
	hashCPU time.Duration // the CPU time the hasher used, read when it is done
	// decodeCPU is the CPU time the decoders used on target bands, added
	// up when each is done (under decodeMu).
	decodeMu  sync.Mutex
	decodeCPU time.Duration
}

// placeInOutput sets the output offsets of the tensors' data, each in its
// shard of the output.
func (pl *pipeline) placeInOutput(s *sinks) {
	pl.align, pl.outBase = 1, make([]int64, len(pl.plans))
	if s == nil {
		return
	}
	pl.align = s.sets[0][0].DirectAlign()
	for i := range pl.plans {
		w := s.writer(0, i)
		pl.outBase[i] = int64(w.DataOffset() + w.Tensors()[s.layout.index[i]].Offset)
	}
}

// fail records err as job j's error, naming the file and tensor.
func (pl *pipeline) fail(j *bandJob, err error) {
	j.err = fmt.Errorf("prune: %s: tensor %s: %w", pl.f.Path, pl.plans[j.tensor].info.Name, err)
}

// startDecoders starts the decoders, beside the workers, so that the
// decoding of one band overlaps the kernel of another wherever a CPU is
// free for it; they also count the NaN and infinities of the copied
// tensors. decoded is closed when they are done.
func (pl *pipeline) startDecoders(n int) {
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var nv nonfiniteValues
			var cpu time.Duration
			for j := range pl.jobs {
				if j.err == nil {
					if err := pl.decode(j, &nv, &cpu); err != nil {
						pl.fail(j, err)
					}
				}
				pl.decoded <- j
			}
			pl.decodeMu.Lock()
			pl.decodeCPU += cpu
			pl.decodeMu.Unlock()
		}()
	}
	go func() { wg.Wait(); close(pl.decoded) }()
}

// decode decodes a target band for its worker, adding the CPU time that
// takes to *cpu, or counts the NaN and infinite values of a piece of a
// copied tensor.
func (pl *pipeline) decode(j *bandJob, nv *nonfiniteValues, cpu *time.Duration) error {
	p := &pl.plans[j.tensor]
	if p.target {
		return timed(cpu, func() error { return decodeJob(p, j) })
	}
	var err error
	j.stats.nonfinite, err = nv.countCopied(pl.f, p, int64(j.band)*copyChunk, j.bufs.raw)
	return err
}

// startWorkers starts the workers; done is closed when they are done.
func (pl *pipeline) startWorkers(workers []*worker) {
	var wg sync.WaitGroup
	for _, w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range pl.decoded {
				if pl.plans[j.tensor].target && j.err == nil {
					if err := w.process(j); err != nil {
						pl.fail(j, err)
					}
				}
				pl.done <- j
			}
		}()
	}
	go func() { wg.Wait(); close(pl.done) }()
}

// hasher hashes the jobs' bytes in order. It stops at its first error;
// when that is not the run being stopped, it is the run's error.
func (pl *pipeline) hasher(ctx context.Context) {
	defer close(pl.hashed)
	stopped := false
	for j := range pl.hashq {
		if !stopped {
			if err := timed(&pl.hashCPU, func() error { return pl.hash.add(ctx, j.bufs.raw, j.off) }); err != nil {
				stopped = true
				if ctx.Err() == nil {
					pl.hashErr = err
					pl.cancel()
				}
			}
		}
		close(j.hashed)
	}
}

// produce hands out the jobs in order; a buffer is taken before a job is
// sent and returned by the writer, which bounds memory.
func (pl *pipeline) produce(ctx context.Context) {
	defer close(pl.hashq)
	defer close(pl.jobs)
	seq := 0
	for ti := range pl.plans {
		p := &pl.plans[ti]
		for b := range p.jobs() {
			var bufs *jobBuffers
			select {
			case bufs = <-pl.free:
			case <-ctx.Done():
				return
			}
			j := &bandJob{seq: seq, tensor: ti, band: b, bufs: bufs}
			// After the sends, j belongs to a worker and the hasher: the
			// producer keeps its own copy of the read error.
			failed := readJob(pl.f, p, j, pl.outBase[ti], pl.align)
			if failed != nil {
				pl.fail(j, failed)
			} else if pl.hash != nil {
				j.hashed = make(chan struct{})
				pl.hashq <- j
			}
			seq++
			select {
			case pl.jobs <- j:
			case <-ctx.Done():
				return
			}
			if failed != nil {
				return
			}
		}
	}
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
			band := min(errata.TileSize, p.matrixRows)
			n = band*p.rowBytes + band*p.rowLen*4 // stored and decoded
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
// The output's shard of the tensor (if any: a dry run has none) receives
// the pruned data, the control twin (if any) the control's.
func writeOrdered(ctx context.Context, f *gguf.File, plans []tensorPlan, r *Report, s *sinks, done <-chan *bandJob, free chan<- *jobBuffers, progress func(Progress)) error {
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
			if err := s.reach(j.tensor); err != nil {
				return err
			}
			for i := range s.count() {
				sink := s.writer(i, j.tensor)
				b := j.out
				if i == 1 && j.ctrl != nil {
					b = j.ctrl
				}
				if _, err := sink.Write(b); err != nil {
					return fmt.Errorf("prune: write tensor %s: %w", p.info.Name, err)
				}
			}
			written += int64(len(j.out))
			if !p.target && j.stats.nonfinite > 0 {
				r.addNonfinite(p.info.Name, j.stats.nonfinite)
			}
			if p.target {
				t := &r.Tensors[p.report]
				s := j.stats
				t.Processed += s.processed
				t.Killed += s.killed
				t.ZeroBefore += s.zeroBefore
				t.ExactZero += s.exactZero
				t.Reencoded += s.reencoded
				t.SurvivorsChanged += s.moved
				t.OutputError += s.outErr
				t.OutputEnergy += s.outEnergy
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
