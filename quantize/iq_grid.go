package quantize

import (
	"encoding/binary"

	"github.com/physarium/physarium-gguf/gguf"
)

//go:generate sh -c "CGO_CFLAGS=-I$PHYSARIUM_LLAMA/src/ggml/include go run internal/iqgen/main.go -lib $PHYSARIUM_LLAMA/lib/libggml-base.so -o iq_tables.go"

// The IQ grid types (IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S, IQ1_S, IQ1_M)
// store each group of 8 (or 4) values as an index into a fixed grid of
// magnitudes, plus sign bits and small per-group scales under an fp16
// super-scale. They have no zero code (every grid magnitude is nonzero): a
// value reads back as exactly 0 only in a block whose values are all zero.
//
// The grids in iq_tables.go were read back from the shipped ggml decoders by
// internal/iqgen; each decoder below follows ggml's to_float operation for
// operation, so decoding is bit-exact (NaN and Inf scales included). The
// encoders (iq1_encode.go, iq2_encode.go, iq3_encode.go) are ggml's, with
// or without importance weights; IQ2_XXS, IQ2_XS and IQ1_S exist in ggml
// only with them (NeedsWeights).

func init() {
	register(gguf.TypeIQ2_XXS, iqCodec(decodeIQ2XXS, encodeIQ2XXS, true))
	register(gguf.TypeIQ2_XS, iqCodec(decodeIQ2XS, encodeIQ2XS, true))
	register(gguf.TypeIQ2_S, iqCodec(decodeIQ2S, encodeIQ2S, false))
	register(gguf.TypeIQ3_XXS, iqCodec(decodeIQ3XXS, encodeIQ3XXS, false))
	register(gguf.TypeIQ3_S, iqCodec(decodeIQ3S, encodeIQ3S, false))
	register(gguf.TypeIQ1_S, iqCodec(decodeIQ1S, encodeIQ1S, true))
	register(gguf.TypeIQ1_M, iqCodec(decodeIQ1M, encodeIQ1M, false))
}

// iqCodec is the codec of an IQ grid type: enc takes importance weights
// (nil, or one per value), and needsWeights says that ggml has no encoder
// without them.
func iqCodec(dec func([]float32, []byte), enc func(dst []byte, src, qw []float32), needsWeights bool) codec {
	c := codec{
		decode:            dec,
		encodeWeighted:    enc,
		encodeKeepZeros:   func(dst []byte, src []float32) { iqEncodeKeepZeros(enc, dst, src, nil) },
		keepZerosWeighted: func(dst []byte, src, qw []float32) { iqEncodeKeepZeros(enc, dst, src, qw) },
		needsWeights:      needsWeights,
		zero:              ZeroNone,
	}
	if !needsWeights {
		c.encode = func(dst []byte, src []float32) { enc(dst, src, nil) }
	}
	return c
}

// iq1Delta is the offset IQ1_S and IQ1_M add to every grid value (sign from
// a per-group bit).
const iq1Delta = 0.125

// Block sizes in bytes, all for 256 values.
const (
	iq2xxsBytes = 66
	iq2xsBytes  = 74
	iq2sBytes   = 82
	iq3xxsBytes = 98
	iq3sBytes   = 110
	iq1sBytes   = 50
	iq1mBytes   = 56
)

// grid8 writes y[j] = db * byte j of g * sign j, for 8 values.
func grid8(y []float32, db float32, g uint64, signs uint8) {
	y = y[:8]
	for j := range y {
		y[j] = iqSigned(db*float32(uint8(g>>(8*j))), signs, j)
	}
}

