package gguf

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// FuzzOpen reads arbitrary bytes with NewReader over a bytes.Reader (no
// file per input); whatever reads is written back with the Writer and
// opened again, and the KVs, tensor infos and tensor bytes must
// survive the round trip.
func FuzzOpen(f *testing.F) {
	dir := f.TempDir()
	for _, c := range genCases() {
		b, err := os.ReadFile(writeCase(f, dir, c))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add(validRaw().bytes())
	// A few files of each class of the parity corpus (corpus_test.go).
	if err := EachParityCase([]ParityBase{{Name: "small", Data: validRaw().bytes()}}, 7, 2, func(c ParityCase) { f.Add(c.Data) }); err != nil {
		f.Fatal(err)
	}
	skipSync = true
	defer func() { skipSync = false }()
	f.Fuzz(func(t *testing.T, data []byte) {
		src, err := NewReader(bytes.NewReader(data), int64(len(data)))
		if err != nil {
			if !strings.HasPrefix(err.Error(), "gguf: ") {
				t.Fatalf("error without prefix: %v", err)
			}
			return
		}
		defer src.Close()
		out := filepath.Join(t.TempDir(), "out.gguf")
		w, err := Create(out, Header{Version: src.Version, KVs: src.KVs, Tensors: src.Tensors}, CreateOptions{})
		if err != nil {
			t.Fatalf("Create rejects what Open accepted: %v", err)
		}
		for _, ti := range src.Tensors {
			if err := w.WriteTensor(src.TensorReader(ti)); err != nil {
				t.Fatalf("WriteTensor: %v", err)
			}
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		dst, err := Open(out)
		if err != nil {
			t.Fatalf("cannot open the rewritten file: %v", err)
		}
		defer dst.Close()
		if dst.Version != src.Version || dst.Alignment != src.Alignment {
			t.Fatalf("version/alignment %d/%d, want %d/%d", dst.Version, dst.Alignment, src.Version, src.Alignment)
		}
		if err := sameKVs(dst.KVs, src.KVs); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(dst.Tensors, w.Tensors()) || len(dst.Tensors) != len(src.Tensors) {
			t.Fatalf("tensor infos differ:\n%+v\n%+v", dst.Tensors, w.Tensors())
		}
		for i, ti := range src.Tensors {
			d := dst.Tensors[i]
			if d.Name != ti.Name || d.Type != ti.Type || !reflect.DeepEqual(d.Shape, ti.Shape) {
				t.Fatalf("tensor %d: %+v, want %+v", i, d, ti)
			}
			a, err := io.ReadAll(src.TensorReader(ti))
			if err != nil {
				t.Fatal(err)
			}
			b, err := io.ReadAll(dst.TensorReader(d))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(a, b) || uint64(len(a)) != ti.Bytes() {
				t.Fatalf("tensor %q: bytes differ", ti.Name)
			}
		}
	})
}
