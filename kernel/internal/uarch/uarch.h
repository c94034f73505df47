// The instruction loops of uarch_amd64.c.
enum {
	UARCH_CLOCK,
	UARCH_FMA_YMM,
	UARCH_FMA_ZMM,
	UARCH_MUL_YMM,
	UARCH_MUL_ZMM,
	UARCH_ADD_YMM,
	UARCH_ADD_ZMM,
	UARCH_SQRT_YMM,
	UARCH_SQRT_ZMM,
	UARCH_DIV_YMM,
	UARCH_DIV_ZMM,
	UARCH_RSQRT14_YMM,
	UARCH_RSQRT14_ZMM,
	UARCH_SQRT_DIV_ZMM,
	UARCH_SQRT_FMA_YMM,
};

// uarch_seconds runs n rounds of loop op (12 instructions of its kind a
// round; 12 square roots and 12 divides for UARCH_SQRT_DIV_ZMM, 6 square
// roots and 24 fused multiply-adds for UARCH_SQRT_FMA_YMM) and returns the calling
// thread's CPU time they took, or -1 for an unknown op.
double uarch_seconds(int op, long n);
