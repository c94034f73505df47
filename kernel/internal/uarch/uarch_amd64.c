//go:build cgo && amd64 && !purego

// Throughput of single vector instructions and the core clock, each from a
// loop of one instruction kind in inline assembly, timed by the calling
// thread's CPU clock (so that time the thread waits for a CPU does not
// count). Only the assembler sees the AVX-512 instructions: the caller
// runs them only where the CPU has AVX-512 F.

#define _POSIX_C_SOURCE 200809L
#include <time.h>

#include "uarch.h"

static double thread_seconds(void) {
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

// Twelve copies of one instruction on registers 0-11: twelve independent
// dependency chains, each instruction's destination its own source, and
// registers 12 and 13 constant operands.
#define X12(f) f(0) f(1) f(2) f(3) f(4) f(5) f(6) f(7) f(8) f(9) f(10) f(11)
#define FMA_Y(i) "vfmadd231ps %%ymm12, %%ymm13, %%ymm" #i "\n\t"
#define FMA_Z(i) "vfmadd231ps %%zmm12, %%zmm13, %%zmm" #i "\n\t"
#define MUL_Y(i) "vmulps %%ymm12, %%ymm" #i ", %%ymm" #i "\n\t"
#define MUL_Z(i) "vmulps %%zmm12, %%zmm" #i ", %%zmm" #i "\n\t"
#define ADD_Y(i) "vaddps %%ymm13, %%ymm" #i ", %%ymm" #i "\n\t"
#define ADD_Z(i) "vaddps %%zmm13, %%zmm" #i ", %%zmm" #i "\n\t"
#define SQRT_Y(i) "vsqrtps %%ymm" #i ", %%ymm" #i "\n\t"
#define SQRT_Z(i) "vsqrtps %%zmm" #i ", %%zmm" #i "\n\t"
#define DIV_Y(i) "vdivps %%ymm14, %%ymm" #i ", %%ymm" #i "\n\t"
#define DIV_Z(i) "vdivps %%zmm14, %%zmm" #i ", %%zmm" #i "\n\t"
#define RSQRT_Y(i) "vrsqrt14ps %%ymm" #i ", %%ymm" #i "\n\t"
#define RSQRT_Z(i) "vrsqrt14ps %%zmm" #i ", %%zmm" #i "\n\t"
// Two kinds interleaved: a square root and a divide (zmm) on each
// register, or (ymm) a square root on each of registers 0-5 and four fused
// multiply-adds on each of registers 6-11.
#define SQDIV_Z(i) SQRT_Z(i) DIV_Z(i)
#define X6(f) f(0, 6) f(1, 7) f(2, 8) f(3, 9) f(4, 10) f(5, 11)
#define SQFMA_Y(i, j) SQRT_Y(i) FMA_Y(j) FMA_Y(j) FMA_Y(j) FMA_Y(j)

// The set-up: registers 0-11 and 12 hold 1.0, 13 holds 0.0 (so that the
// fused multiply-add and the add leave their chains unchanged) and 14 holds
// 1+2^-23 (a divide chain shrinks slowly and stays normal).
#define INIT(w)                                                                 \
	"vbroadcastss %[one], %%" w "0\n\t" "vmovaps %%" w "0, %%" w "1\n\t"          \
	"vmovaps %%" w "0, %%" w "2\n\t" "vmovaps %%" w "0, %%" w "3\n\t"              \
	"vmovaps %%" w "0, %%" w "4\n\t" "vmovaps %%" w "0, %%" w "5\n\t"              \
	"vmovaps %%" w "0, %%" w "6\n\t" "vmovaps %%" w "0, %%" w "7\n\t"              \
	"vmovaps %%" w "0, %%" w "8\n\t" "vmovaps %%" w "0, %%" w "9\n\t"              \
	"vmovaps %%" w "0, %%" w "10\n\t" "vmovaps %%" w "0, %%" w "11\n\t"            \
	"vmovaps %%" w "0, %%" w "12\n\t" "vmovaps %%" w "0, %%" w "15\n\t"            \
	"vxorps %%" w "13, %%" w "13, %%" w "13\n\t" "vbroadcastss %[above], %%" w "14\n\t"

#define LOOP(w, round)                                                          \
	__asm__ volatile(INIT(w) "1:\n\t" round "dec %[n]\n\t" "jnz 1b\n\t"         \
	                 : [n] "+r"(n)                                              \
	                 : [one] "m"(one), [above] "m"(above)                       \
	                 : "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6",  \
	                   "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", "xmm12",       \
	                   "xmm13", "xmm14", "xmm15", "cc")

double uarch_seconds(int op, long n) {
	const float one = 1.0f, above = 1.00000012f;
	const double start = thread_seconds();
	switch (op) {
	case UARCH_CLOCK: {
		long x = 0;
		// Twelve dependent one-cycle adds per round.
		__asm__ volatile("1:\n\t"
		                 "add $1, %[x]\n\t" "add $1, %[x]\n\t" "add $1, %[x]\n\t"
		                 "add $1, %[x]\n\t" "add $1, %[x]\n\t" "add $1, %[x]\n\t"
		                 "add $1, %[x]\n\t" "add $1, %[x]\n\t" "add $1, %[x]\n\t"
		                 "add $1, %[x]\n\t" "add $1, %[x]\n\t" "add $1, %[x]\n\t"
		                 "dec %[n]\n\t" "jnz 1b\n\t"
		                 : [n] "+r"(n), [x] "+r"(x)
		                 :
		                 : "cc");
		break;
	}
	case UARCH_FMA_YMM: LOOP("ymm", X12(FMA_Y)); break;
	case UARCH_FMA_ZMM: LOOP("zmm", X12(FMA_Z)); break;
	case UARCH_MUL_YMM: LOOP("ymm", X12(MUL_Y)); break;
	case UARCH_MUL_ZMM: LOOP("zmm", X12(MUL_Z)); break;
	case UARCH_ADD_YMM: LOOP("ymm", X12(ADD_Y)); break;
	case UARCH_ADD_ZMM: LOOP("zmm", X12(ADD_Z)); break;
	case UARCH_SQRT_YMM: LOOP("ymm", X12(SQRT_Y)); break;
	case UARCH_SQRT_ZMM: LOOP("zmm", X12(SQRT_Z)); break;
	case UARCH_DIV_YMM: LOOP("ymm", X12(DIV_Y)); break;
	case UARCH_DIV_ZMM: LOOP("zmm", X12(DIV_Z)); break;
	case UARCH_RSQRT14_YMM: LOOP("ymm", X12(RSQRT_Y)); break;
	case UARCH_RSQRT14_ZMM: LOOP("zmm", X12(RSQRT_Z)); break;
	case UARCH_SQRT_DIV_ZMM: LOOP("zmm", X12(SQDIV_Z)); break;
	case UARCH_SQRT_FMA_YMM: LOOP("ymm", X6(SQFMA_Y)); break;
	default: return -1;
	}
	return thread_seconds() - start;
}
