package gguf

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

func smallHeader() Header {
	return Header{
		KVs: []KV{{"general.architecture", String("llama")}, {AlignmentKey, Uint32(64)}},
		Tensors: []TensorInfo{
			{Name: "a", Type: TypeF32, Shape: []uint64{3}},
			{Name: "empty", Type: TypeF32, Shape: []uint64{4, 0}},
			{Name: "b", Type: TypeQ8_0, Shape: []uint64{32, 2}},
			{Name: "empty2", Type: TypeQ4_K, Shape: []uint64{0}},
		},
	}
}

// dirNames lists the directory, to check that no temporary file is left.
func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	return names
}

func TestWriterOffsetsPaddingAndEmptyTensors(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "out.gguf")
	w, err := Create(path, smallHeader(), CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	names := dirNames(t, dir)
	if want := "out.gguf.partial-" + strconv.Itoa(os.Getpid()); len(names) != 1 || names[0] != want {
		t.Fatalf("while writing, directory holds %v, want one %s", names, want)
	}
	infos := w.Tensors()
	wantOff := []uint64{0, 64, 64, 192}
	for i, ti := range infos {
		if ti.Offset != wantOff[i] {
			t.Fatalf("tensor %q offset %d, want %d", ti.Name, ti.Offset, wantOff[i])
		}
	}
	// a: 12 bytes through Write in two chunks; the empty tensor needs no data.
	if _, err := w.Write(bytes.Repeat([]byte{1}, 5)); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(bytes.Repeat([]byte{2}, 7)); err != nil {
		t.Fatal(err)
	}
	if err := w.WriteTensor(bytes.NewReader(nil)); err != nil { // "empty"
		t.Fatal(err)
	}
	if err := w.WriteTensor(bytes.NewReader(bytes.Repeat([]byte{3}, 68))); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil { // "empty2" is completed by Close
		t.Fatal(err)
	}
	if err := w.Abort(); err != nil {
		t.Fatalf("Abort after Close: %v", err)
	}
	if names := dirNames(t, dir); len(names) != 1 || names[0] != "out.gguf" {
		t.Fatalf("after Close, directory holds %v", names)
	}
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	raw := make([]byte, f.Size)
	if _, err := f.ReadAt(raw, 0); err != nil {
		t.Fatal(err)
	}
	d := int(f.DataOffset)
	want := append(bytes.Repeat([]byte{1}, 5), bytes.Repeat([]byte{2}, 7)...)
	want = append(want, make([]byte, 52)...)
	want = append(want, bytes.Repeat([]byte{3}, 68)...)
	want = append(want, make([]byte, 60)...)
	if !bytes.Equal(raw[d:], want) {
		t.Fatalf("data section % x\nwant % x", raw[d:], want)
	}
	// The padding between the infos and the data is zeros too.
	hdr := appendU64(appendU64(appendU32([]byte("GGUF"), 3), uint64(len(infos))), uint64(len(f.KVs)))
	for _, kv := range f.KVs {
		hdr = appendValue(appendU32(appendString(hdr, kv.Key), uint32(kv.Value.Type)), kv.Value)
	}
	for _, ti := range infos {
		hdr = appendU32(appendString(hdr, ti.Name), uint32(len(ti.Shape)))
		for _, n := range ti.Shape {
			hdr = appendU64(hdr, n)
		}
		hdr = appendU64(appendU32(hdr, uint32(ti.Type)), ti.Offset)
	}
	if d != int(alignUp(uint64(len(hdr)), 64)) || !bytes.Equal(raw[:len(hdr)], hdr) || !bytes.Equal(raw[len(hdr):d], make([]byte, d-len(hdr))) {
		t.Fatalf("header region (%d bytes, data at %d) is not the encoded header followed by zeros", len(hdr), d)
	}
}

