// Declarations shared by avx2_cgo.go, avx2_amd64.c and avx512_amd64.c. The
// structs mirror job and coreParams in core_go.go (arena offsets in float32
// units).
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

// The passes over a tile's D that one step of the dynamics makes; each
// implementation supplies its own, all following the canonical order of
// core_go.go. Every pass handles rows rows of D (cp floats apart) and the
// matching entries of the output-node vectors; flux and adapt add their row
// reductions to the running sum they are given, row after row.
typedef struct {
	void (*degrees)(const float *D, int rows, int cp, float *deg_in, float *deg_out);
	void (*lap)(const float *D, int rows, int cp, const float *v_in, const float *v_out, float *cacc, float *dp_out);
	float (*flux)(const float *D, int rows, int cp, const float *x_in, const float *x_out, float sumq);
	float (*adapt)(float *D, int rows, int cp, const float *x_in, const float *x_out, float iq, const phys_params *p,
	               int last, float *deg_in, float *cacc, float *deg_out, float *dp_out, float sumd);
} phys_passes;

void phys_degrees_avx2(const float *D, int rows, int cp, float *deg_in, float *deg_out);
void phys_lap_avx2(const float *D, int rows, int cp, const float *v_in, const float *v_out, float *cacc, float *dp_out);
float phys_flux_avx2(const float *D, int rows, int cp, const float *x_in, const float *x_out, float sumq);
float phys_adapt_avx2(float *D, int rows, int cp, const float *x_in, const float *x_out, float iq, const phys_params *p,
                      int last, float *deg_in, float *cacc, float *deg_out, float *dp_out, float sumd);
void phys_run(float *arena, phys_job *jobs, int njobs, const phys_params *p, const phys_passes *ps);
void phys_run_avx2(float *arena, phys_job *jobs, int njobs, const phys_params *p);
void phys_run_avx512(float *arena, phys_job *jobs, int njobs, const phys_params *p);
float phys_fmaf(float a, float b, float c);

#endif
