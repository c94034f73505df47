package gguf

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// writeSmall writes smallHeader's tensor data (12 bytes for a, 68 for b)
// through w.
func writeSmall(t *testing.T, w *Writer) {
	t.Helper()
	if _, err := w.Write(bytes.Repeat([]byte{7}, 12)); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(bytes.Repeat([]byte{9}, 68)); err != nil {
		t.Fatal(err)
	}
}

// TestCreateDeferred writes the same file with Create and with
// CreateDeferred from provisional headers of the same padded size, of a
// size one padding unit smaller and larger, and checks the bytes are
// identical and that Moved says when the data had to move.
func TestCreateDeferred(t *testing.T) {
	dir := t.TempDir()
	final := smallHeader()
	final.KVs = append(final.KVs, KV{"x.count", String("12345")})
	want := filepath.Join(dir, "want.gguf")
	w, err := Create(want, final, CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	writeSmall(t, w)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	wantBytes, err := os.ReadFile(want)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name  string
		value string
		moved bool
	}{
		{"same", "99999", false},
		{"same-padding", "9", false}, // 4 bytes shorter, same 64-byte padding unit
		{"shorter", "", true},        // a key dropped: one padding unit shorter
		{"longer", strings.Repeat("9", 70), true},
		{"much-shorter", "", true},
	} {
		prov := smallHeader()
		switch c.name {
		case "shorter":
			// Drop a key so the provisional header pads to one unit less.
			prov.KVs = prov.KVs[1:2]
			prov.KVs = append(prov.KVs, KV{"x.count", String("1")})
		case "much-shorter":
			prov.KVs = []KV{{AlignmentKey, Uint32(64)}}
		default:
			prov.KVs = append(prov.KVs, KV{"x.count", String(c.value)})
		}
		path := filepath.Join(dir, c.name+".gguf")
		w, err := CreateDeferred(path, prov, CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		writeSmall(t, w)
		if err := w.CloseHeader(final); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, wantBytes) {
			t.Fatalf("%s: %d bytes differ from Create's %d", c.name, len(got), len(wantBytes))
		}
		if w.Moved() != c.moved {
			t.Fatalf("%s: Moved() = %v, want %v", c.name, w.Moved(), c.moved)
		}
	}
	for _, n := range dirNames(t, dir) {
		if strings.HasPrefix(n, ".") {
			t.Fatalf("temporary file %s left", n)
		}
	}
}

// TestCreateDeferredErrors: Close on a deferred writer, a final header with
// other tensors, another alignment, and missing data all fail and leave
// nothing behind.
func TestCreateDeferredErrors(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "out.gguf")
	cases := map[string]func(w *Writer) error{
		"close": func(w *Writer) error { writeSmall(t, w); return w.Close() },
		"tensor-type": func(w *Writer) error {
			writeSmall(t, w)
			h := smallHeader()
			h.Tensors[0].Type = TypeI32
			return w.CloseHeader(h)
		},
		"tensor-name": func(w *Writer) error {
			writeSmall(t, w)
			h := smallHeader()
			h.Tensors[2].Name = "c"
			return w.CloseHeader(h)
		},
		"alignment": func(w *Writer) error {
			writeSmall(t, w)
			h := smallHeader()
			h.KVs[1].Value = Uint32(32)
			return w.CloseHeader(h)
		},
		"incomplete": func(w *Writer) error {
			w.Write(make([]byte, 12))
			return w.CloseHeader(smallHeader())
		},
	}
	for name, f := range cases {
		w, err := CreateDeferred(path, smallHeader(), CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if err := f(w); err == nil {
			t.Fatalf("%s: no error", name)
		}
		if names := dirNames(t, dir); len(names) != 0 {
			t.Fatalf("%s: left %v", name, names)
		}
	}
	w, err := Create(path, smallHeader(), CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	writeSmall(t, w)
	if err := w.CloseHeader(smallHeader()); err == nil {
		t.Fatal("CloseHeader after Create: no error")
	}
	if names := dirNames(t, dir); len(names) != 0 {
		t.Fatalf("left %v", names)
	}
}