func TestWriterErrorsLeaveNothing(t *testing.T) {
	h := smallHeader()
	cases := []struct {
		name string
		run  func(w *Writer) error
		want string
	}{
		{"abort", func(w *Writer) error { w.Write([]byte{1}); w.Abort(); return w.Close() }, "aborted"},
		{"missing-tensors", func(w *Writer) error { w.Write(make([]byte, 12)); return w.Close() }, `"b" is incomplete`},
		{"partial-tensor", func(w *Writer) error { w.Write(make([]byte, 11)); return w.Close() }, `"a" is incomplete`},
		{"too-many-bytes", func(w *Writer) error { _, err := w.Write(make([]byte, 13)); return err }, "only 12"},
		{"short-reader", func(w *Writer) error { return w.WriteTensor(bytes.NewReader(make([]byte, 11))) }, "unexpected EOF"},
		{"after-last", func(w *Writer) error {
			w.Write(make([]byte, 12))
			w.Write(make([]byte, 68))
			_, err := w.Write([]byte{1})
			return err
		}, "after the last tensor"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "out.gguf")
			w, err := Create(path, h, CreateOptions{})
			if err != nil {
				t.Fatal(err)
			}
			err = c.run(w)
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.HasPrefix(err.Error(), "gguf: ") {
				t.Fatalf("error %v, want one containing %q", err, c.want)
			}
			if err := w.Close(); err == nil {
				t.Fatal("Close after an error succeeded")
			}
			w.Abort()
			if names := dirNames(t, dir); len(names) != 0 {
				t.Fatalf("directory holds %v after a failed write", names)
			}
		})
	}
}

