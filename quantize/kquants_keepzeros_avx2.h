// Declarations shared by kquants_keepzeros_avx2.c and the Go code that
// calls it (kquants_avx2_cgo.go). The structs mirror kKZGrid, kKZParams
// and kKZResult in kquants_keepzeros.go.
#ifndef KQUANTS_KEEPZEROS_AVX2_H
#define KQUANTS_KEEPZEROS_AVX2_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
	int32_t g, hi;
	double invg;
} kz_grid;

typedef struct {
	int32_t nmax, scmax, mmax, qspan, refine, nratios, ndfac, nsfac;
} kz_params;

typedef struct {
	uint16_t hd, hm;
	uint8_t sc[16], m[16];
	uint8_t L[256];
} kz_result;

int kz_fit45(const kz_params *p, const int32_t *ratios, const double *dfac, const double *sfac,
             const kz_grid *grid, const float *x, kz_result *r);
size_t kz_encode_k45(const kz_params *p, const int32_t *ratios, const double *dfac, const double *sfac,
                     const kz_grid *grid, const float *src, uint8_t *dst, size_t nb);

#endif
