//go:build cgo

// shim.c: llama.cpp opened with dlopen. See shim.h and doc.go.

#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shim.h"
#include "_cgo_export.h"

// ---- Mirrors of the structs llama.cpp passes by value (x86-64 and arm64
// LP64 layout of the supported version; sizes and offsets are asserted and
// checked against the library's own defaults in check_abi). ----

struct pg_model_params {
    void *devices;
    const void *tensor_buft_overrides;
    int32_t n_gpu_layers;
    int32_t split_mode;
    int32_t load_mode;
    int32_t lazy_mode;
    int32_t main_gpu;
    const float *tensor_split;
    void *progress_callback;
    void *progress_callback_user_data;
    const void *kv_overrides;
    bool vocab_only, check_tensors, use_extra_bufts, no_host, no_alloc, load_mtp;
};

typedef bool (*pg_eval_cb)(void *tensor, bool ask, void *user);

struct pg_context_params {
    uint32_t n_ctx, n_batch, n_ubatch, n_seq_max, n_rs_seq, n_outputs_max, n_outputs_max_per_seq;
    int32_t n_threads, n_threads_batch;
    int32_t ctx_type, rope_scaling_type, pooling_type, attention_type, flash_attn_type;
    float rope_freq_base, rope_freq_scale, yarn_ext_factor, yarn_attn_factor, yarn_beta_fast, yarn_beta_slow;
    uint32_t yarn_orig_ctx;
    float defrag_thold;
    pg_eval_cb cb_eval;
    void *cb_eval_user_data;
    int32_t type_k, type_v;
    void *abort_callback;
    void *abort_callback_data;
    bool embeddings, offload_kqv, no_perf, op_offload, swa_full, kv_unified;
    void *samplers;
    size_t n_samplers;
    void *ctx_other;
};

struct pg_batch {
    int32_t n_tokens;
    int32_t *token;
    float *embd;
    int32_t *pos;
    int32_t *n_seq_id;
    int32_t **seq_id;
    int8_t *logits;
};

#define PG_MODEL_PARAMS_SIZE 80
#define PG_CONTEXT_PARAMS_SIZE 160
_Static_assert(sizeof(void *) == 8, "the binding supports 64-bit platforms only");
_Static_assert(sizeof(struct pg_model_params) == PG_MODEL_PARAMS_SIZE, "llama_model_params mirror");
_Static_assert(offsetof(struct pg_model_params, n_gpu_layers) == 16, "llama_model_params.n_gpu_layers");
_Static_assert(offsetof(struct pg_model_params, vocab_only) == 72, "llama_model_params.vocab_only");
_Static_assert(sizeof(struct pg_context_params) == PG_CONTEXT_PARAMS_SIZE, "llama_context_params mirror");
_Static_assert(offsetof(struct pg_context_params, n_threads) == 28, "llama_context_params.n_threads");
_Static_assert(offsetof(struct pg_context_params, cb_eval) == 88, "llama_context_params.cb_eval");
_Static_assert(offsetof(struct pg_context_params, embeddings) == 128, "llama_context_params.embeddings");
_Static_assert(offsetof(struct pg_context_params, ctx_other) == 152, "llama_context_params.ctx_other");
_Static_assert(sizeof(struct pg_batch) == 56, "llama_batch mirror");

// The ABI probe calls the default-params functions into buffers larger than
// the mirrors, filled with a canary, and checks that the library wrote
// exactly the mirrored size. On x86-64 a struct this large is returned
// through a hidden pointer passed as the first argument, so the function can
// be called as f(buffer) and writes into our buffer and nowhere else; other
// ABIs skip the size probe and rely on the defaults check alone.
#define PG_PROBE_SLACK 512
// ---- The resolved symbols. ----

