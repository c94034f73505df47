// Package iqlattice builds the search tables of ggml's IQ grid encoders
// (iq2xs_init_impl and iq3xs_init_impl) by ggml's own rules, from the
// grids that ggml's decoders use, and writes them in the form package
// quantize embeds (iq_search.bin, made by go:generate).
//
// The rules:
//
//   - each grid entry becomes its lattice point: coordinate k is l, the rank
//     of the entry's k-th value among the grid's distinct values (as signed
//     bytes: IQ2 8, 25, 43; IQ3 4 ... 62; IQ1 -1, 0, 1), and its map index is
//     sum(l_k << bits*k);
//   - the map sends the index of a point on the grid to its entry, and a
//     point off the grid to its neighbour list: every grid entry at the
//     nwant smallest squared distances between the points 2l+1, ordered by
//     (distance, entry), as ggml's qsort over (d2, j) pairs orders them.
//
// ggml builds the lists for every index of its map at run time; the
// encoders only look up points whose coordinates are at most MaxL (they
// clamp l), so only those are built.
package iqlattice

import (
	"encoding/binary"
	"fmt"
	"slices"
)

// Grid describes one grid: its entries as the decoder reads them (one byte
// per value, Dims values, little-endian), the bits per coordinate of a
// map index, the largest l an encoder looks up and the number of distinct
// distances in a neighbour list.
type Grid struct {
	Name    string
	Entries []uint64
	Dims    int
	Bits    int
	MaxL    int
	NWant   int
}

// Tables are one grid's search tables.
type Tables struct {
	// Lattice holds each entry's l, Dims per entry.
	Lattice []uint8
	// Map is indexed by map index: an entry (>= 0), -1-i for the i-th
	// neighbour list, or Unused for an index no encoder looks up.
	Map []int32
	// Lists are the neighbour lists, in the order of their map indices.
	Lists [][]uint16
}

// Shapes are the six grids of ggml's encoders, in the order of the
// embedded tables, named by their variables in quantize/iq_tables.go
// (Entries unset): IQ2_XXS, IQ2_XS, IQ2_S, IQ1_S and IQ1_M (one grid),
// IQ3_XXS, IQ3_S.
var Shapes = []Grid{
	{Name: "iq2xxsGrid", Dims: 8, Bits: 2, MaxL: 2, NWant: 2},
	{Name: "iq2xsGrid", Dims: 8, Bits: 2, MaxL: 2, NWant: 2},
	{Name: "iq2sGrid", Dims: 8, Bits: 2, MaxL: 2, NWant: 1},
	{Name: "iq1sGrid", Dims: 8, Bits: 2, MaxL: 2, NWant: 3},
	{Name: "iq3xxsGrid", Dims: 4, Bits: 3, MaxL: 7, NWant: 2},
	{Name: "iq3sGrid", Dims: 4, Bits: 3, MaxL: 7, NWant: 3},
}

// Unused marks a map index that no encoder looks up.
const Unused = -1 << 31

// values returns the distinct values of g's entries, ordered as signed
// bytes.
func (g Grid) values() []int8 {
	var vals []int8
	for _, e := range g.Entries {
		for k := 0; k < g.Dims; k++ {
			if v := int8(e >> (8 * k)); !slices.Contains(vals, v) {
				vals = append(vals, v)
			}
		}
	}
	slices.Sort(vals)
	return vals
}

// inRange reports whether every coordinate of map index u is at most MaxL,
// and writes the points 2l+1 to pos.
func (g Grid) inRange(u int, pos []int) bool {
	ok := true
	for k := 0; k < g.Dims; k++ {
		l := u >> (g.Bits * k) & (1<<g.Bits - 1)
		ok = ok && l <= g.MaxL
		pos[k] = 2*l + 1
	}
	return ok
}

// Build returns g's search tables.
func Build(g Grid) (*Tables, error) {
	if g.Dims <= 0 || g.Dims > 8 || g.Bits <= 0 || g.Bits*g.Dims > 24 || len(g.Entries) == 0 || len(g.Entries) > 1<<16 || g.NWant <= 0 {
		return nil, fmt.Errorf("iqlattice: grid %s: bad shape", g.Name)
	}
	vals := g.values()
	if len(vals) > g.MaxL+1 || len(vals) > 1<<g.Bits {
		return nil, fmt.Errorf("iqlattice: grid %s: %d distinct values for l up to %d", g.Name, len(vals), g.MaxL)
	}
	t := &Tables{Lattice: make([]uint8, g.Dims*len(g.Entries)), Map: make([]int32, 1<<(g.Bits*g.Dims))}
	for i := range t.Map {
		t.Map[i] = Unused
	}
	points := make([][8]int, len(g.Entries))
	for j, e := range g.Entries {
		u := 0
		for k := 0; k < g.Dims; k++ {
			l := slices.Index(vals, int8(e>>(8*k)))
			t.Lattice[g.Dims*j+k] = uint8(l)
			points[j][k] = 2*l + 1
			u |= l << (g.Bits * k)
		}
		if t.Map[u] != Unused {
			return nil, fmt.Errorf("iqlattice: grid %s: entries %d and %d are the same point", g.Name, t.Map[u], j)
		}
		t.Map[u] = int32(j)
	}
	d2 := make([]int, len(g.Entries))
	pos := make([]int, g.Dims)
	for u := range t.Map {
		if t.Map[u] >= 0 || !g.inRange(u, pos) {
			continue
		}
		// The nwant smallest distinct distances, then every entry at one
		// of them, by distance and then entry.
		var levels []int
		for j := range points {
			d := 0
			for k := 0; k < g.Dims; k++ {
				c := points[j][k] - pos[k]
				d += c * c
			}
			d2[j] = d
			if i, found := slices.BinarySearch(levels, d); !found && i < g.NWant {
				levels = slices.Insert(levels, i, d)
				levels = levels[:min(len(levels), g.NWant)]
			}
		}
		var list []uint16
		for _, lv := range levels {
			for j, d := range d2 {
				if d == lv {
					list = append(list, uint16(j))
				}
			}
		}
		t.Map[u] = -1 - int32(len(t.Lists))
		t.Lists = append(t.Lists, list)
	}
	return t, nil
}

