package quantize

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/physarium/physarium-gguf/quantize/internal/iqlattice"
)

// TestIQSearchGenerated checks that iq_search.bin is what building the
// search tables from the grids of iq_tables.go by ggml's rules gives, byte
// for byte, both in this process and through the go:generate command, and
// that the tables read from it are the ones built.
func TestIQSearchGenerated(t *testing.T) {
	grids := iqSearchGrids()
	want, err := iqlattice.Encode(grids)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(iqSearchBin, want) {
		t.Fatalf("iq_search.bin (%d bytes) is not the tables built from iq_tables.go (%d bytes): run go generate ./quantize", len(iqSearchBin), len(want))
	}
	for i, g := range grids {
		built, err := iqlattice.Build(g)
		if err != nil {
			t.Fatal(err)
		}
		s := iqSearches[i].tables()
		if !slicesEqual(s.kmap, built.Map) || !bytes.Equal(s.gridL, built.Lattice) || len(s.nbrs) != len(built.Lists) {
			t.Fatalf("%s: the tables read differ from the tables built", g.Name)
		}
		entries := 0
		for k, l := range built.Lists {
			if !slicesEqual(s.nbrs[k], l) {
				t.Fatalf("%s: neighbour list %d differs", g.Name, k)
			}
			entries += len(l)
		}
		t.Logf("%s: %d neighbour lists, %.1f entries on average", g.Name, len(built.Lists), float64(entries)/float64(len(built.Lists)))
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command to run the generator with")
	}
	out := filepath.Join(t.TempDir(), "iq_search.bin")
	cmd := exec.Command(goTool, "run", "internal/iqsearchgen/main.go", "-tables", "iq_tables.go", "-o", out)
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("generator: %v\n%s", err, msg)
	}
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, iqSearchBin) {
		t.Fatal("the generator's output differs from iq_search.bin")
	}
}

func slicesEqual[T comparable](a, b []T) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
