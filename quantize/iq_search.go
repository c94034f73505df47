package quantize

import (
	_ "embed"
	"math"
	"slices"
	"sync"

	"github.com/physarium/physarium-gguf/quantize/internal/iqlattice"
)

//go:generate go run internal/iqsearchgen/main.go -tables iq_tables.go -o iq_search.bin

// The search tables of ggml's IQ grid encoders (iq2xs_init_impl and
// iq3xs_init_impl: each grid entry's lattice point, the map from a point's
// index to its entry or to its neighbour list, and the lists) are built by
// ggml's rules (internal/iqlattice) from the grids in iq_tables.go, which
// internal/iqgen reads back from ggml's decoders, and written to
// iq_search.bin by go:generate (internal/iqsearchgen); TestIQSearchGenerated
// checks that building them again gives the same bytes. They are read from
// there on first use (building them takes about 0.4 s on one core; the
// lists hold some 711,000 entries).

//go:embed iq_search.bin
var iqSearchBin []byte

// iqSearch is the encoder's view of one grid.
type iqSearch struct {
	dims  int        // values per entry: 8, or 4 for the IQ3 grids
	bits  int        // bits per coordinate in a map index
	grid  []uint64   // lattice points, byte k = 2l+1
	gridF []float32  // the same, as float32, dims per entry
	gridL []uint8    // the l of each coordinate, dims per entry
	kmap  []int32    // index -> grid entry, or -1-list for a point off the grid
	nbrs  [][]uint16 // the neighbour lists
}

// The searches of the grids, in the order of iqlattice.Shapes.
var (
	iq2xxsSearch = &iqSearch{}
	iq2xsSearch  = &iqSearch{}
	iq2sSearch   = &iqSearch{}
	iq1Search    = &iqSearch{}
	iq3xxsSearch = &iqSearch{}
	iq3sSearch   = &iqSearch{}
	iqSearches   = []*iqSearch{iq2xxsSearch, iq2xsSearch, iq2sSearch, iq1Search, iq3xxsSearch, iq3sSearch}
	iqSearchOnce sync.Once
)

// iqSearchGrids returns iqlattice.Shapes with the grids of iq_tables.go.
func iqSearchGrids() []iqlattice.Grid {
	entries := [][]uint64{gridOf(iq2xxsGrid[:]), gridOf(iq2xsGrid[:]), gridOf(iq2sGrid[:]), gridOf(iq1sGrid[:]), gridOf(iq3xxsGrid[:]), gridOf(iq3sGrid[:])}
	grids := slices.Clone(iqlattice.Shapes)
	for i := range grids {
		grids[i].Entries = entries[i]
	}
	return grids
}

func gridOf[T uint32 | uint64](g []T) []uint64 {
	out := make([]uint64, len(g))
	for i, v := range g {
		out[i] = uint64(v)
	}
	return out
}

// tables returns s with its tables read.
func (s *iqSearch) tables() *iqSearch {
	iqSearchOnce.Do(loadIQSearches)
	return s
}

// loadIQSearches reads every grid's tables from iq_search.bin. A failure
// is a build that embedded a damaged file, which the package's tests
// catch.
func loadIQSearches() {
	data := iqSearchBin
	for i, g := range iqSearchGrids() {
		t, rest, err := iqlattice.Decode(data, g)
		if err != nil {
			panic("quantize: iq_search.bin: " + err.Error())
		}
		data = rest
		s := iqSearches[i]
		s.dims, s.bits, s.kmap, s.nbrs, s.gridL = g.Dims, g.Bits, t.Map, t.Lists, t.Lattice
		s.grid = make([]uint64, len(g.Entries))
		s.gridF = make([]float32, len(t.Lattice))
		for j := range s.grid {
			for k := 0; k < s.dims; k++ {
				p := 2*t.Lattice[s.dims*j+k] + 1
				s.grid[j] |= uint64(p) << (8 * k)
				s.gridF[s.dims*j+k] = float32(p)
			}
		}
	}
	if len(data) != 0 {
		panic("quantize: iq_search.bin: bytes left over")
	}
}

// neighbours returns the neighbour list of the off-grid point u.
func (s *iqSearch) neighbours(u int) []uint16 { return s.nbrs[-1-int(s.kmap[u])] }

// setL writes the l of grid entry j's coordinates into L.
func (s *iqSearch) setL(L []int8, j int) {
	g := s.grid[j]
	for i := 0; i < s.dims; i++ {
		L[i] = int8((int8(g>>(8*i)) - 1) / 2)
	}
}

