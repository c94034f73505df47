package prune

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/physarium/physarium-gguf/errata"
	"github.com/physarium/physarium-gguf/gguf"
	"github.com/physarium/physarium-gguf/kernel"
	"github.com/physarium/physarium-gguf/quantize"
)

var (
	stagesModel   = flag.String("stages.model", "", "time prune and each of its stages alone on this GGUF (see scripts/bench-prune.sh)")
	stagesThreads = flag.Int("stages.threads", 0, "worker threads of every stage and of prune (0: one per CPU)")
)

// TestStages times, on one model and with the same threads, a plain copy
// of the file, prune's own reading, hashing and writing alone (its
// pipeline with every tensor copied), the kernel alone on the target
// weights, decoding and re-encoding alone on the same blocks, and the
// whole prune, and prints a table row. The slowest stage is the slowest of
// the last three stages; the plain copy, which goes through the page cache
// where prune writes with direct I/O, is shown beside them. It runs only
// with -stages.model.
func TestStages(t *testing.T) {
	if *stagesModel == "" {
		t.Skip("needs -stages.model FILE")
	}
	in := *stagesModel
	threads := *stagesThreads
	if threads <= 0 {
		threads = runtime.NumCPU()
	}
	dir := t.TempDir()
	f, err := gguf.Open(in)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var r Report
	sel, _ := Selection{}.compile()
	plans, err := plan(f, sel, false, &r)
	if err != nil {
		t.Fatal(err)
	}

	// 1. A plain copy of the file, fsync included.
	t0 := time.Now()
	copyFile(t, in, filepath.Join(dir, "copy.gguf"))
	copyTime := time.Since(t0)
	os.Remove(filepath.Join(dir, "copy.gguf"))

	// 2. Reading, hashing and writing alone.
	t0 = time.Now()
	ioAlone(t, f, plans, threads, filepath.Join(dir, "io.gguf"))
	ioTime := time.Since(t0)
	os.Remove(filepath.Join(dir, "io.gguf"))

	// 3 and 4: the kernel alone, and decode + re-encode alone, over the
	// same bands with the same number of threads.
	kernelTime := overBands(t, f, plans, threads, func(w *worker, k *kernel.Kernel, jb *jobBuffers, p *tensorPlan, rows int) time.Duration {
		s := time.Now()
		runTiles(t, &w.buf, p, rows, k)
		return time.Since(s)
	})
	codecTime := overBands(t, f, plans, threads, func(w *worker, k *kernel.Kernel, jb *jobBuffers, p *tensorPlan, rows int) time.Duration {
		// The kernel's own kills, outside the clock; then what prune does
		// with them: decode, and the surgery (clear the killed elements
		// in the stored bytes, or zero them, re-encode every block with a
		// kill and decode it again to measure it).
		b := &w.buf
		runTiles(t, b, p, rows, k)
		n := rows * p.rowLen
		w.plans = []tensorPlan{*p}
		j := &bandJob{bufs: jb}
		s := time.Now()
		if err := quantize.Decode(p.info.Type, b.before[:n], jb.raw[:rows*p.rowBytes]); err != nil {
			t.Error(err)
		}
		if err := w.surgery(j, p, 0, rows); err != nil {
			t.Error(err)
		}
		return time.Since(s)
	})

	// 5. The whole prune.
	t0 = time.Now()
	rep, err := File(context.Background(), in, filepath.Join(dir, "out.gguf"), Options{Threads: threads})
	if err != nil {
		t.Fatal(err)
	}
	pruneTime := time.Since(t0)
	slowest := max(ioTime, kernelTime, codecTime)
	types := map[string]bool{}
	for _, tr := range rep.Tensors {
		types[tr.Type] = true
	}
	row := fmt.Sprintf("| %s | %v | %.2f GB | %d | %.2f s | %.2f s | %.2f s | %.2f s | %.2f s | %.2f |",
		filepath.Base(in), keys(types), float64(f.Size)/1e9, threads,
		copyTime.Seconds(), ioTime.Seconds(), kernelTime.Seconds(), codecTime.Seconds(), pruneTime.Seconds(), pruneTime.Seconds()/slowest.Seconds())
	t.Logf("killed %v", rep.OverTarget)
	fmt.Fprintln(testOutput, "| model | target types | size | threads | plain copy | read+hash+write alone | kernel alone | decode+encode alone | prune | prune / slowest stage |")
	fmt.Fprintln(testOutput, "|---|---|---|---|---|---|---|---|---|---|")
	fmt.Fprintln(testOutput, row)
}

