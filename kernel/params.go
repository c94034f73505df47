package kernel

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Mode selects the kill rule applied to the final conductivities D_T.
type Mode int

const (
	// Natural kills every non-zero weight with D_T < Theta * mean(D_T): the
	// mould decides how much of each tile dies. An alive rule keeps every row
	// and column of the tile with at least one surviving weight.
	Natural Mode = iota
	// Sparsity makes each tile end with exactly round(Sparsity * n) zero
	// weights (n = Rows*Cols): weights that are already zero count first, the
	// rest are the non-zero weights with the smallest D_T, ties broken by
	// row-major index. The alive rule does not apply.
	Sparsity
)

// String returns "natural" or "sparsity".
func (m Mode) String() string {
	switch m {
	case Natural:
		return "natural"
	case Sparsity:
		return "sparsity"
	}
	return "Mode(" + strconv.Itoa(int(m)) + ")"
}

// Params are the constants of the Physarium dynamics and the kill rule.
// The zero value is not valid; start from DefaultParams.
type Params struct {
	// G is the exponent of the response f(q) = q^G / (1 + q^G). It must lie in
	// [1, 4) and be a multiple of 1/256 (an integer plus a sum of powers of
	// two down to 2^-8), so that q^G needs only multiplies and square roots.
	G float32
	// Steps is T, the number of flow/adapt steps (>= 1).
	Steps int
	// CGIters is K, the number of preconditioned conjugate-gradient iterations
	// per step (>= 1), warm started from the previous step.
	CGIters int
	// H is the adaptation rate h in (0, 1]: D <- D + h (2 f(q) - D).
	H float32
	// Theta is the natural-mode threshold as a fraction of mean(D_T), in (0, 2).
	Theta float32
	// Mode is the kill rule.
	Mode Mode
	// Sparsity is the target fraction of zero weights per tile in Sparsity
	// mode, in [0, 1]. Ignored in Natural mode.
	Sparsity float64
}

// Calibrated defaults (KERNEL.md, "Calibrate"), chosen once with
//
//	go test ./kernel -run Calibrate -calibrate -v -timeout 30m
//
// on 16 seeded i.i.d. 256x256 tiles per distribution (1,048,576 weights; every
// rate below is killed weights / all weights of those tiles), h = 0.5, AVX2
// path (bit-identical to the others). Excerpt of the table (2026-11-27):
//
//	g        T K theta  gauss%  laplace%  t3%    rescued  overlap-with-magnitude  cost
//	                                                      iid%    row-scaled%    T*(K+2)
//	1.625    8 4 0.3    20.889  25.886    23.949  0       96.94   58.64          48
//	1.6875   8 4 0.3    23.001  28.212    26.292  0       97.00   59.12          48
//	1.75     8 4 0.3    25.018  30.385    28.515  0       96.97   59.64          48
//	1.6875   6 2 0.3    22.213  27.583    25.584  0       97.10   59.26          24
//	1.71875  4 2 0.3    21.890  27.566    25.477  0       97.31   60.17          16
//	1.75     4 2 0.3    22.569  28.311    26.244  0       97.34   60.39          16
//	1.75     4 2 0.29   22.254  27.982    25.904  0       97.33   60.42          16  <- default
//	1.75     4 1 0.29   22.267  28.000    25.923  0       97.75   58.91          12
//	1.75     3 2 0.3    21.721  27.620    25.495  0       97.51   61.49          12
//
// K hardly moves the rate (K = 2, 3, 4 agree to 0.002 points); T and g do.
// g = 1.75 = 1 + 1/2 + 1/4 needs two square roots per weight, the fewest of
// the candidates, and T = 4, K = 2 is the cheapest (T, K) with g = 1.75 inside
// 22.2 % +- 0.5 %; theta = 0.29 centres it (theta = 0.3 gives 22.57 %). K = 1
// also meets the numbers (cost 12) but is a single steepest-descent step per
// solve; K = 2 is kept so the flow is solved by a Krylov method at all. At
// T = 4 the final D is less bimodal than at T = 8, so theta matters more:
// about 0.33 points per 0.01 of theta.
const (
	defaultG       = 1.75
	defaultSteps   = 4
	defaultCGIters = 2
	defaultH       = 0.5
	defaultTheta   = 0.29
)

