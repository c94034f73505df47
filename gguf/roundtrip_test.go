package gguf

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

const storiesPath = "../../shared/models/stories260K.gguf"

// rewrite reads in and writes it back unchanged to out with the Writer.
func rewrite(t testing.TB, in, out string) *File {
	t.Helper()
	f, err := Open(in)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w, err := Create(out, Header{Version: f.Version, KVs: f.KVs, Tensors: f.Tensors}, CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, ti := range f.Tensors {
		if err := w.WriteTensor(f.TensorReader(ti)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return f
}

func TestRoundTripStories(t *testing.T) {
	if _, err := os.Stat(storiesPath); err != nil {
		t.Fatalf("test model missing: %v", err)
	}
	out := filepath.Join(t.TempDir(), "out.gguf")
	f := rewrite(t, storiesPath, out)
	want, err := os.ReadFile(storiesPath)
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	last := f.Tensors[len(f.Tensors)-1]
	t.Logf("%s: %d bytes, version %d, %d KVs, %d tensors, alignment %d, data at %d, last tensor ends at %d",
		storiesPath, f.Size, f.Version, len(f.KVs), len(f.Tensors), f.Alignment, f.DataOffset,
		f.DataOffset+int64(last.Offset+last.Bytes()))
	if !bytes.Equal(got, want) {
		n := 0
		for n < len(got) && n < len(want) && got[n] == want[n] {
			n++
		}
		t.Fatalf("round trip differs: %d vs %d bytes, first difference at %d", len(got), len(want), n)
	}
}

// BenchmarkOpenStories measures Open (mmap and full header validation) of
// the test model.
func BenchmarkOpenStories(b *testing.B) {
	for b.Loop() {
		f, err := Open(storiesPath)
		if err != nil {
			b.Fatal(err)
		}
		f.Close()
	}
}
