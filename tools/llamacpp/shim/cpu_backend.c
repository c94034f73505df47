// cpu_backend: linked into llama.cpp's own tools (llama-imatrix) when
// scripts/llama-runtime.sh builds them outside llama.cpp's tree. Those tools
// call ggml_backend_load_all(), which looks for libggml-cpu-*.so beside the
// executable and in the working directory; ours live in CACHE/lib, not
// CACHE/bin. Before main runs, this loads the best CPU backend variant from
// the directory of the libggml-base the program was linked against.

#define _GNU_SOURCE
#include <dlfcn.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "ggml-backend.h"

__attribute__((constructor)) static void physarium_load_cpu_backend(void) {
    Dl_info info;
    if (dladdr((void *)&ggml_backend_load_all_from_path, &info) == 0 || info.dli_fname == NULL) {
        return;
    }
    char dir[PATH_MAX];
    snprintf(dir, sizeof(dir), "%s", info.dli_fname);
    char *slash = strrchr(dir, '/');
    if (slash == NULL) {
        return;
    }
    *slash = 0;
    ggml_backend_load_all_from_path(dir);
}
