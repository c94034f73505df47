package quantize

import "math"

// The two passes of a block-type surgery around re-encoding: zero the
// kills in the values to encode, and measure what encoding and decoding
// did to the killed and the surviving values. Both have an AVX2 path
// (kzero_mask_avx2.c) that gives the same bits as the Go twin.

var (
	simdZeroKilled    simdRoutine[func(vals, before []float32, mask []byte) (killed, wasZero uint64)]
	simdMeasureKilled simdRoutine[func(got, before []float32, mask []byte, s *KilledStats)]
)

// ZeroKilled copies before into vals with every element whose mask byte is
// not zero set to +0, and returns how many it set and how many of those
// were already +0 or -0 (a kill of a zero weight is a caller's bug to
// report). vals and before must hold at least len(mask) values.
func ZeroKilled(vals, before []float32, mask []byte) (killed, wasZero uint64) {
	n := len(mask)
	vals, before = vals[:n], before[:n]
	if simd, ok := simdZeroKilled.use(); ok && n > 0 {
		return simd(vals, before, mask)
	}
	return zeroKilledGo(vals, before, mask)
}

func zeroKilledGo(vals, before []float32, mask []byte) (killed, wasZero uint64) {
	copy(vals, before)
	for i, m := range mask {
		if m != 0 {
			killed++
			if math.Float32bits(before[i])<<1 == 0 {
				wasZero++
			}
			vals[i] = 0
		}
	}
	return killed, wasZero
}

// KilledStats is what re-encoding did to a chunk of values (MeasureKilled).
type KilledStats struct {
	Killed    uint64 // elements whose mask byte is not zero
	ExactZero uint64 // of those, the ones that read back as +0 or -0
	// MaxKilledAbs is the largest magnitude a killed element reads back
	// as (0 without kills).
	MaxKilledAbs float32
	// SurvivorSq is the sum, over the other elements, of the squared
	// difference between the value read back and the value before, each
	// difference and square in float64, added into eight running sums
	// (element i into sum i mod 8, from +0) that are then combined as
	// ((s0+s4) + (s1+s5)) + ((s2+s6) + (s3+s7)): every path adds in that
	// order, so all give the same bits.
	SurvivorSq float64
}

// MeasureKilled compares got, the values read back after re-encoding,
// with before, the values they replace, element by element: the killed
// elements (mask byte not zero) should read back as zero, the others as
// close to before as the type allows. got and before must hold at least
// len(mask) values, all finite.
func MeasureKilled(got, before []float32, mask []byte) KilledStats {
	n := len(mask)
	got, before = got[:n], before[:n]
	var s KilledStats
	if simd, ok := simdMeasureKilled.use(); ok && n > 0 {
		simd(got, before, mask, &s)
		return s
	}
	measureKilledGo(got, before, mask, &s)
	return s
}

func measureKilledGo(got, before []float32, mask []byte, s *KilledStats) {
	var sums [8]float64
	var maxBits uint32
	for i, m := range mask {
		if m != 0 {
			s.Killed++
			g := math.Float32bits(got[i]) & 0x7fffffff
			if g == 0 {
				s.ExactZero++
			}
			maxBits = max(maxBits, g)
			continue
		}
		d := float64(got[i]) - float64(before[i])
		sums[i&7] += float64(d * d)
	}
	s.MaxKilledAbs = math.Float32frombits(maxBits)
	s.SurvivorSq = combineSums(&sums)
}

// combineSums adds the eight running sums of MeasureKilled in its order.
func combineSums(s *[8]float64) float64 {
	return ((s[0] + s[4]) + (s[1] + s[5])) + ((s[2] + s[6]) + (s[3] + s[7]))
}
