//go:build cgo && amd64 && !purego

// The AVX2 Gram kernel: gramRows of accumulate.go operation for operation,
// 4 doubles across j, a multiply then an add (never fused), so each entry
// of G gets the same roundings in the same order as the Go twin.

#pragma GCC optimize("fp-contract=off")

#include <immintrin.h>
#include <stdint.h>

#include "gram.h"

__attribute__((target("avx2"))) static void axpy4(double *r0, double *r1, double *r2, double *r3, const double *x, int64_t m,
                                                  double a0, double a1, double a2, double a3) {
    const __m256d v0 = _mm256_set1_pd(a0), v1 = _mm256_set1_pd(a1), v2 = _mm256_set1_pd(a2), v3 = _mm256_set1_pd(a3);
    int64_t j = 0;
    for (; j + 4 <= m; j += 4) {
        const __m256d xv = _mm256_loadu_pd(x + j);
        _mm256_storeu_pd(r0 + j, _mm256_add_pd(_mm256_loadu_pd(r0 + j), _mm256_mul_pd(v0, xv)));
        _mm256_storeu_pd(r1 + j, _mm256_add_pd(_mm256_loadu_pd(r1 + j), _mm256_mul_pd(v1, xv)));
        _mm256_storeu_pd(r2 + j, _mm256_add_pd(_mm256_loadu_pd(r2 + j), _mm256_mul_pd(v2, xv)));
        _mm256_storeu_pd(r3 + j, _mm256_add_pd(_mm256_loadu_pd(r3 + j), _mm256_mul_pd(v3, xv)));
    }
    for (; j < m; j++) {
        const double v = x[j];
        r0[j] += a0 * v;
        r1[j] += a1 * v;
        r2[j] += a2 * v;
        r3[j] += a3 * v;
    }
}

__attribute__((target("avx2"))) void pg_gram_rows_avx2(double *g, const double *rows, int64_t n, int64_t t, int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; b++) {
        const int64_t i0 = b * 4;
        const int64_t i1 = i0 + 4 < n ? i0 + 4 : n;
        if (i1 - i0 == 4) {
            double *r0 = g + i0 * (i0 + 1) / 2, *r1 = g + (i0 + 1) * (i0 + 2) / 2;
            double *r2 = g + (i0 + 2) * (i0 + 3) / 2, *r3 = g + (i0 + 3) * (i0 + 4) / 2;
            for (int64_t r = 0; r < t; r++) {
                const double *x = rows + r * n;
                const double a0 = x[i0], a1 = x[i0 + 1], a2 = x[i0 + 2], a3 = x[i0 + 3];
                axpy4(r0, r1, r2, r3, x, i0 + 1, a0, a1, a2, a3);
                r1[i0 + 1] += a1 * a1;
                r2[i0 + 1] += a2 * a1;
                r2[i0 + 2] += a2 * a2;
                r3[i0 + 1] += a3 * a1;
                r3[i0 + 2] += a3 * a2;
                r3[i0 + 3] += a3 * a3;
            }
            continue;
        }
        for (int64_t i = i0; i < i1; i++) {
            double *row = g + i * (i + 1) / 2;
            for (int64_t r = 0; r < t; r++) {
                const double *x = rows + r * n;
                const double xi = x[i];
                for (int64_t j = 0; j <= i; j++) {
                    row[j] += xi * x[j];
                }
            }
        }
    }
}
