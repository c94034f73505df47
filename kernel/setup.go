package kernel

import "math"

// foodOut mirrors phys_food_out: the food figures of a tile (AVX2 set-up).
type foodOut struct {
	Zero, N    int32
	MaxF, SumF float32
}

// foodFigures are the figures of a tile's food written into the arena.
type foodFigures struct {
	zero, n    int     // zero weights, non-zero foods (the edges)
	maxF, sumF float32 // the largest food and the tile reduction of the food
	haveSum    bool    // sumF is already computed (AVX2 set-up)
}

// prepare computes D0 and b of a tile into the arena. It returns false when
// the food is all zero (the tile kills nothing). With clampExp > 0 the food
// is first clamped to [m/2^clampExp, m*2^clampExp] (see clampFood).
func (k *Kernel) prepare(tl *Tile, work int64, clampExp int) (job, bool) {
	R, C := tl.Rows, tl.Cols
	cp, rp := pad8(C), pad8(R)
	mark := len(k.arena)
	var dOff int64
	if k.inC() {
		dOff = k.reserveRaw(R * cp) // phys_food writes every float, padding too
	} else {
		dOff = k.reserve(R * cp)
	}
	D := k.arena[dOff : dOff+int64(R*cp)]
	ff := k.writeFood(tl, D, cp)
	tl.Stats.ZeroBefore = ff.zero
	if ff.maxF == 0 {
		k.arena = k.arena[:mark]
		return job{}, false
	}
	if clampExp > 0 {
		tl.Stats.Clamped = k.clampFood(D, R, C, cp, clampExp, &ff)
	}
	rescaleFood(D, &ff)
	for o := 0; o < R && !ff.haveSum; o++ {
		ff.sumF += sumGo(D[o*cp : o*cp+cp])
	}
	// D0 is normalized over the tile's edges (non-zero food, counted in n):
	// zero weights are no tubes and do not dilute the means.
	fullRow, fullCol := k.normalize(D, R, C, cp, float32(ff.n)/ff.sumF)
	bIn := k.reserve(cp)
	bOut := k.reserve(rp)
	k.balance(D, R, C, cp, k.arena[bIn:bIn+int64(cp)], k.arena[bOut:bOut+int64(rp)], fullRow, fullCol)
	return job{D: dOff, BIn: bIn, BOut: bOut, Work: work, Rows: int32(R), Cp: int32(cp), Rp: int32(rp), N: int32(ff.n)}, true
}

// writeFood writes the food |w| (times the activation scale) of the tile
// into D (rows cp apart) and returns its figures.
func (k *Kernel) writeFood(tl *Tile, D []float32, cp int) foodFigures {
	stride := tl.stride()
	if k.inC() {
		foodAVX2(tl, stride, D, cp, &k.food)
		return foodFigures{zero: int(k.food.Zero), n: int(k.food.N), maxF: k.food.MaxF, sumF: k.food.SumF, haveSum: true}
	}
	var ff foodFigures
	for o := 0; o < tl.Rows; o++ {
		row := tl.W[o*stride : o*stride+tl.Cols]
		drow := D[o*cp : o*cp+tl.Cols]
		for i, w := range row {
			if w == 0 {
				ff.zero++
			}
			f := abs32(w)
			if tl.Act != nil {
				f = float32(f * tl.Act[i])
			}
			drow[i] = f
			if f != 0 {
				ff.n++
			}
			if f > ff.maxF {
				ff.maxF = f
			}
		}
	}
	return ff
}

// clampFood clamps every non-zero food of the tile in D to [m/2^c, m*2^c],
// m the median non-zero food (the lower median for an even count), and
// returns how many foods it moved. It is the range fallback of the package
// doc: applied only to a tile whose flow overflowed float32 unclamped. The
// sum is left to be computed; the edges stay the same.
func (k *Kernel) clampFood(D []float32, R, C, cp, c int, ff *foodFigures) int {
	k.keys = k.keys[:0]
	for o := 0; o < R; o++ {
		for _, f := range D[o*cp : o*cp+C] {
			if f != 0 {
				k.keys = append(k.keys, math.Float32bits(f)) // f > 0: bits sort as values
			}
		}
	}
	want := (len(k.keys) + 1) / 2
	if want >= len(k.keys) {
		return 0 // one food spans no range
	}
	pivot, _ := selectKey(k.keys, want)
	m := float64(math.Float32frombits(pivot))
	lo := float32(math.Ldexp(m, -c))
	hi := float32(math.Min(math.Ldexp(m, c), math.MaxFloat32))
	moved := 0
	ff.maxF, ff.sumF, ff.haveSum = 0, 0, false
	for o := 0; o < R; o++ {
		for i, f := range D[o*cp : o*cp+C] {
			switch {
			case f == 0:
				continue
			case f < lo:
				D[o*cp+i], moved = lo, moved+1
			case f > hi:
				D[o*cp+i], moved = hi, moved+1
			}
			ff.maxF = max(ff.maxF, D[o*cp+i])
		}
	}
	return moved
}