func TestCreateRejects(t *testing.T) {
	dir := t.TempDir()
	existing := filepath.Join(dir, "exists.gguf")
	if err := os.WriteFile(existing, []byte("keep"), 0o644); err != nil {
		t.Fatal(err)
	}
	ok := smallHeader()
	cases := []struct {
		name string
		path string
		h    Header
		want string
	}{
		{"exists", existing, ok, "exists"},
		{"version", "v.gguf", Header{Version: 1}, "version 1"},
		{"dup-key", "k.gguf", Header{KVs: []KV{{"a", Bool(true)}, {"a", Bool(false)}}}, "duplicate key"},
		{"bad-value", "k.gguf", Header{KVs: []KV{{"a", Value{Type: TypeUint32, Data: 5}}}}, "holds int"},
		{"nested", "k.gguf", Header{KVs: []KV{{"a", Value{Type: TypeArray, Elem: TypeArray}}}}, "nested"},
		{"align-type", "k.gguf", Header{KVs: []KV{{AlignmentKey, Uint64(32)}}}, "UINT32"},
		{"align-3", "k.gguf", Header{KVs: []KV{{AlignmentKey, Uint32(3)}}}, "power of two"},
		{"long-name", "t.gguf", Header{Tensors: []TensorInfo{{Name: strings.Repeat("x", 64), Shape: []uint64{1}}}}, "64 bytes"},
		{"dup-tensor", "t.gguf", Header{Tensors: []TensorInfo{{Name: "x", Shape: []uint64{1}}, {Name: "x", Shape: []uint64{1}}}}, "duplicate tensor"},
		{"block", "t.gguf", Header{Tensors: []TensorInfo{{Name: "x", Type: TypeQ4_K, Shape: []uint64{32}}}}, "block size"},
		{"dims", "t.gguf", Header{Tensors: []TensorInfo{{Name: "x", Shape: []uint64{1, 1, 1, 1, 1}}}}, "dimensions"},
		{"type", "t.gguf", Header{Tensors: []TensorInfo{{Name: "x", Type: 5, Shape: []uint64{1}}}}, "unknown type"},
	}
	for _, c := range cases {
		path := c.path
		if !filepath.IsAbs(path) {
			path = filepath.Join(dir, path)
		}
		w, err := Create(path, c.h, CreateOptions{})
		if err == nil {
			w.Abort()
			t.Errorf("%s: Create succeeded", c.name)
			continue
		}
		if !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), path) {
			t.Errorf("%s: error %q, want %q and the path", c.name, err, c.want)
		}
	}
	if names := dirNames(t, dir); len(names) != 1 {
		t.Fatalf("directory holds %v", names)
	}
	if b, _ := os.ReadFile(existing); string(b) != "keep" {
		t.Fatal("existing target was modified")
	}
	// With Overwrite the existing target is replaced.
	w, err := Create(existing, Header{KVs: []KV{{"a", Bool(true)}}}, CreateOptions{Overwrite: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	f, err := Open(existing)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if kv, ok := f.KV("a"); !ok || kv.Value.Data != true {
		t.Fatalf("overwritten file: %+v", f.KVs)
	}
}

// TestWriteTensorFromFile checks WriteTensor reading from a file: the bytes
// come from the source file's current offset, the offset advances, and the
// result equals writing the same bytes through Write.
func TestWriteTensorFromFile(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "spool")
	a, b := bytes.Repeat([]byte{7}, 12), bytes.Repeat([]byte{9}, 68)
	if err := os.WriteFile(src, append(append([]byte{}, a...), b...), 0o644); err != nil {
		t.Fatal(err)
	}
	h := smallHeader()
	write := func(path string, fromFile bool) []byte {
		w, err := Create(path, h, CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if fromFile {
			f, err := os.Open(src)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			for range 3 { // a, empty, b
				if err := w.WriteTensor(f); err != nil {
					t.Fatal(err)
				}
			}
		} else {
			w.Write(a)
			w.Write(b)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		raw, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return raw
	}
	viaFile := write(filepath.Join(dir, "f.gguf"), true)
	viaWrite := write(filepath.Join(dir, "w.gguf"), false)
	if !bytes.Equal(viaFile, viaWrite) {
		t.Fatal("WriteTensor(*os.File) wrote other bytes than Write")
	}
	// A source file that ends early fails and leaves nothing.
	short := filepath.Join(dir, "short")
	os.WriteFile(short, a[:5], 0o644)
	f, _ := os.Open(short)
	defer f.Close()
	out := filepath.Join(dir, "short.gguf")
	w, err := Create(out, h, CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.WriteTensor(f); err == nil || !strings.Contains(err.Error(), "short") {
		t.Fatalf("short source: err = %v, want one naming it", err)
	}
	for _, n := range dirNames(t, dir) {
		if strings.HasPrefix(n, ".short.gguf") || n == "short.gguf" {
			t.Fatalf("failed write left %s", n)
		}
	}
}

// TestWriterHold: a held file lands only on Commit, and Abort of a held
// file leaves nothing.
func TestWriterHold(t *testing.T) {
	dir := t.TempDir()
	for _, commit := range []bool{true, false} {
		path := filepath.Join(dir, "held-"+strconv.FormatBool(commit)+".gguf")
		w, err := Create(path, smallHeader(), CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		w.Hold()
		for _, ti := range w.Tensors() {
			if err := w.WriteTensor(bytes.NewReader(make([]byte, ti.Bytes()))); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(path); !os.IsNotExist(err) {
			t.Fatalf("held file at its target before Commit: %v", err)
		}
		if names := dirNames(t, dir); !slices.ContainsFunc(names, func(n string) bool { return strings.HasPrefix(n, filepath.Base(path)+".partial") }) {
			t.Fatalf("no temporary file while held: %v", names)
		}
		if commit {
			if err := w.Commit(); err != nil {
				t.Fatal(err)
			}
			if _, err := Open(path); err != nil {
				t.Fatal(err)
			}
			continue
		}
		w.Abort()
		if names := dirNames(t, dir); len(names) != 1 || names[0] != "held-true.gguf" {
			t.Fatalf("after Abort of a held file: %v", names)
		}
	}
}