static struct {
    const char *(*ggml_version)(void);
    const char *(*ggml_commit)(void);
    const char *(*ggml_get_name)(const void *);
    const char *(*ggml_op_desc)(const void *);
    const char *(*ggml_type_name)(int32_t);
    size_t (*ggml_nbytes)(const void *);
    void (*ggml_backend_tensor_get)(const void *, void *, size_t, size_t);
    void (*ggml_backend_load_all_from_path)(const char *);
    size_t (*ggml_backend_dev_count)(void);

    void (*llama_backend_init)(void);
    void (*llama_log_set)(void (*)(int32_t, const char *, void *), void *);
    struct pg_model_params (*llama_model_default_params)(void);
    struct pg_context_params (*llama_context_default_params)(void);
    void *(*llama_model_load_from_file)(const char *, struct pg_model_params);
    void (*llama_model_free)(void *);
    void *(*llama_init_from_model)(void *, struct pg_context_params);
    void (*llama_free)(void *);
    const void *(*llama_model_get_vocab)(const void *);
    int32_t (*llama_model_n_ctx_train)(const void *);
    int32_t (*llama_model_desc)(const void *, char *, size_t);
    int32_t (*llama_vocab_n_tokens)(const void *);
    bool (*llama_vocab_get_add_bos)(const void *);
    bool (*llama_vocab_get_add_eos)(const void *);
    int32_t (*llama_vocab_bos)(const void *);
    int32_t (*llama_tokenize)(const void *, const char *, int32_t, int32_t *, int32_t, bool, bool);
    struct pg_batch (*llama_batch_init)(int32_t, int32_t, int32_t);
    void (*llama_batch_free)(struct pg_batch);
    int32_t (*llama_decode)(void *, struct pg_batch);
    float *(*llama_get_logits_ith)(void *, int32_t);
    void *(*llama_get_memory)(const void *);
    void (*llama_memory_clear)(void *, bool);
    uint32_t (*llama_n_ctx)(const void *);
    void (*llama_synchronize)(void *);
    const char *(*llama_print_system_info)(void);
} fn;

struct sym {
    int lib; // 0 ggml-base, 1 ggml, 2 llama
    const char *name;
    void **slot;
};

#define SYM(lib, name) {lib, #name, (void **)&fn.name}
static const struct sym syms[] = {
    SYM(0, ggml_version), SYM(0, ggml_commit), SYM(0, ggml_get_name), SYM(0, ggml_op_desc),
    SYM(0, ggml_type_name), SYM(0, ggml_nbytes), SYM(0, ggml_backend_tensor_get),
    SYM(1, ggml_backend_load_all_from_path), SYM(1, ggml_backend_dev_count),
    SYM(2, llama_backend_init), SYM(2, llama_log_set), SYM(2, llama_model_default_params),
    SYM(2, llama_context_default_params), SYM(2, llama_model_load_from_file), SYM(2, llama_model_free),
    SYM(2, llama_init_from_model), SYM(2, llama_free), SYM(2, llama_model_get_vocab),
    SYM(2, llama_model_n_ctx_train), SYM(2, llama_model_desc), SYM(2, llama_vocab_n_tokens),
    SYM(2, llama_vocab_get_add_bos), SYM(2, llama_vocab_get_add_eos), SYM(2, llama_vocab_bos),
    SYM(2, llama_tokenize), SYM(2, llama_batch_init), SYM(2, llama_batch_free), SYM(2, llama_decode),
    SYM(2, llama_get_logits_ith), SYM(2, llama_get_memory), SYM(2, llama_memory_clear), SYM(2, llama_n_ctx),
    SYM(2, llama_synchronize), SYM(2, llama_print_system_info),
};

// ---- Log capture. ----

static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;
static char first_error[2048];
static int last_level = 2;

