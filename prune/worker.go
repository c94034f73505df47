package prune

import (
	"runtime"
	"time"

	"github.com/physarium/physarium-gguf/internal/cpuclock"
	"github.com/physarium/physarium-gguf/method"
	"github.com/physarium/physarium-gguf/quantize"
)

// bandJob is one unit of work: a band of up to errata.TileSize rows of one target
// tensor, or a piece of a non-target tensor to copy. The writer puts results
// back in seq order.
type bandJob struct {
	seq    int
	tensor int   // index into the plan
	band   int   // band index within the tensor (a target), else copyChunk piece
	off    int64 // file offset of the job's bytes in the input
	out    []byte
	ctrl   []byte // the control twin's bytes (Options.Control), else nil
	stats  bandStats
	err    error
	bufs   *jobBuffers
	// hashed is closed once the input's hash has taken the job's bytes
	// (or needs them no more): the surgery, which changes them, waits for
	// it.
	hashed chan struct{}
}

// jobBuffers are the bytes of a job, from the producer's read to the
// writer; the run keeps a pool of them.
type jobBuffers struct {
	raw    []byte    // the job's stored bytes, read by the producer; the surgery changes them in place
	store  []byte    // the memory raw lies in
	before []float32 // a target band's values as stored, decoded by a decoder
	ctrl   []byte    // the control twin's bytes: the same blocks re-encoded, nothing zeroed
	// retyped holds a target band's bytes in the --retype type.
	retyped []byte
}

// bandBuffers are a worker's reusable scratch buffers, sized for the
// largest band.
type bandBuffers struct {
	before []float32 // the band's values as stored (the job's, decoded)
	vals   []float32 // a chunk of values to re-encode, killed ones set to +0 (block types)
	check  []float32 // that chunk's re-encoded blocks decoded again
	mask   []byte    // the band's kill mask, row-major with the band's row length
	after  []float32 // the band's new values when the method rewrites survivors (else nil)
	qw     []float32 // the importance weights of a chunk's values (chunkWeights)
}

// worker decides bands and does their surgery; one per goroutine.
type worker struct {
	plans   []tensorPlan
	control bool           // also produce the control twin's bytes
	decider method.Decider // the method's, this worker's own
	buf     bandBuffers
	after   []float32 // storage of buf.after
	cpu     stageCPU  // the CPU time of this worker's decisions and surgery
}

// stageCPU adds up the CPU time that the threads of a run's stages use.
type stageCPU struct{ decode, decide, surgery time.Duration }

// timed runs fn and adds the CPU time its thread used to *d: the
// goroutine stays on its thread in between, so that the thread's clock
// measures fn alone.
func timed(d *time.Duration, fn func() error) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	start := cpuclock.Thread()
	err := fn()
	*d += cpuclock.Thread() - start
	return err
}

// decodeJob decodes the stored bytes of band job j of p into
// j.bufs.before.
func decodeJob(p *tensorPlan, j *bandJob) error {
	_, rows := p.band(j.band)
	bufs := j.bufs
	bufs.before = grow(bufs.before, rows*p.rowLen)
	return quantize.Decode(p.info.Type, bufs.before, bufs.raw)
}

// process does the surgery on one band, decoded by decodeJob: the
// method decides the kills, the surgery zeroes them, re-encodes the blocks
// that hold a kill and keeps the others' bytes.
func (w *worker) process(j *bandJob) error {
	p := &w.plans[j.tensor]
	row0, rows := p.band(j.band)
	b := &w.buf
	n := rows * p.rowLen
	b.before = j.bufs.before[:n]
	b.mask = grow(b.mask, n)
	band := method.Band{
		Values: b.before, Rows: rows, Cols: p.rowLen, Row0: row0, MatrixRow0: row0 % p.matrixRows,
		Index: j.band, Act: p.matrixAct(row0), State: p.state,
	}
	var c method.Counts
	err := timed(&w.cpu.decide, func() (err error) {
		c, err = w.decider.Decide(&band, b.mask)
		return err
	})
	if err != nil {
		return err
	}
	j.stats.processed += c.Processed
	j.stats.zeroBefore += c.ZeroBefore
	j.stats.outErr += c.OutputError
	j.stats.outEnergy += c.OutputEnergy
	b.after = nil
	if rc, ok := w.decider.(method.Reconstructor); ok {
		w.after = grow(w.after, n)
		b.after = w.after[:n]
		var moved uint64
		err := timed(&w.cpu.decide, func() (err error) {
			moved, err = rc.Survivors(&band, b.mask, b.after)
			return err
		})
		if err != nil {
			return err
		}
		j.stats.moved += moved
	}
	if j.hashed != nil {
		<-j.hashed
	}
	return timed(&w.cpu.surgery, func() error { return w.surgery(j, p, row0, rows) })
}
