package quantize

import (
	"encoding/binary"
	"math"
)

// Zero-preserving encoders for the formats with a min (Q4_1, Q5_1): a value
// decodes as q*d + m, so 0 is on the grid only when m = -k*d for an integer
// code k. ggml's reference puts m at the block's minimum, which in general
// leaves pruned weights (exact zeros) at a small non-zero value. These
// encoders keep the reference bytes whenever they already decode every zero
// to exactly 0 (always for blocks without zeros), and otherwise choose k and
// d so that code k decodes to exactly 0 and the surviving values are fitted
// by least squares.
//
// Exactness: the decoder computes float32(float32(q)*d) + m with d and m read
// from fp16. With m = -(k*d) both representable in fp16, k*d is exact in
// float32 (at most 16 significant bits), so code k yields k*d - k*d = +0.
// d is rounded to as few significant bits as needed for k*d to fit fp16.

// keepZerosFormat describes one min-offset format for the shared fitter.
type keepZerosFormat struct {
	nmax       int // largest code (15 or 31)
	blockBytes int
	encode     func(dst []byte, src []float32) // the reference encoder
	decode     func(dst []float32, src []byte)
	pack       func(y []byte, d, m uint16, L *[qk]uint8)
}

var (
	q4_1KeepZeros = keepZerosFormat{15, 20, encodeQ4_1, decodeQ4_1, packQ4_1}
	q5_1KeepZeros = keepZerosFormat{31, 24, encodeQ5_1, decodeQ5_1, packQ5_1}
)

func encodeQ4_1KeepZeros(dst []byte, src []float32) { q4_1KeepZeros.encodeBlocks(dst, src) }
func encodeQ5_1KeepZeros(dst []byte, src []float32) { q5_1KeepZeros.encodeBlocks(dst, src) }

func packQ4_1(y []byte, d, m uint16, L *[qk]uint8) {
	binary.LittleEndian.PutUint16(y[0:], d)
	binary.LittleEndian.PutUint16(y[2:], m)
	for j := range 16 {
		y[4+j] = L[j] | L[j+16]<<4
	}
}

func packQ5_1(y []byte, d, m uint16, L *[qk]uint8) {
	binary.LittleEndian.PutUint16(y[0:], d)
	binary.LittleEndian.PutUint16(y[2:], m)
	var qh uint32
	for j := range 16 {
		y[8+j] = L[j]&0x0F | L[j+16]<<4
		qh |= uint32(L[j]>>4)<<j | uint32(L[j+16]>>4)<<(j+16)
	}
	binary.LittleEndian.PutUint32(y[4:], qh)
}

func (f *keepZerosFormat) encodeBlocks(dst []byte, src []float32) {
	var back [qk]float32
	for i := 0; i+qk <= len(src); i += qk {
		x := (*[qk]float32)(src[i:])
		y := dst[i/qk*f.blockBytes : (i/qk+1)*f.blockBytes]
		f.encode(y, x[:])
		hasZero := false
		for _, v := range x {
			if v == 0 {
				hasZero = true
				break
			}
		}
		if !hasZero {
			continue
		}
		f.decode(back[:], y)
		kept := true
		for j, v := range x {
			if v == 0 && back[j] != 0 {
				kept = false
				break
			}
		}
		if !kept {
			f.fit(y, x)
		}
	}
}

// roundSig rounds d to p significant bits.
func roundSig(d float64, p int) float64 {
	m, e := math.Frexp(d)
	return math.Ldexp(math.Round(math.Ldexp(m, p)), e-p)
}

// fit encodes a block holding exact zeros with code k on zero, trying every
// k and refining d by least squares; the zeros take code k, the other values
// their nearest code.
func (f *keepZerosFormat) fit(y []byte, x *[qk]float32) {
	nmax := f.nmax
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, v := range x {
		if v != 0 {
			lo, hi = min(lo, float64(v)), max(hi, float64(v))
		}
	}
	bestErr := math.Inf(1)
	var bestL, L [qk]uint8
	var bestD, bestM uint16 // zero values: d = 0, m = 0 decodes everything to 0
	if math.IsInf(lo, 1) || math.IsNaN(lo) || math.IsNaN(hi) || math.IsInf(lo, 0) || math.IsInf(hi, 0) {
		// All zeros (or non-finite values, which no fp16 grid holds): the
		// all-zero block keeps the zeros exact.
		packZeroBlock(f, y, &bestL)
		return
	}
	for k := 0; k <= nmax; k++ {
		if k == 0 && lo < 0 || k == nmax && hi > 0 {
			continue
		}
		d := 0.0
		if k > 0 {
			d = max(d, -lo/float64(k))
		}
		if k < nmax {
			d = max(d, hi/float64(nmax-k))
		}
		for iter := 0; iter < 3 && d > 0 && !math.IsInf(d, 0); iter++ {
			dh, mh, ok := zeroGrid(d, k)
			if !ok {
				break
			}
			df, mf := halfToFloat(dh), halfToFloat(mh)
			var err, sxq, sqq float64
			for j, v := range x {
				if v == 0 {
					L[j] = uint8(k)
					continue
				}
				q := int(math.Round(float64(v)/float64(df))) + k
				q = min(max(q, 0), nmax)
				L[j] = uint8(q)
				e := float64(v) - float64(float32(float32(q)*df)+mf)
				err += e * e
				sxq += float64(v) * float64(q-k)
				sqq += float64((q - k) * (q - k))
			}
			if err < bestErr {
				bestErr, bestL, bestD, bestM = err, L, dh, mh
			}
			if sqq == 0 {
				break
			}
			d = sxq / sqq
		}
	}
	f.pack(y, bestD, bestM, &bestL)
}

// zeroGrid returns fp16 d and m = -k*d, with d near dWant and k*d exact, so
// that code k decodes to exactly 0.
func zeroGrid(dWant float64, k int) (dh, mh uint16, ok bool) {
	for p := 11; p >= 1; p-- {
		dh = floatToHalf(float32(roundSig(dWant, p)))
		df := halfToFloat(dh)
		if df <= 0 || math.IsInf(float64(df), 0) {
			return 0, 0, false
		}
		mf := -(float32(k) * df)
		mh = floatToHalf(mf)
		if halfToFloat(mh) == mf && float32(float32(k)*df)+halfToFloat(mh) == 0 {
			return dh, mh, true
		}
	}
	return 0, 0, false
}

func packZeroBlock(f *keepZerosFormat, y []byte, L *[qk]uint8) {
	*L = [qk]uint8{}
	f.pack(y, 0, 0, L)
}