// DefaultParams returns the calibrated natural-mode constants.
func DefaultParams() Params {
	return Params{
		G:       defaultG,
		Steps:   defaultSteps,
		CGIters: defaultCGIters,
		H:       defaultH,
		Theta:   defaultTheta,
		Mode:    Natural,
	}
}

// String renders the parameters as space-separated key=value pairs, e.g.
// "g=1.75 T=4 K=2 h=0.5 theta=0.29"; in Sparsity mode " sparsity=0.5" is
// appended. It is the value of the GGUF key physarium.params.
func (p Params) String() string {
	f32 := func(x float32) string { return strconv.FormatFloat(float64(x), 'g', -1, 32) }
	var b strings.Builder
	fmt.Fprintf(&b, "g=%s T=%d K=%d h=%s theta=%s", f32(p.G), p.Steps, p.CGIters, f32(p.H), f32(p.Theta))
	if p.Mode == Sparsity {
		fmt.Fprintf(&b, " sparsity=%s", strconv.FormatFloat(p.Sparsity, 'g', -1, 64))
	}
	return b.String()
}

// Limits on the parameters, to bound the work of one tile.
const (
	maxSteps   = 1000
	maxCGIters = 1000
	gFracBits  = 8
)

// Validate reports whether p is usable.
func (p Params) Validate() error {
	if _, _, _, err := splitG(p.G); err != nil {
		return err
	}
	if p.Steps < 1 || p.Steps > maxSteps {
		return fmt.Errorf("kernel: steps T=%d out of range [1, %d]", p.Steps, maxSteps)
	}
	if p.CGIters < 1 || p.CGIters > maxCGIters {
		return fmt.Errorf("kernel: CG iterations K=%d out of range [1, %d]", p.CGIters, maxCGIters)
	}
	if !(p.H > 0 && p.H <= 1) {
		return fmt.Errorf("kernel: h=%v out of range (0, 1]", p.H)
	}
	if !(p.Theta > 0 && p.Theta < 2) {
		return fmt.Errorf("kernel: theta=%v out of range (0, 2)", p.Theta)
	}
	switch p.Mode {
	case Natural:
	case Sparsity:
		if !(p.Sparsity >= 0 && p.Sparsity <= 1) {
			return fmt.Errorf("kernel: sparsity=%v out of range [0, 1]", p.Sparsity)
		}
	default:
		return fmt.Errorf("kernel: unknown mode %d", int(p.Mode))
	}
	return nil
}

// splitG decomposes g = whole + sum_{k=1..top} bit_k 2^-k, bit_k = bits>>(k-1)&1.
func splitG(g float32) (whole int32, bits uint32, top int32, err error) {
	if !(g >= 1 && g < 4) {
		return 0, 0, 0, fmt.Errorf("kernel: g=%v out of range [1, 4)", g)
	}
	scaled := float64(g) * (1 << gFracBits)
	if scaled != math.Trunc(scaled) {
		return 0, 0, 0, errors.New("kernel: g=" + strconv.FormatFloat(float64(g), 'g', -1, 32) +
			" is not a multiple of 1/256 (an integer plus a sum of powers of two down to 2^-8)")
	}
	s := uint32(scaled)
	whole = int32(s >> gFracBits)
	frac := s & (1<<gFracBits - 1)
	for k := int32(1); k <= gFracBits; k++ {
		if frac>>(gFracBits-k)&1 != 0 {
			bits |= 1 << (k - 1)
			top = k
		}
	}
	return whole, bits, top, nil
}
