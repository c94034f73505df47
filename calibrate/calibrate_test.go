//go:build cgo

package calibrate_test

import (
	"bytes"
	"context"
	"errors"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/physarium/physarium-gguf/calibrate"
	"github.com/physarium/physarium-gguf/imatrix"
	"github.com/physarium/physarium-gguf/llamacpp"
	rt "github.com/physarium/physarium-gguf/testmodels/llamacpp"
)

const (
	stories   = "../../shared/models/stories260K.gguf"
	calibText = "../../shared/models/tinystories_valid_calib.txt"
)

func load(t testing.TB) *llamacpp.Library {
	t.Helper()
	dir := rt.Require(t)
	lib, err := llamacpp.Load(rt.LibDir(dir))
	if err != nil {
		t.Fatal(err)
	}
	return lib
}

func timeout(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func readFile(t testing.TB, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func run(t *testing.T, lib *llamacpp.Library, o calibrate.Options) *calibrate.Result {
	t.Helper()
	if o.Threads == 0 {
		o.Threads = 1
	}
	if o.MaxMemory == 0 {
		o.MaxMemory = 1 << 30
	}
	res, err := calibrate.Run(timeout(t), lib, o)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// TestMatchesLlamaImatrix: on a real model the in_sum2 and counts equal
// llama-imatrix's own output on the same text and context size.
func TestMatchesLlamaImatrix(t *testing.T) {
	lib := load(t)
	dir := t.TempDir()
	ref := filepath.Join(dir, "ref.gguf")
	if err := rt.Imatrix(timeout(t), stories, calibText, 128, ref); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "cal.gguf")
	run(t, lib, calibrate.Options{Model: stories, Out: out, Text: readFile(t, calibText), TextName: calibText, Ctx: 128})
	want, err := imatrix.Load(ref)
	if err != nil {
		t.Fatal(err)
	}
	got, err := imatrix.Load(out)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Entries) != len(want.Entries) || got.ChunkCount != want.ChunkCount || got.ChunkSize != want.ChunkSize {
		t.Fatalf("%d entries, chunks %d x %d; llama-imatrix %d entries, chunks %d x %d", len(got.Entries), got.ChunkCount, got.ChunkSize,
			len(want.Entries), want.ChunkCount, want.ChunkSize)
	}
	worst := 0.0
	for name, we := range want.Entries {
		ge := got.Entries[name]
		if ge == nil {
			t.Fatalf("%s missing", name)
		}
		if len(ge.Counts) != len(we.Counts) || len(ge.Sums) != len(we.Sums) {
			t.Fatalf("%s: shapes differ", name)
		}
		for i := range we.Counts {
			if ge.Counts[i] != we.Counts[i] {
				t.Fatalf("%s: count %v, llama-imatrix %v", name, ge.Counts[i], we.Counts[i])
			}
		}
		for i := range we.Sums {
			d := math.Abs(float64(ge.Sums[i])-float64(we.Sums[i])) / math.Max(math.Abs(float64(we.Sums[i])), 1e-30)
			worst = max(worst, d)
			if d > 1e-6 {
				t.Fatalf("%s[%d]: %v, llama-imatrix %v (relative %.3g)", name, i, ge.Sums[i], we.Sums[i], d)
			}
		}
	}
	t.Logf("%d tensors, worst relative difference %.3g", len(want.Entries), worst)
}

var _ = bytes.Equal
var _ = errors.Is
var _ = runtime.NumCPU
