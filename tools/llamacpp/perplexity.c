// perplexity: load a GGUF model with the shipped libllama and print its
// perplexity over a text file, computed the way llama.cpp's llama-perplexity
// tool computes it (see tools/perplexity/perplexity.cpp in the llama.cpp source
// that scripts/llama-runtime.sh unpacks):
//
//   - the whole text (one trailing newline removed, as `-f` does) is tokenized
//     once, with the model's BOS added and special tokens not parsed;
//   - the tokens are cut into n_ctx-token chunks; a chunk's first token is
//     replaced by BOS when the vocabulary adds one;
//   - only the second half of each chunk is scored: the logits at position
//     p (p = n_ctx/2 .. n_ctx-2) predict the token at p+1;
//   - PPL = exp(mean NLL) over every scored token, and the printed uncertainty
//     is PPL times the standard error of the mean NLL.
//
// Like llama-perplexity, a batch of b >= n_ctx tokens evaluates b/n_ctx chunks
// at once in separate sequences of one context; b < n_ctx splits a chunk.
// Everything runs on the CPU backend with one thread (ggml's worker threads
// spin while they wait, which hurts on a shared machine).
//
// Output: progress and llama.cpp's warnings and errors on stderr; one final
// machine-readable line on stdout:
//
//   ppl=6.846412 stderr=0.123456 chunks=14 tokens=1882 scored=882
//
// Exit status 0 on success, 1 on any error (with a message on stderr naming
// the file), 2 on bad usage.

#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <locale.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "ggml-backend.h"
#include "llama.h"

static int verbose = 0;

// first_error keeps the first error text llama.cpp/ggml logged since it was
// last cleared (usually the root cause, e.g. "invalid magic characters"), so a
// failure is reported with llama.cpp's own reason on the last stderr line.
static char first_error[1024];
static enum ggml_log_level last_level = GGML_LOG_LEVEL_INFO;

static void log_cb(enum ggml_log_level level, const char *text, void *user) {
    (void)user;
    if (level == GGML_LOG_LEVEL_CONT) {
        level = last_level;
    } else {
        last_level = level;
    }
    if (level == GGML_LOG_LEVEL_ERROR && first_error[0] == 0) {
        size_t n = strlen(text);
        while (n > 0 && (text[n - 1] == '\n' || text[n - 1] == ' ')) {
            n--;
        }
        if (n > 0) {
            if (n >= sizeof(first_error)) {
                n = sizeof(first_error) - 1;
            }
            memcpy(first_error, text, n);
            first_error[n] = 0;
        }
    }
    if (level >= GGML_LOG_LEVEL_WARN || verbose) {
        fputs(text, stderr);
    }
}

static void fail(const char *fmt, ...) {
    va_list ap;
    fputs("perplexity: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

static void usage(FILE *f) {
    fputs("usage: perplexity -m MODEL.gguf -f TEXT -c NCTX [-b NBATCH] [--chunks N] [-v]\n"
          "  -m MODEL    GGUF model to load (CPU, 1 thread)\n"
          "  -f TEXT     text file to score (one trailing newline is dropped)\n"
          "  -c NCTX     tokens per chunk (default 512)\n"
          "  -b NBATCH   logical batch size (default 2048, as llama-perplexity)\n"
          "  --chunks N  score at most N chunks (default: all)\n"
          "  -v          print llama.cpp's informational log too\n"
          "prints on stdout: ppl=X stderr=X chunks=N tokens=N scored=N\n",
          f);
}

// parse_int parses a decimal int in [min, INT_MAX]; false on anything else.
static bool parse_int(const char *s, int min, int *out) {
    char *end = NULL;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != 0 || v < min || v > INT_MAX) {
        return false;
    }
    *out = (int)v;
    return true;
}

// read_text reads the whole file into a malloc'd buffer, dropping one trailing
// newline like llama.cpp's `-f` option. Returns NULL (errno set) on failure.
static char *read_text(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        return NULL;
    }
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    if (buf == NULL) {
        fclose(f);
        errno = ENOMEM;
        return NULL;
    }
    for (;;) {
        if (n == cap) {
            if (cap > (size_t)INT_MAX / 2) {
                free(buf);
                fclose(f);
                errno = EFBIG;
                return NULL;
            }
            char *nb = realloc(buf, cap * 2);
            if (nb == NULL) {
                free(buf);
                fclose(f);
                errno = ENOMEM;
                return NULL;
            }
            buf = nb;
            cap *= 2;
        }
        size_t r = fread(buf + n, 1, cap - n, f);
        n += r;
        if (r == 0) {
            break;
        }
    }
    int err = ferror(f);
    fclose(f);
    if (err) {
        free(buf);
        errno = EIO;
        return NULL;
    }
    if (n > 0 && buf[n - 1] == '\n') {
        n--;
    }
    *len = n;
    return buf;
}