static void log_cb(int32_t level, const char *text, void *user) {
    (void)user;
    pthread_mutex_lock(&log_mu);
    if (level == 5) { // GGML_LOG_LEVEL_CONT
        level = last_level;
    } else {
        last_level = level;
    }
    if (level == 4 && first_error[0] == 0 && text != NULL) { // GGML_LOG_LEVEL_ERROR
        size_t n = strlen(text);
        while (n > 0 && (text[n - 1] == '\n' || text[n - 1] == ' ')) {
            n--;
        }
        if (n >= sizeof(first_error)) {
            n = sizeof(first_error) - 1;
        }
        memcpy(first_error, text, n);
        first_error[n] = 0;
    }
    pthread_mutex_unlock(&log_mu);
}

void pg_log_clear(void) {
    pthread_mutex_lock(&log_mu);
    first_error[0] = 0;
    pthread_mutex_unlock(&log_mu);
}

size_t pg_log_first_error(char *buf, size_t n) {
    pthread_mutex_lock(&log_mu);
    size_t m = strlen(first_error);
    if (n > 0) {
        size_t c = m < n - 1 ? m : n - 1;
        memcpy(buf, first_error, c);
        buf[c] = 0;
    }
    pthread_mutex_unlock(&log_mu);
    return m;
}

// ---- Loading. ----

static int check_abi(char *err, size_t errlen) {
    static unsigned char pm[PG_MODEL_PARAMS_SIZE + PG_PROBE_SLACK];
    static unsigned char pc[PG_CONTEXT_PARAMS_SIZE + PG_PROBE_SLACK];
    memset(pm, 0xA5, sizeof(pm));
    memset(pc, 0xA5, sizeof(pc));
#if defined(__x86_64__)
    ((void (*)(void *))(void *)fn.llama_model_default_params)(pm);
    ((void (*)(void *))(void *)fn.llama_context_default_params)(pc);
#else
    {
        struct pg_model_params m0 = fn.llama_model_default_params();
        struct pg_context_params c0 = fn.llama_context_default_params();
        memcpy(pm, &m0, sizeof(m0));
        memcpy(pc, &c0, sizeof(c0));
    }
#endif
    // The mirrors must read back the library's documented defaults ...
    struct pg_model_params m;
    struct pg_context_params c;
    memcpy(&m, pm, sizeof(m));
    memcpy(&c, pc, sizeof(c));
    const bool model_ok = m.devices == NULL && m.tensor_buft_overrides == NULL && m.n_gpu_layers == -1 &&
                          m.main_gpu == 0 && m.tensor_split == NULL && m.progress_callback == NULL &&
                          m.kv_overrides == NULL && !m.vocab_only && !m.check_tensors && m.use_extra_bufts &&
                          !m.no_host && !m.no_alloc && !m.load_mtp;
    const bool ctx_ok = c.n_ctx == 512 && c.n_batch == 2048 && c.n_ubatch == 512 && c.n_seq_max == 1 &&
                        c.n_rs_seq == 0 && c.n_outputs_max == 0 && c.n_outputs_max_per_seq == 1 &&
                        c.n_threads == c.n_threads_batch && c.n_threads > 0 && c.rope_freq_base == 0.0f &&
                        c.yarn_ext_factor == -1.0f && c.defrag_thold == -1.0f && c.cb_eval == NULL &&
                        c.cb_eval_user_data == NULL && c.type_k == 1 && c.type_v == 1 && c.abort_callback == NULL &&
                        !c.embeddings && c.offload_kqv && c.no_perf && c.op_offload && c.swa_full &&
                        !c.kv_unified && c.samplers == NULL && c.n_samplers == 0 && c.ctx_other == NULL;
    // ... and the library must not have written past them.
    bool slack_ok = true;
    for (size_t i = PG_MODEL_PARAMS_SIZE; i < sizeof(pm); i++) {
        slack_ok = slack_ok && pm[i] == 0xA5;
    }
    for (size_t i = PG_CONTEXT_PARAMS_SIZE; i < sizeof(pc); i++) {
        slack_ok = slack_ok && pc[i] == 0xA5;
    }
    if (!model_ok || !ctx_ok || !slack_ok) {
        snprintf(err, errlen, "the library's %s differs from the layout this binding was written for",
                 !model_ok ? "llama_model_params" : !ctx_ok ? "llama_context_params" : "parameter struct size");
        return 1;
    }
    return 0;
}