func decodeIQ2XXS(dst []float32, src []byte) {
	for len(src) >= iq2xxsBytes && len(dst) >= 256 {
		b := src[:iq2xxsBytes]
		d := halfToFloat(binary.LittleEndian.Uint16(b))
		for ib := 0; ib < 8; ib++ {
			q := b[2+8*ib : 2+8*ib+8]
			aux1 := binary.LittleEndian.Uint32(q[4:])
			db := float32(d*(0.5+float32(aux1>>28))) * 0.25
			for l := 0; l < 4; l++ {
				signs := ksignsIQ2XS[aux1>>(7*l)&127]
				grid8(dst[32*ib+8*l:], db, iq2xxsGrid[q[l]], signs)
			}
		}
		src, dst = src[iq2xxsBytes:], dst[256:]
	}
}

func decodeIQ2XS(dst []float32, src []byte) {
	for len(src) >= iq2xsBytes && len(dst) >= 256 {
		b := src[:iq2xsBytes]
		d := halfToFloat(binary.LittleEndian.Uint16(b))
		scales := b[66:74]
		for ib := 0; ib < 8; ib++ {
			db0 := float32(d*(0.5+float32(scales[ib]&0xf))) * 0.25
			db1 := float32(d*(0.5+float32(scales[ib]>>4))) * 0.25
			for l := 0; l < 4; l++ {
				q := binary.LittleEndian.Uint16(b[2+2*(4*ib+l):])
				db := db0
				if l >= 2 {
					db = db1
				}
				grid8(dst[32*ib+8*l:], db, iq2xsGrid[q&511], ksignsIQ2XS[q>>9])
			}
		}
		src, dst = src[iq2xsBytes:], dst[256:]
	}
}

func decodeIQ2S(dst []float32, src []byte) {
	for len(src) >= iq2sBytes && len(dst) >= 256 {
		b := src[:iq2sBytes]
		d := halfToFloat(binary.LittleEndian.Uint16(b))
		qs := b[2:34]
		signs := b[34:66]
		qh := b[66:74]
		scales := b[74:82]
		for ib := 0; ib < 8; ib++ {
			db0 := float32(d*(0.5+float32(scales[ib]&0xf))) * 0.25
			db1 := float32(d*(0.5+float32(scales[ib]>>4))) * 0.25
			for l := 0; l < 4; l++ {
				db := db0
				if l >= 2 {
					db = db1
				}
				idx := int(qs[4*ib+l]) | int(qh[ib])<<(8-2*l)&0x300
				grid8(dst[32*ib+8*l:], db, iq2sGrid[idx], signs[4*ib+l])
			}
		}
		src, dst = src[iq2sBytes:], dst[256:]
	}
}

// grid4x2 writes 8 values from two 4-value grid entries g1, g2.
func grid4x2(y []float32, db float32, g1, g2 uint32, signs uint8) {
	y = y[:8]
	for j := 0; j < 4; j++ {
		y[j] = iqSigned(db*float32(uint8(g1>>(8*j))), signs, j)
		y[j+4] = iqSigned(db*float32(uint8(g2>>(8*j))), signs, j+4)
	}
}

func decodeIQ3XXS(dst []float32, src []byte) {
	for len(src) >= iq3xxsBytes && len(dst) >= 256 {
		b := src[:iq3xxsBytes]
		d := halfToFloat(binary.LittleEndian.Uint16(b))
		qs := b[2:66]
		ss := b[66:98]
		for ib := 0; ib < 8; ib++ {
			aux := binary.LittleEndian.Uint32(ss[4*ib:])
			db := float32(d*(0.5+float32(aux>>28))) * 0.5
			q := qs[8*ib : 8*ib+8]
			for l := 0; l < 4; l++ {
				signs := ksignsIQ2XS[aux>>(7*l)&127]
				grid4x2(dst[32*ib+8*l:], db, iq3xxsGrid[q[2*l]], iq3xxsGrid[q[2*l+1]], signs)
			}
		}
		src, dst = src[iq3xxsBytes:], dst[256:]
	}
}