// bestNeighbour is ggml's iq2_find_best_neighbour and
// iq3_find_best_neighbour: the neighbour of the off-grid point u that
// minimises sum w*(scale*q - x)^2, first one on ties; its l go to L. ggml
// aborts when no distance is below FLT_MAX (NaN or overflowing values);
// this takes the first neighbour then.
func (s *iqSearch) bestNeighbour(u int, xval, w []float32, scale float32, L []int8) int {
	list := s.neighbours(u)
	var gi int
	switch _, lanes := simdIQSearch.use(); {
	case lanes:
		gi = bestNeighbourLanes(s.dims, s.gridF, list, xval, w, scale)
	case s.dims == 8:
		gi = bestNeighbour8(s.gridF, list, (*[8]float32)(xval), (*[8]float32)(w), scale)
	default:
		gi = bestNeighbour4(s.gridF, list, (*[4]float32)(xval), (*[4]float32)(w), scale)
	}
	s.setL(L, gi)
	return gi
}

// bestNeighbour8 is bestNeighbour's search over 8-value entries. Each
// distance is summed in ggml's order; four candidates are summed side by
// side (independent chains) and compared in list order.
func bestNeighbour8(gridF []float32, list []uint16, x, w *[8]float32, scale float32) int {
	best := float32(math.MaxFloat32)
	gi := int(list[0])
	n := 0
	for ; n+4 <= len(list); n += 4 {
		q0 := (*[8]float32)(gridF[8*int(list[n]):])
		q1 := (*[8]float32)(gridF[8*int(list[n+1]):])
		q2 := (*[8]float32)(gridF[8*int(list[n+2]):])
		q3 := (*[8]float32)(gridF[8*int(list[n+3]):])
		var d0, d1, d2, d3 float32
		for i := 0; i < 8; i++ {
			xi, wi := x[i], w[i]
			e0 := float32(scale*q0[i]) - xi
			e1 := float32(scale*q1[i]) - xi
			e2 := float32(scale*q2[i]) - xi
			e3 := float32(scale*q3[i]) - xi
			d0 += float32(float32(wi*e0) * e0)
			d1 += float32(float32(wi*e1) * e1)
			d2 += float32(float32(wi*e2) * e2)
			d3 += float32(float32(wi*e3) * e3)
		}
		if d0 < best {
			best, gi = d0, int(list[n])
		}
		if d1 < best {
			best, gi = d1, int(list[n+1])
		}
		if d2 < best {
			best, gi = d2, int(list[n+2])
		}
		if d3 < best {
			best, gi = d3, int(list[n+3])
		}
	}
	for _, j := range list[n:] {
		q := (*[8]float32)(gridF[8*int(j):])
		var d2 float32
		for i := 0; i < 8; i++ {
			diff := float32(scale*q[i]) - x[i]
			d2 += float32(float32(w[i]*diff) * diff)
		}
		if d2 < best {
			best, gi = d2, int(j)
		}
	}
	return gi
}

// bestNeighbour4 is bestNeighbour's search over 4-value entries, four
// candidates side by side as in bestNeighbour8.
func bestNeighbour4(gridF []float32, list []uint16, x, w *[4]float32, scale float32) int {
	best := float32(math.MaxFloat32)
	gi := int(list[0])
	n := 0
	for ; n+4 <= len(list); n += 4 {
		q0 := (*[4]float32)(gridF[4*int(list[n]):])
		q1 := (*[4]float32)(gridF[4*int(list[n+1]):])
		q2 := (*[4]float32)(gridF[4*int(list[n+2]):])
		q3 := (*[4]float32)(gridF[4*int(list[n+3]):])
		var d0, d1, d2, d3 float32
		for i := 0; i < 4; i++ {
			xi, wi := x[i], w[i]
			e0 := float32(scale*q0[i]) - xi
			e1 := float32(scale*q1[i]) - xi
			e2 := float32(scale*q2[i]) - xi
			e3 := float32(scale*q3[i]) - xi
			d0 += float32(float32(wi*e0) * e0)
			d1 += float32(float32(wi*e1) * e1)
			d2 += float32(float32(wi*e2) * e2)
			d3 += float32(float32(wi*e3) * e3)
		}
		if d0 < best {
			best, gi = d0, int(list[n])
		}
		if d1 < best {
			best, gi = d1, int(list[n+1])
		}
		if d2 < best {
			best, gi = d2, int(list[n+2])
		}
		if d3 < best {
			best, gi = d3, int(list[n+3])
		}
	}
	for _, j := range list[n:] {
		q := (*[4]float32)(gridF[4*int(j):])
		var d2 float32
		for i := 0; i < 4; i++ {
			diff := float32(scale*q[i]) - x[i]
			d2 += float32(float32(w[i]*diff) * diff)
		}
		if d2 < best {
			best, gi = d2, int(j)
		}
	}
	return gi
}

