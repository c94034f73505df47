//go:build cgo

// shim.h: the C side of the binding. Nothing here includes llama.h: the
// libraries are opened with dlopen at run time, and the few structs passed by
// value are mirrored in shim.c for the one llama.cpp version the binding
// supports, which pg_open verifies before any of them is used.

#ifndef PHYSARIUM_LLAMACPP_SHIM_H
#define PHYSARIUM_LLAMACPP_SHIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

// pg_open loads libggml-base, libggml and libllama from their full paths,
// resolves every symbol the binding calls and checks the ABI of the structs
// passed by value. On failure it returns non-zero with a message in err.
int pg_open(const char *ggml_base, const char *ggml, const char *llama, char *err, size_t errlen);

// pg_start installs the log capture, loads the backends found in dir and
// initialises llama.cpp (after pg_open and the caller's version check).
int pg_start(const char *ggml, const char *dir, char *err, size_t errlen);

const char *pg_ggml_version(void);
const char *pg_ggml_commit(void);
const char *pg_system_info(void);
size_t pg_dev_count(void);

// Log capture: the first ERROR line since the last pg_log_clear, and the
// last WARN-or-worse lines.
void pg_log_clear(void);
size_t pg_log_first_error(char *buf, size_t n);

void *pg_model_load(const char *path, int vocab_only);
void pg_model_free(void *model);
void pg_model_info(void *model, int32_t *n_vocab, int32_t *add_bos, int32_t *add_eos, int32_t *bos, int32_t *n_ctx_train);
int32_t pg_model_desc(void *model, char *buf, size_t n);
int32_t pg_tokenize(void *model, const char *text, int32_t len, int32_t *out, int32_t cap, int add_special, int parse_special);

typedef struct {
    uint32_t n_ctx, n_batch, n_ubatch, n_seq_max;
    int32_t n_threads;
    uintptr_t eval_handle; // non-zero: install the graph callback with this handle
} pg_ctx_opts;

void *pg_ctx_new(void *model, const pg_ctx_opts *o);
void pg_ctx_free(void *ctx);
uint32_t pg_ctx_n_ctx(void *ctx);
void pg_ctx_clear(void *ctx);
int32_t pg_decode(void *ctx, void *batch);
float *pg_logits_ith(void *ctx, int32_t i);
void pg_synchronize(void *ctx);

void *pg_batch_new(int32_t n_max);
void pg_batch_free(void *batch);
void pg_batch_reset(void *batch);
int32_t pg_batch_n(void *batch);
// pg_batch_add_run appends n tokens at positions pos0.. of sequence seq;
// a token whose position is >= out_from asks for its logits. Returns the
// number of outputs added, or -1 when the batch would overflow.
int32_t pg_batch_add_run(void *batch, const int32_t *tokens, int32_t n, int32_t pos0, int32_t seq, int32_t out_from);

// Graph tensors seen by the evaluation callback.
const char *pg_tensor_name(void *t);
const char *pg_tensor_op(void *t);
const char *pg_tensor_type(void *t);
void pg_tensor_ne(void *t, int64_t ne[4]);
size_t pg_tensor_nbytes(void *t);
void pg_tensor_get(void *t, void *dst, size_t offset, size_t size);

#endif