func decodeIQ3S(dst []float32, src []byte) {
	for len(src) >= iq3sBytes && len(dst) >= 256 {
		b := src[:iq3sBytes]
		d := halfToFloat(binary.LittleEndian.Uint16(b))
		qs := b[2:66]
		qh := b[66:74]
		signs := b[74:106]
		scales := b[106:110]
		for ib := 0; ib < 8; ib++ {
			// Sub-blocks 2k and 2k+1 share scales[k] (low, high nibble).
			db := d * float32(1+2*int(scales[ib/2]>>(4*(ib%2))&0xf))
			q := qs[8*ib : 8*ib+8]
			h := int(qh[ib])
			for l := 0; l < 4; l++ {
				i1 := int(q[2*l]) | h<<(8-2*l)&256
				i2 := int(q[2*l+1]) | h<<(7-2*l)&256
				grid4x2(dst[32*ib+8*l:], db, iq3sGrid[i1], iq3sGrid[i2], signs[4*ib+l])
			}
		}
		src, dst = src[iq3sBytes:], dst[256:]
	}
}

// iq1Group writes y[j] = dl * (grid j + delta) for 8 values.
func iq1Group(y []float32, dl, delta float32, g uint64) {
	y = y[:8]
	for j := range y {
		y[j] = dl * float32(float32(int8(uint8(g>>(8*j))))+delta)
	}
}

func decodeIQ1S(dst []float32, src []byte) {
	for len(src) >= iq1sBytes && len(dst) >= 256 {
		b := src[:iq1sBytes]
		d := halfToFloat(binary.LittleEndian.Uint16(b))
		qs := b[2:34]
		for ib := 0; ib < 8; ib++ {
			qh := binary.LittleEndian.Uint16(b[34+2*ib:])
			dl := d * float32(2*int(qh>>12&7)+1)
			delta := float32(iq1Delta)
			if qh&0x8000 != 0 {
				delta = -iq1Delta
			}
			for l := 0; l < 4; l++ {
				idx := int(qs[4*ib+l]) | int(qh>>(3*l)&7)<<8
				iq1Group(dst[32*ib+8*l:], dl, delta, iq1sGrid[idx])
			}
		}
		src, dst = src[iq1sBytes:], dst[256:]
	}
}

func decodeIQ1M(dst []float32, src []byte) {
	for len(src) >= iq1mBytes && len(dst) >= 256 {
		b := src[:iq1mBytes]
		qs := b[0:32]
		qh := b[32:48]
		var sc [4]uint16
		for i := range sc {
			sc[i] = binary.LittleEndian.Uint16(b[48+2*i:])
		}
		// The fp16 super-scale is spread over the top nibbles of the four
		// scale words.
		d := halfToFloat(sc[0]>>12 | sc[1]>>8&0x00f0 | sc[2]>>4&0x0f00 | sc[3]&0xf000)
		for ib := 0; ib < 8; ib++ {
			s := sc[ib/2] >> (6 * (ib % 2))
			dl1 := d * float32(2*int(s&7)+1)
			dl2 := d * float32(2*int(s>>3&7)+1)
			h0, h1 := int(qh[2*ib]), int(qh[2*ib+1])
			q := qs[4*ib : 4*ib+4]
			idx := [4]int{
				int(q[0]) | h0<<8&0x700,
				int(q[1]) | h0<<4&0x700,
				int(q[2]) | h1<<8&0x700,
				int(q[3]) | h1<<4&0x700,
			}
			hbit := [4]int{h0 & 0x08, h0 & 0x80, h1 & 0x08, h1 & 0x80}
			for l := 0; l < 4; l++ {
				delta := float32(iq1Delta)
				if hbit[l] != 0 {
					delta = -iq1Delta
				}
				dl := dl1
				if l >= 2 {
					dl = dl2
				}
				iq1Group(dst[32*ib+8*l:], dl, delta, iq1sGrid[idx[l]])
			}
		}
		src, dst = src[iq1mBytes:], dst[256:]
	}
}
