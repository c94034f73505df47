package kernel

import "fmt"

// Impl selects an implementation of the dynamics.
type Impl int

const (
	// Auto picks the fastest implementation available on this CPU.
	Auto Impl = iota
	// Generic is the pure-Go reference, always available.
	Generic
	// AVX2 is the C implementation with AVX2 and FMA intrinsics (amd64, cgo).
	AVX2
	// AVX512 is the C implementation with AVX-512 (F, VL, DQ) intrinsics
	// (amd64, cgo); it shares the set-up and finish of AVX2.
	AVX512
)

// String returns "auto", "generic", "avx2" or "avx512".
func (i Impl) String() string {
	switch i {
	case Auto:
		return "auto"
	case Generic:
		return "generic"
	case AVX2:
		return "avx2"
	case AVX512:
		return "avx512"
	}
	return fmt.Sprintf("Impl(%d)", int(i))
}

// ParseImpl parses "auto", "generic", "avx2" or "avx512".
func ParseImpl(s string) (Impl, error) {
	for _, i := range []Impl{Auto, Generic, AVX2, AVX512} {
		if s == i.String() {
			return i, nil
		}
	}
	return 0, fmt.Errorf("kernel: unknown implementation %q (want auto, generic, avx2 or avx512)", s)
}

// Available reports whether impl can run in this binary on this CPU.
func Available(impl Impl) bool {
	switch impl {
	case Auto, Generic:
		return true
	case AVX2:
		return haveAVX2
	case AVX512:
		return haveAVX512
	}
	return false
}

// MaxDim is the largest number of rows or columns of a tile.
const MaxDim = 256

// Tile is one tile of a row-major matrix and, after Run, its result.
type Tile struct {
	// W holds the weights: element (o, i) is W[o*Stride+i], 0 <= o < Rows,
	// 0 <= i < Cols. Only those elements are read, so W may be a view into a
	// band of rows of a wider matrix.
	W []float32
	// Rows and Cols are the tile's shape, each in [1, MaxDim].
	Rows, Cols int
	// Stride is the distance between rows in W; 0 means Cols.
	Stride int
	// Act is the optional per-column activation scale a_i (v2 food
	// F = |w| * a_i), len >= Cols, finite and >= 0; nil for v1 (F = |w|).
	// A tile whose food is all zero (e.g. all weights zero) kills nothing.
	Act []float32
	// Mask is the output, row-major Rows x Cols: 1 where the weight is killed
	// (it was non-zero and must be zeroed), 0 elsewhere. Run reuses it when
	// len(Mask) >= Rows*Cols and allocates it otherwise.
	Mask []byte
	// MaskStride, when not 0, is the distance between rows in Mask, so
	// that the mask of a tile can be written straight into the mask of a
	// wider matrix: element (o, i) is Mask[o*MaskStride+i], and Run writes
	// only those elements. Mask must then hold (Rows-1)*MaskStride+Cols
	// bytes; Run does not allocate it.
	MaskStride int
	// D is an optional output, row-major Rows x Cols: when len(D) >=
	// Rows*Cols, Run fills it with the final conductivity D_T of every
	// weight (0 for zero weights, which are no tubes, and for every weight
	// of a tile whose food is all zero). D_T is the same in every
	// implementation, bit for bit. nil (or shorter) means not wanted.
	D []float32
	// Stats is the output: the tile's figures.
	Stats TileStats
}

// TileStats are the figures of one tile after Run.
type TileStats struct {
	// Weights is Rows*Cols, the denominator of every rate of the tile.
	Weights int
	// ZeroBefore counts the weights that were exactly zero (never kills).
	ZeroBefore int
	// Killed counts the weights marked in the mask (all were non-zero).
	Killed int
	// Rescued counts the weights kept by the alive rule (natural mode).
	Rescued int
	// MeanD is the mean of D_T over the tile's edges (the weights with
	// non-zero food; zero weights are no tubes and dilute no mean). MinD and
	// MaxD range over the non-zero weights. All are 0 for a tile whose food
	// is all zero.
	MeanD, MinD, MaxD float32
	// Threshold is the natural-mode cut theta*mean(D_T) (0 in sparsity mode).
	Threshold float32
	// Clamped counts the foods moved by the range clamp (package doc,
	// "Range"): 0 unless the tile's food spans more decades than the flow
	// can carry in float32, as a single weight of 1e25 among weights near 1.
	Clamped int
	// Unsolved is true when the flow overflowed float32 even on the clamped
	// food: the tile then kills nothing and every figure but Weights and
	// ZeroBefore is 0. A caller should warn about such a tile.
	Unsolved bool
}

// Kernel runs the dynamics with fixed parameters and reusable scratch
// memory. A Kernel is not safe for concurrent use: use one per goroutine.
type Kernel struct {
	impl Impl
	p    Params
	cp   coreParams

	arena  []float32
	jobs   []job
	idx    []int // tile index of each job
	rowNZ  []int32
	colNZ  []int32
	parent []int32
	compR  []int32
	compC  []int32
	keys   []uint32
	alive  []int32
	food   foodOut   // C set-up output (kept here: no allocation per call)
	fin    finishOut // C finish output

	// debugD, when set (tests), receives D_T of each solved tile.
	debugD func(tile int, d []float32, cp int)
}

// New returns a Kernel running implementation impl (Auto picks the fastest
// available) with parameters p.
func New(impl Impl, p Params) (*Kernel, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	switch impl {
	case Auto:
		impl = Generic
		if haveAVX512 {
			impl = AVX512
		} else if haveAVX2 {
			impl = AVX2
		}
	case Generic:
	case AVX2:
		if !haveAVX2 {
			return nil, fmt.Errorf("kernel: implementation avx2 is not available (needs amd64, cgo and a CPU with AVX2 and FMA)")
		}
	case AVX512:
		if !haveAVX512 {
			return nil, fmt.Errorf("kernel: implementation avx512 is not available (needs amd64, cgo and a CPU with AVX-512 F, VL and DQ)")
		}
	default:
		return nil, fmt.Errorf("kernel: unknown implementation %d", int(impl))
	}
	whole, bits, top, _ := splitG(p.G)
	k := &Kernel{impl: impl, p: p}
	k.cp = coreParams{
		Steps: int32(p.Steps), CGIters: int32(p.CGIters),
		GWhole: whole, GTop: top, GBits: bits,
		C1: 1 - p.H, C2: 2 * p.H,
	}
	return k, nil
}

// inC reports whether the Kernel's set-up, weight check and finish run in C
// (the AVX2 helpers, shared by the AVX2 and AVX-512 paths).
func (k *Kernel) inC() bool { return k.impl == AVX2 || k.impl == AVX512 }

// Impl returns the implementation the Kernel runs (never Auto).
func (k *Kernel) Impl() Impl { return k.impl }

// Params returns the Kernel's parameters.
func (k *Kernel) Params() Params { return k.p }

// Run computes the mask and the figures of every tile. It returns an error,
// before touching any output, when a tile is malformed or holds a non-finite
// weight, activation or food value.
func (k *Kernel) Run(tiles []Tile) error {
	for t := range tiles {
		if err := checkTile(&tiles[t], k.inC()); err != nil {
			return fmt.Errorf("kernel: tile %d: %w", t, err)
		}
	}
	for start := 0; start < len(tiles); {
		end, weights := start, 0
		for end < len(tiles) && (end == start || weights+tiles[end].Rows*tiles[end].Cols <= maxBatch) {
			weights += tiles[end].Rows * tiles[end].Cols
			end++
		}
		k.runBatch(tiles[start:end], start)
		start = end
	}
	return nil
}