static int opened = 0;

int pg_open(const char *ggml_base, const char *ggml, const char *llama, char *err, size_t errlen) {
    if (opened) {
        return 0;
    }
    const char *paths[3] = {ggml_base, ggml, llama};
    void *h[3];
    for (int i = 0; i < 3; i++) {
        dlerror();
        h[i] = dlopen(paths[i], RTLD_NOW | RTLD_LOCAL);
        if (h[i] == NULL) {
            const char *e = dlerror();
            snprintf(err, errlen, "cannot load %s: %s", paths[i], e ? e : "unknown dlopen error");
            for (int j = 0; j < i; j++) {
                dlclose(h[j]);
            }
            return 1;
        }
    }
    for (size_t i = 0; i < sizeof(syms) / sizeof(syms[0]); i++) {
        void *p = dlsym(h[syms[i].lib], syms[i].name);
        if (p == NULL) {
            snprintf(err, errlen, "%s lacks the symbol %s", paths[syms[i].lib], syms[i].name);
            for (int j = 0; j < 3; j++) {
                dlclose(h[j]);
            }
            memset(&fn, 0, sizeof(fn));
            return 2;
        }
        *syms[i].slot = p;
    }
    if (check_abi(err, errlen) != 0) {
        // Leave the libraries mapped: nothing will call into them, and a
        // library's destructors may not expect an early unload.
        memset(&fn, 0, sizeof(fn));
        return 3;
    }
    opened = 1;
    return 0;
}

int pg_start(const char *ggml, const char *dir, char *err, size_t errlen) {
    if (opened != 1) {
        return opened == 2 ? 0 : 1;
    }
    fn.llama_log_set(log_cb, NULL);
    fn.ggml_backend_load_all_from_path(dir);
    if (fn.ggml_backend_dev_count() == 0) {
        snprintf(err, errlen, "no ggml backend found: neither %s nor a libggml-cpu*.so in %s provides a CPU device", ggml, dir);
        return 4;
    }
    fn.llama_backend_init();
    opened = 2;
    return 0;
}

const char *pg_ggml_version(void) { return fn.ggml_version(); }
const char *pg_ggml_commit(void) { return fn.ggml_commit(); }
const char *pg_system_info(void) { return fn.llama_print_system_info(); }
size_t pg_dev_count(void) { return fn.ggml_backend_dev_count(); }

// ---- Models. ----

void *pg_model_load(const char *path, int vocab_only) {
    struct pg_model_params p = fn.llama_model_default_params();
    p.n_gpu_layers = 0;
    p.vocab_only = vocab_only != 0;
    return fn.llama_model_load_from_file(path, p);
}

void pg_model_free(void *model) { fn.llama_model_free(model); }

void pg_model_info(void *model, int32_t *n_vocab, int32_t *add_bos, int32_t *add_eos, int32_t *bos, int32_t *n_ctx_train) {
    const void *v = fn.llama_model_get_vocab(model);
    *n_vocab = fn.llama_vocab_n_tokens(v);
    *add_bos = fn.llama_vocab_get_add_bos(v);
    *add_eos = fn.llama_vocab_get_add_eos(v);
    *bos = fn.llama_vocab_bos(v);
    *n_ctx_train = fn.llama_model_n_ctx_train(model);
}

int32_t pg_model_desc(void *model, char *buf, size_t n) { return fn.llama_model_desc(model, buf, n); }

int32_t pg_tokenize(void *model, const char *text, int32_t len, int32_t *out, int32_t cap, int add_special, int parse_special) {
    return fn.llama_tokenize(fn.llama_model_get_vocab(model), text, len, out, cap, add_special != 0, parse_special != 0);
}

// ---- Contexts. ----

