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

void phys_run_avx2(float *arena, phys_job *jobs, int njobs, const phys_params *p);
float phys_fmaf(float a, float b, float c);

#endif
