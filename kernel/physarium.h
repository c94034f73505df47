// Declarations shared by avx2_cgo.go and avx2_amd64.c. The structs mirror
// job and coreParams in core_go.go (arena offsets in float32 units).
#ifndef PHYSARIUM_H
#define PHYSARIUM_H
#include <stdint.h>

typedef struct {
	int64_t d, bin, bout, work;
	int32_t rows, cp, rp, n;
	float sumd;
	int32_t pad_;
} phys_job;

typedef struct {
	int32_t steps, cgiters, gwhole, gtop;
	uint32_t gbits;
	float c1, c2;
	int32_t pad_;
} phys_params;

typedef struct {
	int32_t zero, n;
	float maxf, sumf;
} phys_food_out;

typedef struct {
	int32_t killed;
	float mn, mx;
} phys_finish_out;

int phys_check(const float *w, int64_t stride, int rows, int cols, const float *act);
void phys_food(const float *w, int64_t stride, int rows, int cols, const float *act, float *d, int cp, phys_food_out *out);
void phys_scale(float *d, int rows, int cols, int cp, float scale, int32_t *rownz, int32_t *colnz);
void phys_finish(const float *w, int64_t stride, int rows, int cols, const float *d, int cp, float thr,
                 uint8_t *mask, int64_t mstride, float *outd, int32_t *alive, phys_finish_out *out);
void phys_run_avx2(float *arena, phys_job *jobs, int njobs, const phys_params *p);
float phys_fmaf(float a, float b, float c);

#endif
