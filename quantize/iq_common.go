package quantize

import "math"

// Helpers shared by the IQ codecs. Every float operation follows the order of
// ggml's C code, and products that C rounds before an addition are wrapped in
// float32() so that Go never fuses them into an FMA.

// ksignsIQ2XS maps 7 stored sign bits to 8 sign bits: the eighth (bit 7) is
// set when the seven hold an odd number of ones, so every group of eight has
// an even number of negative values.
var ksignsIQ2XS = func() (t [128]uint8) {
	for i := range t {
		parity := 0
		for b := 0; b < 7; b++ {
			parity ^= i >> b & 1
		}
		t[i] = uint8(i | parity<<7)
	}
	return t
}()

// iqSigned returns v, negated when bit j of signs is set (ggml's kmask table
// is 1<<j). ggml writes this as a multiply by -1 or 1, which the compiler
// turns into a sign flip: a NaN changes sign too, so this is a negation
// (done on the sign bit, without a branch), not a multiply.
func iqSigned(v float32, signs uint8, j int) float32 {
	return math.Float32frombits(math.Float32bits(v) ^ uint32(signs>>j&1)<<31)
}

// kvaluesIQ4NLf is kvaluesIQ4NL as float32, the values ggml compares with.
var kvaluesIQ4NLf = func() (f [16]float32) {
	for i, v := range kvaluesIQ4NL {
		f[i] = float32(v)
	}
	return f
}()

// bestIndexIQ4 returns the index of the IQ4 value nearest to x, as ggml's
// best_index_int8 over kvalues_iq4nl does: x at or below the first value
// gives 0, at or above the last (or NaN) gives 15, otherwise the bracketing
// pair v[m-1] <= x < v[m] is found and the upper one wins unless
// x-v[m-1] < v[m]-x. ggml finds the pair by a bisection with unpredictable
// branches; this finds the same pair with four conditional moves.
func bestIndexIQ4(x float32) int {
	v := &kvaluesIQ4NLf
	if x <= v[0] {
		return 0
	}
	if !(x < v[15]) { // at or above the last value, or NaN
		return 15
	}
	base := 0 // largest index with v[base] <= x
	if s := base + 8; v[s] <= x {
		base = s
	}
	if s := base + 4; v[s] <= x {
		base = s
	}
	if s := base + 2; v[s] <= x {
		base = s
	}
	if s := base + 1; v[s] <= x {
		base = s
	}
	if x-v[base] < v[base+1]-x {
		return base
	}
	return base + 1
}

// nearestInt rounds f to the nearest integer, ties to even, by ggml's
// magic-number addition; it is exact for |f| <= 4194303 and, like ggml,
// returns a deterministic wrong value beyond.
func nearestInt(f float32) int {
	v := f + 12582912
	i := int32(math.Float32bits(v))
	return int((i & 0x007fffff) - 0x00400000)
}