// rescaleFood multiplies the food by the power of two that brings its
// maximum near 1 when that maximum is beyond 2^±64: exact (unless a food
// falls below the subnormals) and it keeps the sums far from overflow. The
// edges are then counted again and the sum is left to be computed.
func rescaleFood(D []float32, ff *foodFigures) {
	e := math.Ilogb(float64(ff.maxF))
	if e <= 64 && e >= -64 {
		return
	}
	s := float32(math.Ldexp(1, -e))
	ff.n, ff.sumF, ff.haveSum = 0, 0, false
	for x := range D {
		D[x] = float32(D[x] * s)
		if D[x] != 0 {
			ff.n++
		}
	}
}

// normalize scales the food into D0 and counts the edges of every row
// (k.rowNZ) and column (k.colNZ); it reports whether some row or some column
// has an edge at every node of the other side.
func (k *Kernel) normalize(D []float32, R, C, cp int, scale float32) (fullRow, fullCol bool) {
	k.rowNZ = resize(k.rowNZ, R)
	k.colNZ = resize(k.colNZ, C)
	if k.inC() {
		scaleAVX2(D, R, C, cp, scale, k.rowNZ, k.colNZ)
	} else {
		for o := 0; o < R; o++ {
			drow := D[o*cp : o*cp+C]
			nz := int32(0)
			for i := range drow {
				v := float32(drow[i] * scale)
				drow[i] = v
				if v != 0 {
					nz++
					k.colNZ[i]++
				}
			}
			k.rowNZ[o] = nz
		}
	}
	for _, nz := range k.rowNZ {
		fullRow = fullRow || int(nz) == C
	}
	for _, nz := range k.colNZ {
		fullCol = fullCol || int(nz) == R
	}
	return fullRow, fullCol
}

// balance sets the supplies: 1 at each input node with edges, -c/r at each
// output node with edges, where c and r count the input and output nodes of
// its connected component; 0 at nodes without edges.
func (k *Kernel) balance(D []float32, R, C, cp int, bIn, bOut []float32, fullRow, fullCol bool) {
	if fullRow || fullCol {
		k.balanceConnected(bIn, bOut)
		return
	}
	find := k.components(D, R, C, cp)
	N := R + C
	k.compR = resize(k.compR, N)
	k.compC = resize(k.compC, N)
	for i := 0; i < C; i++ {
		if k.colNZ[i] > 0 {
			k.compC[find(int32(i))]++
		}
	}
	for o := 0; o < R; o++ {
		if k.rowNZ[o] > 0 {
			k.compR[find(int32(C+o))]++
		}
	}
	for i := 0; i < C; i++ {
		if k.colNZ[i] > 0 {
			bIn[i] = 1
		}
	}
	for o := 0; o < R; o++ {
		if k.rowNZ[o] > 0 {
			r := find(int32(C + o))
			bOut[o] = -float32(k.compC[r]) / float32(k.compR[r])
		}
	}
}

// balanceConnected is balance for a tile whose nodes with edges form one
// component (a full row or a full column joins them all).
func (k *Kernel) balanceConnected(bIn, bOut []float32) {
	r, c := 0, 0
	for _, nz := range k.rowNZ {
		if nz > 0 {
			r++
		}
	}
	for _, nz := range k.colNZ {
		if nz > 0 {
			c++
		}
	}
	drain := -float32(c) / float32(r)
	for i, nz := range k.colNZ {
		if nz > 0 {
			bIn[i] = 1
		}
	}
	for o, nz := range k.rowNZ {
		if nz > 0 {
			bOut[o] = drain
		}
	}
}

// components joins the nodes of every edge by union-find (inputs 0..C-1,
// outputs C..C+R-1) and returns the find function of the result.
func (k *Kernel) components(D []float32, R, C, cp int) func(int32) int32 {
	k.parent = resize(k.parent, R+C)
	for x := range k.parent {
		k.parent[x] = int32(x)
	}
	find := func(x int32) int32 {
		for k.parent[x] != x {
			k.parent[x] = k.parent[k.parent[x]]
			x = k.parent[x]
		}
		return x
	}
	for o := 0; o < R; o++ {
		for i, v := range D[o*cp : o*cp+C] {
			if v != 0 {
				a, b := find(int32(C+o)), find(int32(i))
				if a != b {
					k.parent[a] = b
				}
			}
		}
	}
	return find
}
