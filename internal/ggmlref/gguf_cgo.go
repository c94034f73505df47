//go:build cgo && !purego

package ggmlref

/*
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// ref_gguf_init_params mirrors struct gguf_init_params of gguf.h.
struct ref_gguf_init_params {
	bool   no_alloc;
	void **ctx;
};
typedef void *(*ref_gguf_init_buffer_t)(const void *data, size_t size, struct ref_gguf_init_params p);
typedef void *(*ref_gguf_init_file_t)(const char *path, struct ref_gguf_init_params p);
typedef void (*ref_gguf_free_t)(void *ctx);
typedef int64_t (*ref_gguf_n_tensors_t)(const void *ctx);
typedef size_t (*ref_gguf_data_offset_t)(const void *ctx);
typedef size_t (*ref_gguf_tensor_size_t)(const void *ctx, int64_t i);
typedef void (*ref_log_callback_t)(int level, const char *text, void *user);
typedef void (*ref_log_set_t)(ref_log_callback_t cb, void *user);

// ggml's log lines during one parse: the first error line is kept as the
// reason of a refusal.
static char ref_log_first[512];
static void ref_log_keep(int level, const char *text, void *user) {
	(void)level; (void)user;
	if (ref_log_first[0] == 0 && text != NULL) {
		snprintf(ref_log_first, sizeof ref_log_first, "%s", text);
	}
}

static void *ref_gguf_open(void *init_buffer, void *init_file, void *log_set,
                           const void *data, size_t size, const char *path) {
	struct ref_gguf_init_params p = { true, NULL };
	ref_log_first[0] = 0;
	((ref_log_set_t)log_set)(ref_log_keep, NULL);
	void *ctx = path != NULL ? ((ref_gguf_init_file_t)init_file)(path, p)
	                         : ((ref_gguf_init_buffer_t)init_buffer)(data, size, p);
	((ref_log_set_t)log_set)(NULL, NULL);
	return ctx;
}
static const char *ref_gguf_log(void) { return ref_log_first; }
static int64_t ref_gguf_n_tensors(void *fn, void *ctx) { return ((ref_gguf_n_tensors_t)fn)(ctx); }
static size_t ref_gguf_data_offset(void *fn, void *ctx) { return ((ref_gguf_data_offset_t)fn)(ctx); }
static size_t ref_gguf_tensor_u(void *fn, void *ctx, int64_t i) { return ((ref_gguf_tensor_size_t)fn)(ctx, i); }
static void ref_gguf_close(void *fn, void *ctx) { ((ref_gguf_free_t)fn)(ctx); }
*/
import "C"

import (
	"fmt"
	"math/bits"
	"strings"
	"sync"
	"unsafe"
)

// ggufSyms are the gguf functions of libggml-base that ParseGGUF calls.
type ggufSyms struct {
	initBuffer, initFile, free, nTensors, dataOffset, tensorOffset, tensorSize, logSet unsafe.Pointer
}

var ggufMu sync.Mutex // ggml's log callback is global: one parse at a time

func (l *Lib) loadGGUF(sym func(string) (unsafe.Pointer, error)) error {
	for _, s := range []struct {
		name string
		p    *unsafe.Pointer
	}{
		{"gguf_init_from_buffer", &l.gguf.initBuffer},
		{"gguf_init_from_file", &l.gguf.initFile},
		{"gguf_free", &l.gguf.free},
		{"gguf_get_n_tensors", &l.gguf.nTensors},
		{"gguf_get_data_offset", &l.gguf.dataOffset},
		{"gguf_get_tensor_offset", &l.gguf.tensorOffset},
		{"gguf_get_tensor_size", &l.gguf.tensorSize},
		{"ggml_log_set", &l.gguf.logSet},
	} {
		p, err := sym(s.name)
		if err != nil {
			return err
		}
		*s.p = p
	}
	return nil
}

// ParseGGUF runs llama.cpp's GGUF parser, gguf_init_from_buffer with
// no_alloc, over the bytes of a file, then the check llama_model_loader
// adds before it reads a tensor (its data lie inside the file).
func (l *Lib) ParseGGUF(b []byte) Verdict {
	var p unsafe.Pointer
	if len(b) > 0 {
		p = unsafe.Pointer(&b[0])
	}
	return l.parse(p, len(b), "", int64(len(b)))
}

// ParseGGUFFile is ParseGGUF through gguf_init_from_file, the entry
// llama.cpp's loader uses; size is the file's size.
func (l *Lib) ParseGGUFFile(path string, size int64) Verdict {
	return l.parse(nil, 0, path, size)
}

func (l *Lib) parse(data unsafe.Pointer, n int, path string, size int64) Verdict {
	ggufMu.Lock()
	defer ggufMu.Unlock()
	var cpath *C.char
	if path != "" {
		cpath = C.CString(path)
		defer C.free(unsafe.Pointer(cpath))
	}
	ctx := C.ref_gguf_open(l.gguf.initBuffer, l.gguf.initFile, l.gguf.logSet, data, C.size_t(n), cpath)
	if ctx == nil {
		return Verdict{Reason: strings.TrimSpace(C.GoString(C.ref_gguf_log()))}
	}
	defer C.ref_gguf_close(l.gguf.free, ctx)
	nt := int64(C.ref_gguf_n_tensors(l.gguf.nTensors, ctx))
	start := uint64(C.ref_gguf_data_offset(l.gguf.dataOffset, ctx))
	for i := range nt {
		off := uint64(C.ref_gguf_tensor_u(l.gguf.tensorOffset, ctx, C.int64_t(i)))
		sz := uint64(C.ref_gguf_tensor_u(l.gguf.tensorSize, ctx, C.int64_t(i)))
		// llama_model_loader: offs = data offset + tensor offset, refused
		// when offs + nbytes wraps or passes the end of the file.
		offs := start + off
		end, carry := bits.Add64(offs, sz, 0)
		if carry != 0 || end < offs || end > uint64(size) {
			return Verdict{Reason: fmt.Sprintf("llama_model_loader: tensor %d data is not within the file bounds", i)}
		}
	}
	return Verdict{Accepted: true, Tensors: nt, DataOffset: start}
}
