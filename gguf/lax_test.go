package gguf

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// laxCases are files that llama.cpp's parser accepts although they bend
// the GGUF specification; the reader accepts them too.
func laxCases() []hostileCase {
	setKV := func(i int, kv rawKV) func(*rawFile) { return func(r *rawFile) { r.kvs[i] = kv } }
	setTI := func(i int, f func(*rawTI)) func(*rawFile) { return func(r *rawFile) { f(&r.tis[i]) } }
	return []hostileCase{
		{"control-key", setKV(0, rawKV{key: "a\x00b\x1b[31m", typ: 8, val: strb("x")}), ""},
		{"invalid-utf8-key", setKV(0, rawKV{key: "k\xff\xfe", typ: 8, val: strb("x")}), ""},
		{"long-key", setKV(0, rawKV{key: strings.Repeat("k", 70000), typ: 8, val: strb("x")}), ""},
		{"bool-2", setKV(2, rawKV{key: "a", typ: 7, val: []byte{2}}), ""},
		{"bool-255", setKV(2, rawKV{key: "a", typ: 7, val: []byte{255}}), ""},
		{"bool-array-2", setKV(2, rawKV{key: "a", typ: 9, val: arrb(7, 3, []byte{1, 2, 0})}), ""},
		{"0-dims", func(r *rawFile) {
			r.tis[1].dims = nil // a scalar: 4 bytes, then the padding
			clear(r.data[68:])
		}, ""},
		{"empty-name", setTI(1, func(t *rawTI) { t.name = "" }), ""},
		{"nul-in-name", setTI(1, func(t *rawTI) { t.name = "t1\x00x" }), ""},
		{"control-name", setTI(1, func(t *rawTI) { t.name = "t\n\x7f\xff" }), ""},
		{"no-tensors-no-padding", func(r *rawFile) {
			r.kvs[1] = rawKV{key: AlignmentKey, typ: 4, val: u32b(1 << 31)}
			r.tis, r.data, r.align = nil, nil, 1
		}, ""},
	}
}

// TestLaxAcceptedRoundTrip opens each lax file and writes it back with the
// KVs and tensors as read: the output must equal the input byte for byte
// (a BOOL stored as 2 stays 2, odd names and keys keep their bytes).
func TestLaxAcceptedRoundTrip(t *testing.T) {
	dir := t.TempDir()
	for _, c := range laxCases() {
		t.Run(c.name, func(t *testing.T) {
			r := validRaw()
			c.mutate(r)
			in := r.bytes()
			f, err := NewReader(bytes.NewReader(in), int64(len(in)))
			if err != nil {
				t.Fatalf("refused: %v", err)
			}
			for _, kv := range f.KVs {
				if got, ok := f.KV(kv.Key); !ok || got.Key != kv.Key {
					t.Fatalf("KV(%q) not found", kv.Key)
				}
			}
			for _, ti := range f.Tensors {
				if got, ok := f.Tensor(ti.Name); !ok || got.Name != ti.Name {
					t.Fatalf("Tensor(%q) not found", ti.Name)
				}
				if k := nameKey(ti.Name); k != ti.Name {
					if _, ok := f.Tensor(k); ok {
						t.Fatalf("Tensor(%q) finds %q", k, ti.Name)
					}
				}
			}
			out := filepath.Join(dir, c.name+".gguf")
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
			got, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, in) {
				t.Fatalf("rewritten file differs: %d bytes, want %d", len(got), len(in))
			}
		})
	}
}

// TestBoolBytesFollowData checks that a kept BOOL byte is written only
// while the value still says the same: set to false, a 2 becomes 0.
func TestBoolBytesFollowData(t *testing.T) {
	r := validRaw()
	r.kvs[2] = rawKV{key: "a", typ: 9, val: arrb(7, 2, []byte{2, 3})}
	in := r.bytes()
	f, err := NewReader(bytes.NewReader(in), int64(len(in)))
	if err != nil {
		t.Fatal(err)
	}
	v := f.KVs[2].Value
	if b, _ := v.Data.([]bool); len(b) != 2 || !b[0] || !b[1] {
		t.Fatalf("bools %v, want [true true]", v.Data)
	}
	if got := appendValue(nil, v); !bytes.Equal(got[12:], []byte{2, 3}) {
		t.Fatalf("as read: % x", got[12:])
	}
	v.Data.([]bool)[1] = false
	if got := appendValue(nil, v); !bytes.Equal(got[12:], []byte{2, 0}) {
		t.Fatalf("after a change: % x, want 02 00", got[12:])
	}
	if got := appendValue(nil, Bool(true)); !bytes.Equal(got, []byte{1}) {
		t.Fatalf("Bool(true) encodes as % x", got)
	}
}

// TestLargeArraysStayInFile reads arrays over MaxEagerArrayBytes (bytes
// and strings): they come back as *ArrayRef without being decoded, Load
// decodes them, and the writer copies them byte for byte.
func TestLargeArraysStayInFile(t *testing.T) {
	n := MaxEagerArrayBytes + 5
	u8 := make([]byte, n)
	for i := range u8 {
		u8[i] = byte(i * 7)
	}
	var strs []byte
	words := uint64(0)
	for len(strs) <= MaxEagerArrayBytes {
		strs = appendString(strs, strings.Repeat("w", int(words%13)))
		words++
	}
	r := validRaw()
	r.kvs = append(r.kvs,
		rawKV{key: "big.u8", typ: 9, val: arrb(0, uint64(n), u8)},
		rawKV{key: "big.str", typ: 9, val: arrb(8, words, strs)})
	path := filepath.Join(t.TempDir(), "big.gguf")
	in := r.bytes()
	if err := os.WriteFile(path, in, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, c := range []struct {
		key  string
		n    uint64
		size int64
	}{{"big.u8", uint64(n), int64(n)}, {"big.str", words, int64(len(strs))}} {
		kv, _ := f.KV(c.key)
		a, ok := kv.Value.Data.(*ArrayRef)
		if !ok || a.Len() != c.n || a.Size() != c.size || kv.Value.Len() != int(c.n) {
			t.Fatalf("%s: %T %v, want an ArrayRef of %d elements in %d bytes", c.key, kv.Value.Data, kv.Value.Data, c.n, c.size)
		}
		v, err := a.Load()
		if err != nil {
			t.Fatal(err)
		}
		if v.Len() != int(c.n) {
			t.Fatalf("%s: loaded %d elements", c.key, v.Len())
		}
		if c.key == "big.u8" && !bytes.Equal(v.Data.([]byte), u8) {
			t.Fatalf("%s: loaded bytes differ", c.key)
		}
		if c.key == "big.str" && v.Data.([]string)[12] != strings.Repeat("w", 12) {
			t.Fatalf("%s: element 12 is %q", c.key, v.Data.([]string)[12])
		}
	}
	out := filepath.Join(t.TempDir(), "out.gguf")
	w, err := Create(out, Header{KVs: f.KVs, Tensors: f.Tensors}, CreateOptions{})
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
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, in) {
		t.Fatalf("rewritten file differs (%d bytes, want %d)", len(got), len(in))
	}
	// Once the source is closed, the arrays cannot be copied: Create says
	// which key and leaves nothing behind.
	f.Close()
	dir := t.TempDir()
	_, err = Create(filepath.Join(dir, "late.gguf"), Header{KVs: f.KVs}, CreateOptions{})
	if err == nil || !strings.Contains(err.Error(), `key "big.u8"`) {
		t.Fatalf("Create from a closed file: %v", err)
	}
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Fatalf("left behind: %v", left)
	}
}
