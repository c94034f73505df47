package iqlattice

import (
	"slices"
	"testing"
)

// tiny is a 2-value grid of 3 entries on values 1, 2, 3.
var tiny = Grid{Name: "tiny", Entries: []uint64{0x0101, 0x0302, 0x0203}, Dims: 2, Bits: 2, MaxL: 2, NWant: 1}

// TestBuildTiny checks the rules on a grid small enough to work by hand.
func TestBuildTiny(t *testing.T) {
	tb, err := Build(tiny)
	if err != nil {
		t.Fatal(err)
	}
	// Entry 0 is l (0, 0), index 0; entry 1 (1, 2), index 1|2<<2 = 9;
	// entry 2 (2, 1), index 2|1<<2 = 6.
	if tb.Map[0] != 0 || tb.Map[9] != 1 || tb.Map[6] != 2 {
		t.Fatalf("map %v", tb.Map)
	}
	if !slices.Equal(tb.Lattice, []uint8{0, 0, 1, 2, 2, 1}) {
		t.Fatalf("lattice %v", tb.Lattice)
	}
	// Index 5 is l (1, 1), the point (3, 3): entries 1 (3, 5) and 2 (5, 3)
	// are both at squared distance 4, entry 0 (1, 1) at 8.
	if l := tb.Lists[-1-tb.Map[5]]; !slices.Equal(l, []uint16{1, 2}) {
		t.Fatalf("list of (1, 1): %v", l)
	}
	// Index 3 has l = 3 > MaxL: never looked up.
	if tb.Map[3] != Unused {
		t.Fatalf("index 3: %d", tb.Map[3])
	}
}

// TestEncodeDecode checks that Decode gives back what Build made and
// refuses damaged data.
func TestEncodeDecode(t *testing.T) {
	data, err := Encode([]Grid{tiny, tiny})
	if err != nil {
		t.Fatal(err)
	}
	tb, _ := Build(tiny)
	rest := data
	for range 2 {
		var got *Tables
		got, rest, err = Decode(rest, tiny)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got.Map, tb.Map) || !slices.Equal(got.Lattice, tb.Lattice) || len(got.Lists) != len(tb.Lists) {
			t.Fatalf("decoded %+v, built %+v", got, tb)
		}
		for i := range got.Lists {
			if !slices.Equal(got.Lists[i], tb.Lists[i]) {
				t.Fatalf("list %d: %v, built %v", i, got.Lists[i], tb.Lists[i])
			}
		}
	}
	if len(rest) != 0 {
		t.Fatalf("%d bytes left", len(rest))
	}
	for _, n := range []int{0, 3, len(data)/2 - 1} {
		if _, _, err := Decode(data[:n], tiny); err == nil {
			t.Errorf("%d bytes accepted", n)
		}
	}
	bad := slices.Clone(data)
	bad[6] = 99 // index 0 (on the grid) now names entry 99, past the grid
	if _, _, err := Decode(bad, tiny); err == nil {
		t.Error("a damaged marker was accepted")
	}
}
