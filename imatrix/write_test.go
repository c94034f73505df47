package imatrix

import (
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/physarium/physarium-gguf/gguf"
)

// TestWriteGGUFRoundTrip writes llama-imatrix's own output (GGUF, and the
// legacy .dat converted by llama-imatrix) back with WriteGGUF and reads it
// again: the same entries and the same scales.
func TestWriteGGUFRoundTrip(t *testing.T) {
	gp, dp := realPair(t)
	for _, src := range []string{gp, dp} {
		m, err := Load(src)
		if err != nil {
			t.Fatal(err)
		}
		out := filepath.Join(t.TempDir(), "re.gguf")
		if err := m.WriteGGUF(out, gguf.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		back, err := Load(out)
		if err != nil {
			t.Fatal(err)
		}
		if back.Format != GGUF || back.ChunkCount != m.ChunkCount || back.ChunkSize != m.ChunkSize || len(back.Datasets) != len(m.Datasets) || len(back.Entries) != len(m.Entries) {
			t.Fatalf("%s: header %+v, want %+v", filepath.Base(src), back, m)
		}
		for name, e := range m.Entries {
			b := back.Entries[name]
			if b == nil || len(b.Sums) != len(e.Sums) || len(b.Counts) != len(e.Counts) {
				t.Fatalf("%s: entry %s lost or resized", filepath.Base(src), name)
			}
			n := len(e.Sums) / len(e.Counts)
			want, err := e.Scales(n, len(e.Counts))
			if err != nil {
				t.Fatal(err)
			}
			got, err := b.Scales(n, len(b.Counts))
			if err != nil {
				t.Fatal(err)
			}
			for i := range want {
				if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
					t.Fatalf("%s: %s column %d: scale %g after the rewrite, %g before", filepath.Base(src), name, i, got[i], want[i])
				}
			}
		}
	}
	// A missing directory is an error naming the path, and leaves nothing.
	m, _ := Load(gp)
	bad := filepath.Join(t.TempDir(), "no", "such", "dir", "x.gguf")
	if err := m.WriteGGUF(bad, gguf.CreateOptions{}); err == nil {
		t.Fatal("writing into a missing directory succeeded")
	}
	if _, err := os.Stat(bad); err == nil {
		t.Fatal("failed write left a file")
	}
}
