package gguf

import (
	"bytes"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
)

// phased returns a copy of b in memory whose address is congruent to pos
// modulo a, as a caller that wants its writes to go to disk uncopied
// allocates it.
func phased(b []byte, pos int64, a int) []byte {
	out, _ := InPhase(nil, len(b), pos, a)
	copy(out, b)
	return out
}

// bigHeader has tensors of awkward sizes: smaller than a block, not a
// multiple of one, several stages long, and empty.
func bigHeader() Header {
	return Header{
		KVs: []KV{{"general.architecture", String("llama")}, {"x.pad", String("0123456789")}},
		Tensors: []TensorInfo{
			{Name: "tiny", Type: TypeF32, Shape: []uint64{3}},
			{Name: "odd", Type: TypeF16, Shape: []uint64{4099, 3}},
			{Name: "big", Type: TypeF32, Shape: []uint64{1 << 20, 3}}, // 12 MB: three stages
			{Name: "empty", Type: TypeF32, Shape: []uint64{0}},
			{Name: "mid", Type: TypeQ8_0, Shape: []uint64{32 * 1001, 7}},
		},
	}
}

// writeAll writes data (the tensors' bytes, back to back) through w in
// pieces of random sizes, some copied into memory of the phase that
// DirectAlign asks for, some at random addresses.
// With inPhase, every piece is in phase and at least 8 KB long (but the
// last of a tensor).
func writeAll(t *testing.T, w *Writer, data [][]byte, rng *rand.Rand, inPhase bool) {
	t.Helper()
	a := w.DirectAlign()
	tensors := w.Tensors()
	for ti, d := range data {
		for done := 0; done < len(d); {
			n := min(len(d)-done, 1+rng.IntN(3<<20))
			if rng.IntN(3) == 0 && !inPhase {
				n = min(len(d)-done, 1+rng.IntN(700))
			}
			n = max(n, min(len(d)-done, 8<<10))
			piece := d[done : done+n]
			if inPhase || rng.IntN(2) == 0 {
				pos := int64(w.DataOffset() + tensors[ti].Offset + uint64(done))
				piece = phased(piece, pos, a)
			} else {
				piece = append(make([]byte, 0, n+1)[1:1], piece...)[:n]
			}
			if _, err := w.Write(piece); err != nil {
				t.Fatal(err)
			}
			done += n
		}
	}
}

// TestDirectSameBytes writes one file through the page cache and with
// direct I/O (with the alignment the file system states, and with one too
// small, which it refuses partway, so the writer falls back), with Create
// and with CreateDeferred, in pieces of random sizes and phases, and checks
// every file is byte-identical; with direct I/O and pieces in phase, that
// almost nothing is copied.
func TestDirectSameBytes(t *testing.T) {
	defer func() { useDirectIO, testDirectAlign = true, 0 }()
	dir := t.TempDir()
	fsAlign := directAlignOf(t, dir)
	h := bigHeader()
	rng := rand.New(rand.NewPCG(1, 2))
	var data [][]byte
	for _, ti := range h.Tensors {
		n, err := ti.size()
		if err != nil {
			t.Fatal(err)
		}
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		data = append(data, b)
	}
	var want []byte
	for _, c := range []struct {
		name     string
		direct   bool
		align    int
		deferred bool
		inPhase  bool
	}{
		{"buffered", false, 0, false, false},
		{"buffered-deferred", false, 0, true, false},
		{"direct", true, 0, false, false},
		{"direct-deferred", true, 0, true, false},
		{"direct-in-phase", true, 0, false, true},
		{"direct-in-phase-deferred", true, 0, true, true},
		{"direct-refused", true, 256, false, false},
		{"direct-refused-deferred", true, 256, true, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			useDirectIO, testDirectAlign = c.direct, c.align
			path := filepath.Join(dir, c.name+".gguf")
			var w *Writer
			var err error
			if c.deferred {
				w, err = CreateDeferred(path, h, CreateOptions{})
			} else {
				w, err = Create(path, h, CreateOptions{})
			}
			if err != nil {
				t.Fatal(err)
			}
			out := w.out
			writeAll(t, w, data, rand.New(rand.NewPCG(3, uint64(len(c.name)))), c.inPhase)
			if c.deferred {
				err = w.CloseHeader(h)
			} else {
				err = w.Close()
			}
			if err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if want == nil {
				want = got
			} else if !bytes.Equal(got, want) {
				t.Fatalf("%d bytes differ from the buffered file's %d (first difference at %d)", len(got), len(want), firstDiff(got, want))
			}
			total := int64(len(got))
			t.Logf("%d of %d bytes written directly, %d staged", out.directBytes, total, out.staged)
			switch {
			case !c.direct:
				if out.directBytes != 0 {
					t.Fatalf("direct I/O off, but %d bytes written directly", out.directBytes)
				}
			case fsAlign == 1:
				t.Skipf("the file system of %s offers no direct I/O", dir)
			case c.align == 0 && out.directBytes < total*9/10:
				t.Fatalf("only %d of %d bytes written directly", out.directBytes, total)
			case c.align == 0 && c.inPhase && out.staged > total/50:
				t.Fatalf("%d of %d bytes staged: writes in phase are copied", out.staged, total)
			}
		})
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// directAlignOf returns the direct I/O alignment of a writer in dir (1:
// none).
func directAlignOf(t *testing.T, dir string) int {
	t.Helper()
	w, err := Create(filepath.Join(dir, "probe.gguf"), smallHeader(), CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	return w.DirectAlign()
}

// TestDirectRefusedFallsBack checks that a direct I/O alignment the file
// system does not accept makes the writer give direct I/O up, not fail.
func TestDirectRefusedFallsBack(t *testing.T) {
	defer func() { testDirectAlign = 0 }()
	dir := t.TempDir()
	if need := directAlignOf(t, dir); need < 512 {
		t.Skipf("the file system of %s needs direct I/O alignment %d: 256 is not refused", dir, need)
	}
	testDirectAlign = 256
	w, err := Create(filepath.Join(dir, "out.gguf"), bigHeader(), CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	tensors := w.Tensors()
	for _, ti := range tensors {
		n, _ := ti.size()
		for done := uint64(0); done < n; {
			k := min(n-done, 768)
			pos := int64(w.DataOffset() + ti.Offset + done)
			if _, err := w.Write(phased(bytes.Repeat([]byte{5}, int(k)), pos, 256)); err != nil {
				t.Fatalf("tensor %s: %v", ti.Name, err)
			}
			done += k
		}
	}
	if w.out.direct != nil || w.DirectAlign() != 1 {
		t.Fatalf("direct I/O still on (align %d) after writes at offsets of 256", w.DirectAlign())
	}
}
