//go:build cgo

package llamacpp_test

import (
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/physarium/physarium-gguf/gguf"
	"github.com/physarium/physarium-gguf/llamacpp"
	"github.com/physarium/physarium-gguf/testmodels"
	rt "github.com/physarium/physarium-gguf/testmodels/llamacpp"
)

// BenchmarkEval measures, side by side in one run and on the same model,
// text, ctx (128), chunks and threads (all CPUs): llama.cpp's
// llama-perplexity (wall time, model load included), Evaluate on the model
// alone (load included), and Evaluate of the model and its copy without and
// with the copy as --base, whose ratio is what the KL-divergence scoring
// adds. Each reports tokens/s (chunks times ctx over the wall time).
// stories260K is small enough that scoring matters; the generated model
// (8 blocks, n_embd 1024, n_ff 2816, vocab 8000, Q4_K) is one where the
// forward pass dominates.
//
//	PHYSARIUM_LLAMA=... go test ./llamacpp -run '^$' -bench Eval -benchtime 1x
func BenchmarkEval(b *testing.B) {
	lib := load(b)
	big := filepath.Join(b.TempDir(), "big-q4_k.gguf")
	c := testmodels.DefaultConfig()
	c.Layers, c.Embd, c.FF, c.Heads, c.KVHeads, c.Vocab, c.Type = 8, 1024, 2816, 16, 16, 8000, gguf.TypeQ4_K
	if err := testmodels.Write(big, c, gguf.CreateOptions{}); err != nil {
		b.Fatal(err)
	}
	threads := runtime.NumCPU()
	text := readText(b, evalText)
	for _, m := range []struct {
		name, path string
		chunks     int
	}{{"stories260K", stories, 400}, {"generated-q4_k", big, 24}} {
		tokens := float64(m.chunks * 128)
		evaluate := func(b *testing.B, o llamacpp.Options) time.Duration {
			o.Text, o.TextName, o.CtxSize, o.Chunks, o.Threads = text, evalText, 128, m.chunks, threads
			t0 := time.Now()
			if _, err := llamacpp.Evaluate(timeout(b), lib, o); err != nil {
				b.Fatal(err)
			}
			return time.Since(t0)
		}
		b.Run(m.name, func(b *testing.B) {
			var ref, ours, pair, withBase time.Duration
			for range b.N {
				_, took, err := rt.Referee(timeout(b), m.path, evalText, 128, threads, m.chunks)
				if err != nil {
					b.Fatal(err)
				}
				ref += took
				ours += evaluate(b, llamacpp.Options{Models: []string{m.path}})
				pair += evaluate(b, llamacpp.Options{Models: []string{m.path, m.path}})
				withBase += evaluate(b, llamacpp.Options{Models: []string{m.path}, Base: m.path})
			}
			n := float64(b.N)
			b.ReportMetric(tokens*n/ref.Seconds(), "llama-perplexity-tok/s")
			b.ReportMetric(tokens*n/ours.Seconds(), "eval-tok/s")
			b.ReportMetric(ours.Seconds()/ref.Seconds(), "eval/llama-perplexity")
			b.ReportMetric(withBase.Seconds()/pair.Seconds(), "with-base/two-models")
		})
	}
}
