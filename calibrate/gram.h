// gram.h: the AVX2 Gram kernel (gram_amd64.c), the twin of gramRows in
// accumulate.go.
#include <stdint.h>

void pg_gram_rows_avx2(double *g, const double *rows, int64_t n, int64_t t, int64_t b0, int64_t b1);
