//go:build cgo

package calibrate_test

import (
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/physarium/physarium-gguf/calibrate"
	rt "github.com/physarium/physarium-gguf/testmodels/llamacpp"
)

// BenchmarkCalibrate measures, side by side in one run, llama-imatrix,
// calibrate and calibrate --gram on stories260K over the same 160 chunks of
// 128 tokens with 2 threads, each timed from start to written file (model
// loading and tokenizing included), and reports tokens/s:
//
//	go test ./calibrate -run '^$' -bench Calibrate -benchtime 1x
func BenchmarkCalibrate(b *testing.B) {
	const ctxN, chunks, threads = 128, 160, 2
	lib := load(b)
	text := readFile(b, calibText)
	tokens := float64(ctxN * chunks)
	b.Run("llama-imatrix", func(b *testing.B) {
		out := filepath.Join(b.TempDir(), "ref.gguf")
		start := time.Now()
		for range b.N {
			if _, err := rt.RunTool(timeout(b), "llama-imatrix", "-m", stories, "-f", calibText, "-c", strconv.Itoa(ctxN),
				"--chunks", strconv.Itoa(chunks), "-t", strconv.Itoa(threads), "-tb", strconv.Itoa(threads), "--no-ppl", "-o", out); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(tokens*float64(b.N)/time.Since(start).Seconds(), "tokens/s")
	})
	for _, gram := range []bool{false, true} {
		name := "calibrate"
		if gram {
			name += "-gram"
		}
		b.Run(name, func(b *testing.B) {
			out := filepath.Join(b.TempDir(), "cal.gguf")
			start := time.Now()
			for range b.N {
				if _, err := calibrate.Run(timeout(b), lib, calibrate.Options{Model: stories, Out: out, Force: true, Text: text,
					TextName: calibText, Ctx: ctxN, Chunks: chunks, Threads: threads, Gram: gram, MaxMemory: 1 << 30}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(tokens*float64(b.N)/time.Since(start).Seconds(), "tokens/s")
		})
	}
}