// iqIndex returns the map index of the l in L (dims of them).
func (s *iqSearch) iqIndex(L []int8) int {
	u := 0
	for i := 0; i < s.dims; i++ {
		u |= int(L[i]) << (s.bits * i)
	}
	return u
}

// cmax is ggml's MAX(a, b): a > b ? a : b (b when either is NaN).
func cmax(a, b float32) float32 {
	if a > b {
		return a
	}
	return b
}

// iqClamp is MAX(lo, MIN(hi, l)).
func iqClamp(l, lo, hi int) int {
	return max(lo, min(hi, l))
}

// makeQPQuants is ggml's make_qp_quants: the non-negative codes 0..nmax of
// x under weights w that maximise the weighted fit, starting from nine
// scales near nmax/max and refining code by code; it returns the scale.
// Codes are stored as ggml's uint8 (a negative code wraps).
func makeQPQuants(nmax int, x []float32, L []uint8, w []float32) float32 {
	n := len(x)
	var mx float32
	for i := 0; i < n; i++ {
		mx = cmax(mx, x[i])
	}
	if mx < kGroupMaxEps {
		clear(L[:n])
		return 0
	}
	iscale := float32(nmax) / mx
	for i := 0; i < n; i++ {
		L[i] = uint8(nearestInt(float32(iscale * x[i])))
	}
	scale := 1 / iscale
	var bestMSE float32
	for i := 0; i < n; i++ {
		diff := x[i] - float32(scale*float32(L[i]))
		bestMSE += float32(float32(w[i]*diff) * diff)
	}
	for is := -4; is <= 4; is++ {
		if is == 0 {
			continue
		}
		iscaleIs := (float32(0.1*float32(is)) + float32(nmax)) / mx
		scaleIs := 1 / iscaleIs
		var mse float32
		for i := 0; i < n; i++ {
			l := min(nmax, nearestInt(float32(iscaleIs*x[i])))
			diff := x[i] - float32(scaleIs*float32(l))
			mse += float32(float32(w[i]*diff) * diff)
		}
		if mse < bestMSE {
			bestMSE, iscale = mse, iscaleIs
		}
	}
	var sumlx, suml2 float32
	for i := 0; i < n; i++ {
		l := min(nmax, nearestInt(float32(iscale*x[i])))
		L[i] = uint8(l)
		sumlx += float32(float32(w[i]*x[i]) * float32(l))
		suml2 += float32(float32(w[i]*float32(l)) * float32(l))
	}
	for itry := 0; itry < 5; itry++ {
		changed := 0
		for i := 0; i < n; i++ {
			wi, li := w[i], float32(L[i])
			slx := sumlx - float32(float32(wi*x[i])*li)
			sl2 := suml2 - float32(float32(wi*li)*li)
			if slx > 0 && sl2 > 0 {
				newL := min(nmax, nearestInt(float32(x[i]*sl2)/slx))
				if newL != int(L[i]) {
					nl := float32(newL)
					slx += float32(float32(wi*x[i]) * nl)
					sl2 += float32(float32(wi*nl) * nl)
					if float32(float32(slx*slx)*suml2) > float32(float32(sumlx*sumlx)*sl2) {
						L[i], sumlx, suml2 = uint8(newL), slx, sl2
						changed++
					}
				}
			}
		}
		if changed == 0 {
			break
		}
	}
	if suml2 > 0 {
		return sumlx / suml2
	}
	return 0
}

// iqZeroWeight is the factor by which EncodeKeepZeros and
// EncodeKeepZerosWeighted multiply the importance of a zero value of an IQ
// grid type (a nonzero value keeps its importance).
const iqZeroWeight = 4

// iqEncodeKeepZeros runs enc with the keep-zeros importance weights: for
// value i, base[i] (1 when base is nil), times iqZeroWeight when the value
// is zero.
func iqEncodeKeepZeros(enc func(dst []byte, src, qw []float32), dst []byte, src, base []float32) {
	qw := make([]float32, len(src))
	for i, v := range src {
		qw[i] = 1
		if base != nil {
			qw[i] = base[i]
		}
		if v == 0 {
			qw[i] *= iqZeroWeight
		}
	}
	enc(dst, src, qw)
}
