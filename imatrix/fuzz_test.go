package imatrix

import (
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/physarium/physarium-gguf/gguf"
)

// legacySeed returns a small legacy .dat file: two entries, the last call
// count and a dataset name, in llama-imatrix's layout.
func legacySeed() []byte {
	var b []byte
	i32 := func(v int32) { b = binary.LittleEndian.AppendUint32(b, uint32(v)) }
	i32(2)
	for e, name := range []string{"blk.0.attn_q.weight", "blk.0.ffn_up.weight"} {
		i32(int32(len(name)))
		b = append(b, name...)
		i32(10)             // ncall
		i32(8 + 8*int32(e)) // nval
		for v := 0; v < 8+8*e; v++ {
			b = binary.LittleEndian.AppendUint32(b, math.Float32bits(float32(v+1)*0.5))
		}
	}
	i32(10)
	ds := "calib.txt"
	i32(int32(len(ds)))
	return append(b, ds...)
}

// ggufSeed writes a small GGUF importance matrix with the package's writer.
func ggufSeed(t testing.TB) []byte {
	m := &Matrix{Format: GGUF, Datasets: []string{"calib.txt"}, ChunkCount: 3, ChunkSize: 64,
		Entries: map[string]*Entry{
			"blk.0.attn_q.weight": {Name: "blk.0.attn_q.weight", Sums: []float32{1, 2, 3, 4, 5, 6, 7, 8}, Counts: []float64{3}},
		}}
	p := filepath.Join(t.TempDir(), "seed.imatrix.gguf")
	if err := m.WriteGGUF(p, gguf.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// FuzzLoad gives Load mutated GGUF and legacy importance matrices: it must
// never panic, and every refusal must be an "imatrix: " error naming the
// file. (Allocation from unchecked counts would show as an out-of-memory
// crash of the fuzzer.)
func FuzzLoad(f *testing.F) {
	f.Add(legacySeed())
	f.Add(ggufSeed(f))
	f.Add([]byte("GGUF"))
	f.Add([]byte{})
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		p := filepath.Join(dir, "in.imatrix")
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		m, err := Load(p)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "imatrix: ") || !strings.Contains(err.Error(), p) {
				t.Fatalf("error without the package prefix or the file: %v", err)
			}
			return
		}
		for name, e := range m.Entries {
			if len(e.Counts) == 0 || len(e.Sums)%len(e.Counts) != 0 {
				t.Fatalf("entry %s accepted with %d sums over %d counts", name, len(e.Sums), len(e.Counts))
			}
			_, _ = e.Scales(len(e.Sums)/len(e.Counts), len(e.Counts))
		}
		_ = m.Describe()
	})
}

// TestFuzzSeedsLoad checks that both seeds are valid files, so the fuzzer
// starts from inputs that reach every part of the loaders.
func TestFuzzSeedsLoad(t *testing.T) {
	for name, data := range map[string][]byte{"legacy": legacySeed(), "gguf": ggufSeed(t)} {
		p := filepath.Join(t.TempDir(), name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		m, err := Load(p)
		if err != nil {
			t.Fatalf("%s seed: %v", name, err)
		}
		if len(m.Entries) == 0 {
			t.Fatalf("%s seed: no entries", name)
		}
	}
}
