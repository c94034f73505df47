//go:build !purego

#include "textflag.h"

// Both routines load each candidate's entry whole, compute its terms
// (w[i]*e)*e, e = scale*q - x[i], lane i holding coordinate i, then
// transpose so that lane c holds candidate c, and add the coordinates in
// order, 0 first: each sum is the Go loop's, operation for operation
// (every product and difference rounded on its own, no fused
// multiply-add). Every instruction that touches a vector register is
// VEX-encoded (see package kasm).

// ENTRY8(c, reg) loads candidate c's 8 values into reg and turns them into
// its terms; Y13 = scale, Y14 = x, Y15 = w.
#define ENTRY8(c, reg) \
	MOVWQZX (c*2)(SI), AX \
	SHLQ $5, AX \
	VMULPS (BX)(AX*1), Y13, reg \
	VSUBPS Y14, reg, reg \
	VMULPS Y15, reg, Y12 \
	VMULPS reg, Y12, reg

// func Dist8x8AVX2(out *[8]float32, grid *float32, idx *[8]uint16, x, w *[8]float32, scale float32)
TEXT ·Dist8x8AVX2(SB), NOSPLIT, $0-44
	MOVQ out+0(FP), DI
	MOVQ grid+8(FP), BX
	MOVQ idx+16(FP), SI
	MOVQ x+24(FP), DX
	MOVQ w+32(FP), R8
	VBROADCASTSS scale+40(FP), Y13
	VMOVUPS (DX), Y14
	VMOVUPS (R8), Y15
	ENTRY8(0, Y0)
	ENTRY8(1, Y1)
	ENTRY8(2, Y2)
	ENTRY8(3, Y3)
	ENTRY8(4, Y4)
	ENTRY8(5, Y5)
	ENTRY8(6, Y6)
	ENTRY8(7, Y7)
	// Rows a..h (candidates) in Y0..Y7, lanes = coordinates.
	VUNPCKLPS Y1, Y0, Y8  // a0 b0 a1 b1 | a4 b4 a5 b5
	VUNPCKHPS Y1, Y0, Y9  // a2 b2 a3 b3 | a6 b6 a7 b7
	VUNPCKLPS Y3, Y2, Y10 // c0 d0 c1 d1 | c4 d4 c5 d5
	VUNPCKHPS Y3, Y2, Y11 // c2 d2 c3 d3 | c6 d6 c7 d7
	VUNPCKLPS Y5, Y4, Y0  // e, f
	VUNPCKHPS Y5, Y4, Y1
	VUNPCKLPS Y7, Y6, Y2  // g, h
	VUNPCKHPS Y7, Y6, Y3
	VSHUFPS $0x44, Y10, Y8, Y4  // a0 b0 c0 d0 | a4 b4 c4 d4
	VSHUFPS $0xEE, Y10, Y8, Y5  // a1 b1 c1 d1 | a5 b5 c5 d5
	VSHUFPS $0x44, Y11, Y9, Y6  // a2 .. d2 | a6 .. d6
	VSHUFPS $0xEE, Y11, Y9, Y7  // a3 .. d3 | a7 .. d7
	VSHUFPS $0x44, Y2, Y0, Y8   // e0 f0 g0 h0 | e4 f4 g4 h4
	VSHUFPS $0xEE, Y2, Y0, Y9   // e1 .. h1 | e5 .. h5
	VSHUFPS $0x44, Y3, Y1, Y10  // e2 .. h2 | e6 .. h6
	VSHUFPS $0xEE, Y3, Y1, Y11  // e3 .. h3 | e7 .. h7
	// Coordinate i of every candidate: low halves give 0..3, high 4..7.
	VXORPS Y12, Y12, Y12
	VPERM2F128 $0x20, Y8, Y4, Y0
	VADDPS Y0, Y12, Y12
	VPERM2F128 $0x20, Y9, Y5, Y0
	VADDPS Y0, Y12, Y12
	VPERM2F128 $0x20, Y10, Y6, Y0
	VADDPS Y0, Y12, Y12
	VPERM2F128 $0x20, Y11, Y7, Y0
	VADDPS Y0, Y12, Y12
	VPERM2F128 $0x31, Y8, Y4, Y0
	VADDPS Y0, Y12, Y12
	VPERM2F128 $0x31, Y9, Y5, Y0
	VADDPS Y0, Y12, Y12
	VPERM2F128 $0x31, Y10, Y6, Y0
	VADDPS Y0, Y12, Y12
	VPERM2F128 $0x31, Y11, Y7, Y0
	VADDPS Y0, Y12, Y12
	VMOVUPS Y12, (DI)
	VZEROUPPER
	RET

// ENTRY4(c, reg) loads candidates c (low half) and c+4 (high half) of 4
// values each into reg and turns them into their terms; Y13 = scale,
// Y14 = x twice, Y15 = w twice.
#define ENTRY4(c, reg) \
	MOVWQZX (c*2)(SI), AX \
	SHLQ $4, AX \
	MOVWQZX (c*2+8)(SI), CX \
	SHLQ $4, CX \
	VMOVUPS (BX)(AX*1), X12 \
	VINSERTF128 $1, (BX)(CX*1), Y12, reg \
	VMULPS Y13, reg, reg \
	VSUBPS Y14, reg, reg \
	VMULPS Y15, reg, Y12 \
	VMULPS reg, Y12, reg

// func Dist4x8AVX2(out *[8]float32, grid *float32, idx *[8]uint16, x, w *[4]float32, scale float32)
TEXT ·Dist4x8AVX2(SB), NOSPLIT, $0-44
	MOVQ out+0(FP), DI
	MOVQ grid+8(FP), BX
	MOVQ idx+16(FP), SI
	MOVQ x+24(FP), DX
	MOVQ w+32(FP), R8
	VBROADCASTSS scale+40(FP), Y13
	VBROADCASTF128 (DX), Y14
	VBROADCASTF128 (R8), Y15
	ENTRY4(0, Y0) // a | e
	ENTRY4(1, Y1) // b | f
	ENTRY4(2, Y2) // c | g
	ENTRY4(3, Y3) // d | h
	VUNPCKLPS Y1, Y0, Y4 // a0 b0 a1 b1 | e0 f0 e1 f1
	VUNPCKHPS Y1, Y0, Y5 // a2 b2 a3 b3 | e2 f2 e3 f3
	VUNPCKLPS Y3, Y2, Y6 // c0 d0 c1 d1 | g0 h0 g1 h1
	VUNPCKHPS Y3, Y2, Y7 // c2 d2 c3 d3 | g2 h2 g3 h3
	VXORPS Y12, Y12, Y12
	VSHUFPS $0x44, Y6, Y4, Y0 // coordinate 0 of a..h
	VADDPS Y0, Y12, Y12
	VSHUFPS $0xEE, Y6, Y4, Y0 // 1
	VADDPS Y0, Y12, Y12
	VSHUFPS $0x44, Y7, Y5, Y0 // 2
	VADDPS Y0, Y12, Y12
	VSHUFPS $0xEE, Y7, Y5, Y0 // 3
	VADDPS Y0, Y12, Y12
	VMOVUPS Y12, (DI)
	VZEROUPPER
	RET