// runTiles runs the kernel on every tile of a decoded band (b.before),
// which write the band's mask (b.mask), as prune runs it.
func runTiles(t *testing.T, b *bandBuffers, p *tensorPlan, rows int, k *kernel.Kernel) {
	var tiles []kernel.Tile
	n := rows * p.rowLen
	b.mask = grow(b.mask, n)
	for c0 := 0; c0 < p.rowLen; c0 += errata.TileSize {
		cols := min(errata.TileSize, p.rowLen-c0)
		tiles = append(tiles, kernel.Tile{W: b.before[c0:], Rows: rows, Cols: cols, Stride: p.rowLen, Mask: b.mask[c0:n], MaskStride: p.rowLen})
	}
	if err := k.Run(tiles); err != nil {
		t.Error(err)
	}
}

// ioAlone runs prune's pipeline on f with every tensor copied, with
// threads workers: reading, hashing and writing out every byte, nothing
// decoded.
func ioAlone(t *testing.T, f *gguf.File, plans []tensorPlan, threads int, out string) {
	t.Helper()
	copies := make([]tensorPlan, len(plans))
	for i, p := range plans {
		copies[i] = tensorPlan{info: p.info, report: -1}
	}
	layout := &outputLayout{paths: []string{out}, shard: make([]int, len(f.Tensors)), index: make([]int, len(f.Tensors)), tensors: len(f.Tensors)}
	for i := range layout.index {
		layout.index[i] = i
	}
	h := layout.header(f, nil, 0)
	w, err := gguf.CreateDeferred(out, h, gguf.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	workers := make([]*worker, threads)
	for i := range workers {
		workers[i] = &worker{plans: copies}
	}
	ctx := context.Background()
	ih := newInputHash(f)
	if err := run(ctx, f, copies, workers, &Report{}, &sinks{layout: layout, sets: [][]*gguf.Writer{{w}}}, ih, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := ih.sum(ctx); err != nil {
		t.Fatal(err)
	}
	if err := w.CloseHeader(h); err != nil {
		t.Fatal(err)
	}
}

func keys(m map[string]bool) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	return ks
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	src, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.Create(to)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	if err := dst.Sync(); err != nil {
		t.Fatal(err)
	}
	dst.Close()
}

// overBands reads and decodes every target band on threads workers and
// returns the wall time of the stage: the largest per-worker sum of what
// stage reports for its bands (reading and decoding for the kernel stage
// are outside the clock).
func overBands(t *testing.T, f *gguf.File, plans []tensorPlan, threads int, stage func(*worker, *kernel.Kernel, *jobBuffers, *tensorPlan, int) time.Duration) time.Duration {
	type job struct{ p, b int }
	jobs := make(chan job)
	var mu sync.Mutex
	var worst time.Duration
	var wg sync.WaitGroup
	for range threads {
		wg.Add(1)
		go func() {
			defer wg.Done()
			k, err := kernel.New(kernel.Auto, kernel.DefaultParams())
			if err != nil {
				t.Error(err)
				return
			}
			var sum time.Duration
			w := &worker{}
			jb := &jobBuffers{}
			for j := range jobs {
				p := &plans[j.p]
				row0, rows := p.band(j.b)
				n := rows * p.rowLen
				jb.raw = grow(jb.raw, rows*p.rowBytes)
				f.ReadAt(jb.raw, f.DataOffset+int64(p.info.Offset)+int64(row0)*int64(p.rowBytes))
				w.buf.before = grow(w.buf.before, n)
				quantize.Decode(p.info.Type, w.buf.before, jb.raw)
				sum += stage(w, k, jb, p, rows)
			}
			mu.Lock()
			worst = max(worst, sum)
			mu.Unlock()
		}()
	}
	for i := range plans {
		if plans[i].target {
			for b := 0; b < plans[i].bands(); b++ {
				jobs <- job{i, b}
			}
		}
	}
	close(jobs)
	wg.Wait()
	return worst
}