// load_backends loads the best CPU backend variant (libggml-cpu-*.so) from the
// directory that holds the libllama this program was linked against.
static void load_backends(void) {
    Dl_info info;
    if (dladdr((void *)&llama_backend_init, &info) != 0 && info.dli_fname != NULL) {
        char dir[PATH_MAX];
        snprintf(dir, sizeof(dir), "%s", info.dli_fname);
        char *slash = strrchr(dir, '/');
        if (slash != NULL) {
            *slash = 0;
            ggml_backend_load_all_from_path(dir);
            return;
        }
    }
    ggml_backend_load_all();
}

// neg_log_prob returns -log softmax(logits)[tok], accumulated as llama-perplexity
// does: float differences, expf, a double sum.
static double neg_log_prob(int n_vocab, const float *logits, int tok) {
    float max_logit = logits[0];
    for (int i = 1; i < n_vocab; ++i) {
        if (logits[i] > max_logit) {
            max_logit = logits[i];
        }
    }
    double sum_exp = 0.0;
    for (int i = 0; i < n_vocab; ++i) {
        sum_exp += expf(logits[i] - max_logit);
    }
    return -((double)(logits[tok] - max_logit) - log(sum_exp));
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    setlocale(LC_NUMERIC, "C");

    const char *model_path = NULL, *text_path = NULL;
    int n_ctx = 512, n_batch = 2048, n_chunks = -1;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            return 0;
        }
        if (strcmp(a, "-v") == 0) {
            verbose = 1;
            continue;
        }
        if (i + 1 >= argc) {
            fail("option %s needs a value", a);
            usage(stderr);
            return 2;
        }
        const char *v = argv[++i];
        if (strcmp(a, "-m") == 0) {
            model_path = v;
        } else if (strcmp(a, "-f") == 0) {
            text_path = v;
        } else if (strcmp(a, "-c") == 0) {
            if (!parse_int(v, 2, &n_ctx)) {
                fail("bad -c %s: want an integer >= 2", v);
                return 2;
            }
        } else if (strcmp(a, "-b") == 0) {
            if (!parse_int(v, 1, &n_batch)) {
                fail("bad -b %s: want an integer >= 1", v);
                return 2;
            }
        } else if (strcmp(a, "--chunks") == 0) {
            if (!parse_int(v, 1, &n_chunks)) {
                fail("bad --chunks %s: want an integer >= 1", v);
                return 2;
            }
        } else {
            fail("unknown option %s", a);
            usage(stderr);
            return 2;
        }
    }
    if (model_path == NULL || text_path == NULL) {
        fail("-m MODEL and -f TEXT are required");
        usage(stderr);
        return 2;
    }

    // The same context sizing as llama-perplexity: b/n_ctx sequences side by side.
    const int n_seq = n_batch / n_ctx > 1 ? n_batch / n_ctx : 1;
    if ((long long)n_seq * n_ctx > INT_MAX) {
        fail("-c %d with -b %d is too large", n_ctx, n_batch);
        return 2;
    }
    const int n_ctx_total = n_seq * n_ctx;
    if (n_batch > n_ctx_total) {
        n_batch = n_ctx_total;
    }
    if (!(n_batch < n_ctx || n_batch % n_ctx == 0)) {
        fail("-b %d must be below -c %d or a multiple of it", n_batch, n_ctx);
        return 2;
    }

    struct stat st;
    if (stat(model_path, &st) != 0) {
        fail("cannot open model %s: %s", model_path, strerror(errno));
        return 1;
    }
    if (!S_ISREG(st.st_mode)) {
        fail("model %s is not a regular file", model_path);
        return 1;
    }
    size_t text_len = 0;
    char *text = read_text(text_path, &text_len);
    if (text == NULL) {
        fail("cannot read text %s: %s", text_path, strerror(errno));
        return 1;
    }

    llama_log_set(log_cb, NULL);
    load_backends();
    llama_backend_init();

    struct llama_model_params mparams = llama_model_default_params();
    mparams.n_gpu_layers = 0;
    struct llama_model *model = llama_model_load_from_file(model_path, mparams);
    if (model == NULL) {
        fail("failed to load model %s: %s", model_path,
             first_error[0] ? first_error : "llama_model_load_from_file returned NULL");
        free(text);
        return 1;
    }

    first_error[0] = 0;
    struct llama_context_params cparams = llama_context_default_params();
    cparams.n_ctx = (uint32_t)n_ctx_total;
    cparams.n_batch = (uint32_t)n_batch;
    cparams.n_seq_max = (uint32_t)n_seq;
    cparams.n_threads = 1;
    cparams.n_threads_batch = 1;
    cparams.swa_full = false; // llama-perplexity's (common's) default
    cparams.no_perf = false;
    struct llama_context *ctx = llama_init_from_model(model, cparams);
    if (ctx == NULL) {
        fail("failed to create a context for model %s: %s", model_path,
             first_error[0] ? first_error : "llama_init_from_model returned NULL");
        llama_model_free(model);
        free(text);
        return 1;
    }

    const struct llama_vocab *vocab = llama_model_get_vocab(model);
    const bool add_bos = llama_vocab_get_add_bos(vocab);
    if (llama_vocab_get_add_eos(vocab)) {
        fail("model %s adds EOS to every text; llama-perplexity refuses such models", model_path);
        goto fail_ctx;
    }
    const int n_vocab = llama_vocab_n_tokens(vocab);
    if (n_vocab <= 0) {
        fail("model %s has an empty vocabulary", model_path);
        goto fail_ctx;
    }

    // Tokenize the whole text once, BOS added, special tokens not parsed.
    if (text_len > (size_t)INT_MAX - 2) {
        fail("text %s is too large (%zu bytes)", text_path, text_len);
        goto fail_ctx;
    }
    int n_tok_cap = (int)text_len + 2;
    llama_token *tokens = malloc(sizeof(llama_token) * (size_t)n_tok_cap);
    if (tokens == NULL) {
        fail("out of memory for %d tokens of %s", n_tok_cap, text_path);
        goto fail_ctx;
    }
    int n_tokens = llama_tokenize(vocab, text, (int32_t)text_len, tokens, n_tok_cap, true, false);
    if (n_tokens < 0) {
        if (n_tokens == INT_MIN) {
            fail("tokenizing %s: result too large", text_path);
            free(tokens);
            goto fail_ctx;
        }
        n_tok_cap = -n_tokens;
        llama_token *nt = realloc(tokens, sizeof(llama_token) * (size_t)n_tok_cap);
        if (nt == NULL) {
            fail("out of memory for %d tokens of %s", n_tok_cap, text_path);
            free(tokens);
            goto fail_ctx;
        }
        tokens = nt;
        n_tokens = llama_tokenize(vocab, text, (int32_t)text_len, tokens, n_tok_cap, true, false);
        if (n_tokens != n_tok_cap) {
            fail("tokenizing %s: token count changed between calls", text_path);
            free(tokens);
            goto fail_ctx;
        }
    }
    fprintf(stderr, "perplexity: %s tokenizes to %d tokens\n", text_path, n_tokens);

    if (n_tokens < 2 * n_ctx) {
        fail("text %s tokenizes to only %d tokens; perplexity with a context of %d needs at least %d",
             text_path, n_tokens, n_ctx, 2 * n_ctx);
        free(tokens);
        goto fail_ctx;
    }

    const int n_chunk_max = n_tokens / n_ctx;
    const int n_chunk = n_chunks < 0 ? n_chunk_max : (n_chunks < n_chunk_max ? n_chunks : n_chunk_max);
    const int num_batches = (n_ctx + n_batch - 1) / n_batch;
    const int first = n_ctx / 2;
    const int n_score = n_ctx - 1 - first; // scored tokens per chunk

    struct llama_batch batch = llama_batch_init(n_batch < n_ctx_total ? n_batch : n_ctx_total, 0, 1);
    // With a chunk split over several decodes, gather its scored logits here.
    float *logits = NULL;
    if (num_batches > 1) {
        logits = malloc(sizeof(float) * (size_t)n_ctx * (size_t)n_vocab);
        if (logits == NULL) {
            fail("out of memory for the logits of one chunk (%d x %d)", n_ctx, n_vocab);
            llama_batch_free(batch);
            free(tokens);
            goto fail_ctx;
        }
    }

    fprintf(stderr, "perplexity: calculating perplexity over %d chunks, n_ctx=%d, batch_size=%d, n_seq=%d\n",
            n_chunk, n_ctx, n_batch, n_seq);

    const double t0 = now_s();
    int count = 0;
    double nll = 0.0, nll2 = 0.0;
    for (int i = 0; i < n_chunk; i += n_seq) {
        const int start = i * n_ctx;
        const int end = start + n_ctx;
        const int n_seq_batch = n_seq < n_chunk - i ? n_seq : n_chunk - i;

        llama_memory_clear(llama_get_memory(ctx), true);

        size_t n_logits = 0; // scored logit rows gathered so far (num_batches > 1)
        for (int j = 0; j < num_batches; ++j) {
            const int batch_start = start + j * n_batch;
            const int batch_size = end - batch_start < n_batch ? end - batch_start : n_batch;
            int n_outputs = 0;
            batch.n_tokens = 0;
            for (int seq = 0; seq < n_seq_batch; seq++) {
                const int seq_start = batch_start + seq * n_ctx;
                for (int k = 0; k < batch_size; ++k) {
                    const int idx = seq * n_ctx + k;
                    llama_token tok = tokens[seq_start + k];
                    if (add_bos && j == 0 && k == 0) {
                        tok = llama_vocab_bos(vocab);
                    }
                    batch.token[idx] = tok;
                    batch.pos[idx] = j * n_batch + k;
                    batch.n_seq_id[idx] = 1;
                    batch.seq_id[idx][0] = seq;
                    batch.logits[idx] = batch.pos[idx] >= first ? 1 : 0;
                    n_outputs += batch.logits[idx] != 0;
                }
                batch.n_tokens += batch_size;
            }
            first_error[0] = 0;
            const int rc = llama_decode(ctx, batch);
            if (rc != 0) {
                fail("llama_decode failed (code %d) on chunk %d of %s with model %s%s%s", rc, i + 1, text_path,
                     model_path, first_error[0] ? ": " : "", first_error);
                free(logits);
                llama_batch_free(batch);
                free(tokens);
                goto fail_ctx;
            }
            if (num_batches > 1 && n_outputs > 0) {
                const float *bl = llama_get_logits(ctx);
                if (bl == NULL) {
                    fail("no logits after decoding chunk %d of %s", i + 1, text_path);
                    free(logits);
                    llama_batch_free(batch);
                    free(tokens);
                    goto fail_ctx;
                }
                memcpy(logits + n_logits * (size_t)n_vocab, bl, sizeof(float) * (size_t)n_outputs * (size_t)n_vocab);
                n_logits += (size_t)n_outputs;
            }
        }

        for (int seq = 0; seq < n_seq_batch; seq++) {
            const float *all_logits = num_batches > 1 ? logits : llama_get_logits_ith(ctx, seq * n_ctx + first);
            if (all_logits == NULL) {
                fail("no logits for chunk %d of %s", i + seq + 1, text_path);
                free(logits);
                llama_batch_free(batch);
                free(tokens);
                goto fail_ctx;
            }
            const llama_token *next = tokens + start + seq * n_ctx + first;
            for (int k = 0; k < n_score; k++) {
                const llama_token tok = next[k + 1];
                if (tok < 0 || tok >= n_vocab) {
                    fail("token %d out of range for the vocabulary of %s", tok, model_path);
                    free(logits);
                    llama_batch_free(batch);
                    free(tokens);
                    goto fail_ctx;
                }
                const double v = neg_log_prob(n_vocab, all_logits + (size_t)k * (size_t)n_vocab, tok);
                nll += v;
                nll2 += v * v;
            }
            count += n_score;
            fprintf(stderr, "[%d]%.4f,", i + seq + 1, exp(nll / count));
        }
        if (i == 0) {
            fprintf(stderr, " (%.2f s for the first pass) ", now_s() - t0);
        }
    }
    fputc('\n', stderr);

    const double mean = nll / count;
    const double ppl = exp(mean);
    double var = nll2 / count - mean * mean;
    double err = 0.0;
    if (var > 0 && count > 1) {
        err = sqrt(var / (count - 1)) * ppl;
        fprintf(stderr, "Final estimate: PPL = %.4f +/- %.5f\n", ppl, err);
    } else {
        fprintf(stderr, "perplexity: unexpected non-positive variance of log(prob)\n");
    }
    fprintf(stderr, "perplexity: %d chunks, %d scored tokens, %.2f s\n", n_chunk, count, now_s() - t0);
    printf("ppl=%.6f stderr=%.6f chunks=%d tokens=%d scored=%d\n", ppl, err, n_chunk, n_tokens, count);

    free(logits);
    llama_batch_free(batch);
    free(tokens);
    free(text);
    llama_free(ctx);
    llama_model_free(model);
    llama_backend_free();
    return fflush(stdout) == 0 ? 0 : 1;

fail_ctx:
    free(text);
    llama_free(ctx);
    llama_model_free(model);
    llama_backend_free();
    return 1;
}
