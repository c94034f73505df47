//go:build cgo

package llamacpp_test

import (
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/physarium/physarium-gguf/gguf"
	"github.com/physarium/physarium-gguf/llamacpp"
	"github.com/physarium/physarium-gguf/testmodels"
	rt "github.com/physarium/physarium-gguf/testmodels/llamacpp"
)

// BenchmarkEval measures, side by side in one run and on the same model,
// text (ctx 128), chunks and one thread: llama.cpp's llama-perplexity (the
// child's CPU time and wall time, model load included), Evaluate on the
// model alone (the process's CPU time over the call, load included), and
// Evaluate of the model and its copy without and with the copy as the base,
// whose ratio is what the KL-divergence scoring adds. CPU time with one
// thread is what the comparison rests on: on a shared machine the wall
// time also measures the other processes. The four runs are interleaved,
// rounds times, and each keeps its smallest figure. stories260K (60 chunks)
// is small enough that scoring matters; the generated model (8 blocks,
// n_embd 1024, n_ff 2816, vocab 8000, Q4_K; 6 chunks) is one where the
// forward pass dominates. Tokens/s is chunks times ctx over CPU seconds.
//
//	PHYSARIUM_LLAMA=... go test ./llamacpp -run '^$' -bench Eval -benchtime 1x
func BenchmarkEval(b *testing.B) {
	const rounds = 2
	lib := load(b)
	dir := rt.Require(b)
	big := filepath.Join(b.TempDir(), "big-q4_k.gguf")
	c := testmodels.DefaultConfig()
	c.Layers, c.Embd, c.FF, c.Heads, c.KVHeads, c.Vocab, c.Type = 8, 1024, 2816, 16, 16, 8000, gguf.TypeQ4_K
	if err := testmodels.Write(big, c, gguf.CreateOptions{}); err != nil {
		b.Fatal(err)
	}
	text := readText(b, evalText)
	for _, m := range []struct {
		name, path string
		chunks     int
	}{{"stories260K", stories, 60}, {"generated-q4_k", big, 6}} {
		tokens := float64(m.chunks * 128)
		evaluate := func(b *testing.B, o llamacpp.Options) time.Duration {
			o.Text, o.TextName, o.CtxSize, o.Chunks, o.Threads = text, evalText, 128, m.chunks, 1
			t0 := cpuTime(b)
			if _, err := llamacpp.Evaluate(timeout(b), lib, o); err != nil {
				b.Fatal(err)
			}
			return cpuTime(b) - t0
		}
		b.Run(m.name, func(b *testing.B) {
			best := [4]time.Duration{}
			run := [4]func() time.Duration{
				func() time.Duration {
					cmd := exec.Command(filepath.Join(dir, "bin", rt.RefereeTool), "-m", m.path, "-f", evalText,
						"-c", "128", "-t", "1", "-tb", "1", "--chunks", strconv.Itoa(m.chunks))
					if out, err := cmd.CombinedOutput(); err != nil {
						b.Fatalf("%v: %s", err, out)
					}
					return cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
				},
				func() time.Duration { return evaluate(b, llamacpp.Options{Models: []string{m.path}}) },
				func() time.Duration { return evaluate(b, llamacpp.Options{Models: []string{m.path, m.path}}) },
				func() time.Duration { return evaluate(b, llamacpp.Options{Models: []string{m.path}, Base: m.path}) },
			}
			for range b.N * rounds {
				for k, f := range run {
					if d := f(); best[k] == 0 || d < best[k] {
						best[k] = d
					}
				}
			}
			ref, ours, pair, withBase := best[0], best[1], best[2], best[3]
			b.ReportMetric(tokens/ref.Seconds(), "llama-perplexity-tok/cpu-s")
			b.ReportMetric(tokens/ours.Seconds(), "eval-tok/cpu-s")
			b.ReportMetric(ours.Seconds()/ref.Seconds(), "eval/llama-perplexity")
			b.ReportMetric(withBase.Seconds()/pair.Seconds(), "with-base/two-models")
		})
	}
}

// cpuTime is the process's user and system time so far.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