// Encode writes the tables of each grid, in order, in the form Decode
// reads: per grid a little-endian uint32 count of the uint16 words that
// follow, then for every map index an encoder looks up, in increasing
// order, either 0 and the index's grid entry, or the length of its
// neighbour list and the list.
func Encode(grids []Grid) ([]byte, error) {
	var out []byte
	pos := make([]int, 8)
	for _, g := range grids {
		t, err := Build(g)
		if err != nil {
			return nil, err
		}
		var words []uint16
		for u, m := range t.Map {
			if !g.inRange(u, pos) {
				continue
			}
			switch {
			case m >= 0:
				words = append(words, 0, uint16(m))
			case m == Unused:
				return nil, fmt.Errorf("iqlattice: grid %s: index %d in range but unmapped", g.Name, u)
			default:
				list := t.Lists[-1-m]
				words = append(words, uint16(len(list)))
				words = append(words, list...)
			}
		}
		out = binary.LittleEndian.AppendUint32(out, uint32(len(words)))
		for _, w := range words {
			out = binary.LittleEndian.AppendUint16(out, w)
		}
	}
	return out, nil
}

// Decode reads the tables of grid g (of its Entries only their number
// counts) from data as Encode wrote them, and returns them with the data
// that follows.
func Decode(data []byte, g Grid) (*Tables, []byte, error) {
	if len(data) < 4 {
		return nil, nil, fmt.Errorf("iqlattice: grid %s: truncated", g.Name)
	}
	n := int(binary.LittleEndian.Uint32(data))
	data = data[4:]
	if len(data) < 2*n {
		return nil, nil, fmt.Errorf("iqlattice: grid %s: %d words, %d bytes", g.Name, n, len(data))
	}
	words := make([]uint16, n)
	for i := range words {
		words[i] = binary.LittleEndian.Uint16(data[2*i:])
	}
	rest := data[2*n:]
	t := &Tables{Lattice: make([]uint8, g.Dims*len(g.Entries)), Map: make([]int32, 1<<(g.Bits*g.Dims))}
	seen := make([]bool, len(g.Entries))
	pos := make([]int, 8)
	w := 0
	for u := range t.Map {
		t.Map[u] = Unused
		if !g.inRange(u, pos) {
			continue
		}
		if w >= len(words) {
			return nil, nil, fmt.Errorf("iqlattice: grid %s: words end at index %d", g.Name, u)
		}
		c := int(words[w])
		if c == 0 {
			if w+1 >= len(words) || int(words[w+1]) >= len(g.Entries) || seen[words[w+1]] {
				return nil, nil, fmt.Errorf("iqlattice: grid %s: bad entry at index %d", g.Name, u)
			}
			j := int(words[w+1])
			seen[j] = true
			t.Map[u] = int32(j)
			for k := 0; k < g.Dims; k++ {
				t.Lattice[g.Dims*j+k] = uint8((pos[k] - 1) / 2)
			}
			w += 2
			continue
		}
		if w+1+c > len(words) {
			return nil, nil, fmt.Errorf("iqlattice: grid %s: list at index %d overruns", g.Name, u)
		}
		list := words[w+1 : w+1+c : w+1+c]
		for _, j := range list {
			if int(j) >= len(g.Entries) {
				return nil, nil, fmt.Errorf("iqlattice: grid %s: list at index %d names entry %d", g.Name, u, j)
			}
		}
		t.Map[u] = -1 - int32(len(t.Lists))
		t.Lists = append(t.Lists, list)
		w += 1 + c
	}
	if w != len(words) {
		return nil, nil, fmt.Errorf("iqlattice: grid %s: %d words left over", g.Name, len(words)-w)
	}
	for j, s := range seen {
		if !s {
			return nil, nil, fmt.Errorf("iqlattice: grid %s: entry %d is not in the map", g.Name, j)
		}
	}
	return t, rest, nil
}