static bool eval_trampoline(void *tensor, bool ask, void *user) {
    return physariumEvalCallback((uintptr_t)user, tensor, ask);
}

void *pg_ctx_new(void *model, const pg_ctx_opts *o) {
    struct pg_context_params c = fn.llama_context_default_params();
    c.n_ctx = o->n_ctx;
    c.n_batch = o->n_batch;
    c.n_ubatch = o->n_ubatch;
    c.n_seq_max = o->n_seq_max;
    c.n_threads = o->n_threads;
    c.n_threads_batch = o->n_threads;
    c.no_perf = true;
    c.swa_full = false; // as llama.cpp's common parameters (llama-perplexity)
    c.kv_unified = false;
    c.n_outputs_max_per_seq = 1;
    if (o->eval_handle != 0) {
        c.cb_eval = eval_trampoline;
        c.cb_eval_user_data = (void *)o->eval_handle;
    }
    return fn.llama_init_from_model(model, c);
}

void pg_ctx_free(void *ctx) { fn.llama_free(ctx); }
uint32_t pg_ctx_n_ctx(void *ctx) { return fn.llama_n_ctx(ctx); }
void pg_ctx_clear(void *ctx) { fn.llama_memory_clear(fn.llama_get_memory(ctx), true); }
int32_t pg_decode(void *ctx, void *batch) { return fn.llama_decode(ctx, *(struct pg_batch *)batch); }
float *pg_logits_ith(void *ctx, int32_t i) { return fn.llama_get_logits_ith(ctx, i); }
void pg_synchronize(void *ctx) { fn.llama_synchronize(ctx); }

// ---- Batches. ----

typedef struct {
    struct pg_batch b;
    int32_t n_max;
} pg_batch_box;

void *pg_batch_new(int32_t n_max) {
    pg_batch_box *box = malloc(sizeof(*box));
    if (box == NULL) {
        return NULL;
    }
    box->b = fn.llama_batch_init(n_max, 0, 1);
    box->n_max = n_max;
    if (box->b.token == NULL) {
        free(box);
        return NULL;
    }
    return box;
}

void pg_batch_free(void *batch) {
    pg_batch_box *box = batch;
    fn.llama_batch_free(box->b);
    free(box);
}

void pg_batch_reset(void *batch) { ((pg_batch_box *)batch)->b.n_tokens = 0; }
int32_t pg_batch_n(void *batch) { return ((pg_batch_box *)batch)->b.n_tokens; }

int32_t pg_batch_add_run(void *batch, const int32_t *tokens, int32_t n, int32_t pos0, int32_t seq, int32_t out_from) {
    pg_batch_box *box = batch;
    struct pg_batch *b = &box->b;
    if (n < 0 || b->n_tokens > box->n_max - n) {
        return -1;
    }
    int32_t outs = 0;
    for (int32_t k = 0; k < n; k++) {
        const int32_t i = b->n_tokens + k;
        b->token[i] = tokens[k];
        b->pos[i] = pos0 + k;
        b->n_seq_id[i] = 1;
        b->seq_id[i][0] = seq;
        b->logits[i] = pos0 + k >= out_from;
        outs += b->logits[i] != 0;
    }
    b->n_tokens += n;
    return outs;
}

// ---- Graph tensors (struct ggml_tensor: type at 0, ne[4] at 16). ----

const char *pg_tensor_name(void *t) { return fn.ggml_get_name(t); }
const char *pg_tensor_op(void *t) { return fn.ggml_op_desc(t); }
const char *pg_tensor_type(void *t) { return fn.ggml_type_name(*(const int32_t *)t); }
void pg_tensor_ne(void *t, int64_t ne[4]) { memcpy(ne, (const char *)t + 16, 4 * sizeof(int64_t)); }
size_t pg_tensor_nbytes(void *t) { return fn.ggml_nbytes(t); }
void pg_tensor_get(void *t, void *dst, size_t offset, size_t size) { fn.ggml_backend_tensor_get(t, dst, offset, size); }
