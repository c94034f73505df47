package quantize

import (
	"math"
	"slices"
	"sync"
)

// The search tables of ggml's IQ grid encoders (iq2xs_init_impl and
// iq3xs_init_impl), built here by ggml's own rules from the grids in
// iq_tables.go, which internal/iqgen reads back from ggml's decoders:
//
//   - each grid entry becomes its lattice point: coordinate k is 2l+1, where
//     l is the rank of the entry's k-th value among the grid's distinct values
//     (IQ2: 8, 25, 43; IQ3: 4 ... 62; IQ1: -1, 0, 1);
//   - the map sends the index sum(l_k << bits*k) of a point to its grid
//     entry, and a point off the grid to its neighbour list: every grid
//     entry at the nwant smallest squared distances, ordered by (distance,
//     entry), as ggml's qsort over (d2, j) pairs orders them.
//
// ggml builds the lists for every index of its map; the encoders only look
// up points whose coordinates are at most maxL (they clamp l), so only those
// are built here, on first use (about 0.4 s for all six grids on one core).
// They are not generated into source as the grids are: the lists hold some
// 711,033 entries (megabytes of Go source) derived from 4,608 grid entries.

// iqSearch is the encoder's view of one grid.
type iqSearch struct {
	once  sync.Once
	src   func() []uint64 // the decoder's grid entries, one byte per value
	dims  int             // values per entry: 8, or 4 for the IQ3 grids
	bits  int             // bits per coordinate in a map index
	maxL  int             // the largest l an encoder looks up
	nwant int             // distinct distances in a neighbour list
	grid  []uint64        // lattice points, byte k = 2l+1
	gridF []float32       // the same, as float32, dims per entry
	gridL []uint8         // the l of each coordinate, dims per entry
	kmap  []int32         // index -> grid entry, or -1-list for a point off the grid
	nbrs  [][]uint16      // the neighbour lists
}

func gridOf[T uint32 | uint64](g []T) func() []uint64 {
	return func() []uint64 {
		out := make([]uint64, len(g))
		for i, v := range g {
			out[i] = uint64(v)
		}
		return out
	}
}

var (
	iq2xxsSearch = &iqSearch{src: gridOf(iq2xxsGrid[:]), dims: 8, bits: 2, maxL: 2, nwant: 2}
	iq2xsSearch  = &iqSearch{src: gridOf(iq2xsGrid[:]), dims: 8, bits: 2, maxL: 2, nwant: 2}
	iq2sSearch   = &iqSearch{src: gridOf(iq2sGrid[:]), dims: 8, bits: 2, maxL: 2, nwant: 1}
	iq1Search    = &iqSearch{src: gridOf(iq1sGrid[:]), dims: 8, bits: 2, maxL: 2, nwant: 3}
	iq3xxsSearch = &iqSearch{src: gridOf(iq3xxsGrid[:]), dims: 4, bits: 3, maxL: 7, nwant: 2}
	iq3sSearch   = &iqSearch{src: gridOf(iq3sGrid[:]), dims: 4, bits: 3, maxL: 7, nwant: 3}
)

// tables returns s with its tables built.
func (s *iqSearch) tables() *iqSearch {
	s.once.Do(s.build)
	return s
}

func (s *iqSearch) build() {
	entries := s.src()
	// The distinct values, in the order of their signed bytes (IQ1's grid
	// holds -1, 0, 1).
	var vals []int8
	for _, e := range entries {
		for k := 0; k < s.dims; k++ {
			v := int8(e >> (8 * k))
			if !slices.Contains(vals, v) {
				vals = append(vals, v)
			}
		}
	}
	slices.Sort(vals)
	s.grid = make([]uint64, len(entries))
	s.kmap = make([]int32, 1<<(s.bits*s.dims))
	for i := range s.kmap {
		s.kmap[i] = math.MinInt32 // never looked up
	}
	for j, e := range entries {
		var p uint64
		u := 0
		for k := 0; k < s.dims; k++ {
			l := slices.Index(vals, int8(e>>(8*k)))
			p |= uint64(2*l+1) << (8 * k)
			u |= l << (s.bits * k)
		}
		s.grid[j] = p
		s.kmap[u] = int32(j)
	}
	s.gridF = make([]float32, s.dims*len(s.grid))
	s.gridL = make([]uint8, s.dims*len(s.grid))
	for j, g := range s.grid {
		for k := 0; k < s.dims; k++ {
			s.gridF[s.dims*j+k] = float32(int8(g >> (8 * k)))
			s.gridL[s.dims*j+k] = uint8((int8(g>>(8*k)) - 1) / 2)
		}
	}
	d2 := make([]int, len(s.grid))
	var pos [8]int
	for u := range s.kmap {
		if s.kmap[u] >= 0 {
			continue
		}
		inRange := true
		for k := 0; k < s.dims; k++ {
			l := u >> (s.bits * k) & (1<<s.bits - 1)
			inRange = inRange && l <= s.maxL
			pos[k] = 2*l + 1
		}
		if !inRange {
			continue
		}
		// The nwant smallest distinct distances, then every entry at one of
		// them, by distance and then entry.
		var levels []int
		for j, g := range s.grid {
			d := 0
			for k := 0; k < s.dims; k++ {
				c := int(int8(g>>(8*k))) - pos[k]
				d += c * c
			}
			d2[j] = d
			if i, found := slices.BinarySearch(levels, d); !found && (i < s.nwant) {
				levels = slices.Insert(levels, i, d)
				if len(levels) > s.nwant {
					levels = levels[:s.nwant]
				}
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
		s.kmap[u] = -1 - int32(len(s.nbrs))
		s.nbrs = append(s.nbrs, list)
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
	if s.dims == 8 {
		gi = bestNeighbour8(s.gridF, list, (*[8]float32)(xval), (*[8]float32)(w), scale)
	} else {
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

// iqZeroWeight is the importance EncodeKeepZeros gives a zero value of an
// IQ grid type (every other value has importance 1).
const iqZeroWeight = 4

// iqEncodeKeepZeros runs enc with the keep-zeros importance weights.
func iqEncodeKeepZeros(enc func(dst []byte, src, qw []float32), dst []byte, src []float32) {
	qw := make([]float32, len(src))
	for i, v := range src {
		qw[i] = 1
		if v == 0 {
			qw[i] = iqZeroWeight
		}
	}
	enc(dst, src, qw)
}
