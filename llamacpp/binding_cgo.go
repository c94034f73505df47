//go:build cgo

package llamacpp

/*
#cgo LDFLAGS: -ldl -lpthread
#include <stdlib.h>
#include "shim.h"
*/
import "C"

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"unsafe"
)

var (
	loadMu sync.Mutex
	loaded *Library
)

// Library is llama.cpp loaded into the process. There is at most one per
// process: llama.cpp's backend registry is global.
type Library struct {
	// Dir is the directory the libraries were loaded from (absolute).
	Dir string
	// Files are the libraries opened.
	Files Files
	// GGMLVersion is ggml_version() of the loaded libggml-base.
	GGMLVersion string
	// GGMLCommit is ggml_commit() of the loaded libggml-base.
	GGMLCommit string
}

// Load opens llama.cpp from dir (see FindFiles), checks that it is a
// supported version whose parameter structs have the layout this binding
// mirrors, loads the backends it finds there (libggml-cpu-*.so) and
// initialises it. A second call with the same directory returns the same
// Library; another directory is refused.
func Load(dir string) (*Library, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("llamacpp: %s: %w", dir, err)
	}
	if real, err := filepath.EvalSymlinks(abs); err == nil {
		abs = real
	}
	files, err := FindFiles(abs)
	if err != nil {
		return nil, err
	}
	loadMu.Lock()
	defer loadMu.Unlock()
	if loaded != nil {
		if loaded.Dir != abs {
			return nil, fmt.Errorf("llamacpp: llama.cpp is already loaded from %s; one process loads one llama.cpp (asked for %s)", loaded.Dir, abs)
		}
		return loaded, nil
	}
	cs := func(s string) *C.char { return C.CString(s) }
	base, ggml, llama, cdir := cs(files.GGMLBase), cs(files.GGML), cs(files.Llama), cs(abs)
	defer C.free(unsafe.Pointer(base))
	defer C.free(unsafe.Pointer(ggml))
	defer C.free(unsafe.Pointer(llama))
	defer C.free(unsafe.Pointer(cdir))
	var ebuf [1024]C.char
	switch rc := C.pg_open(base, ggml, llama, &ebuf[0], C.size_t(len(ebuf))); rc {
	case 0:
	case 1:
		return nil, fmt.Errorf("llamacpp: %s; %s", C.GoString(&ebuf[0]), WhereFrom)
	default:
		return nil, fmt.Errorf("llamacpp: refusing llama.cpp in %s: %s: %w; this binding supports %s", abs, C.GoString(&ebuf[0]), ErrUnsupported, SupportedRelease)
	}
	lib := &Library{Dir: abs, Files: files, GGMLVersion: C.GoString(C.pg_ggml_version()), GGMLCommit: C.GoString(C.pg_ggml_commit())}
	if !slices.Contains(SupportedGGML, lib.GGMLVersion) {
		return nil, fmt.Errorf("llamacpp: refusing llama.cpp in %s: ggml %s (commit %s): %w; this binding supports %s", abs, lib.GGMLVersion, lib.GGMLCommit, ErrUnsupported, SupportedRelease)
	}
	if rc := C.pg_start(ggml, cdir, &ebuf[0], C.size_t(len(ebuf))); rc != 0 {
		return nil, fmt.Errorf("llamacpp: %s; %s", C.GoString(&ebuf[0]), WhereFrom)
	}
	loaded = lib
	return lib, nil
}

// String names the build: "llama.cpp (ggml 0.23.0, commit 5b4ebc5) from DIR".
func (l *Library) String() string {
	return fmt.Sprintf("llama.cpp (ggml %s, commit %s) from %s", l.GGMLVersion, l.GGMLCommit, l.Dir)
}

// SystemInfo returns llama_print_system_info(): the CPU features the loaded
// backend uses.
func (l *Library) SystemInfo() string { return C.GoString(C.pg_system_info()) }

// lastError returns llama.cpp's first logged error since the last clear.
func lastError() string {
	var buf [2048]C.char
	C.pg_log_first_error(&buf[0], C.size_t(len(buf)))
	return C.GoString(&buf[0])
}

func withLog(msg string) string {
	if e := lastError(); e != "" {
		return msg + ": " + e
	}
	return msg
}

// Model is a GGUF model loaded by llama.cpp (weights on the CPU).
type Model struct {
	p unsafe.Pointer
	ModelInfo
}

// LoadModel loads a GGUF model. A model split into shards is loaded from
// its first shard, from which llama.cpp finds the others by its naming
// rule (a later shard is refused by llama.cpp); check the shards first
// with gguf.OpenModel for errors that name a missing or extra one. A file
// llama.cpp refuses yields an error naming the file and carrying
// llama.cpp's own message.
func (l *Library) LoadModel(path string) (*Model, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("llamacpp: model %w", err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("llamacpp: model %s is not a regular file", path)
	}
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	loadMu.Lock() // the log capture holds one error at a time
	defer loadMu.Unlock()
	C.pg_log_clear()
	p := C.pg_model_load(cpath, 0)
	if p == nil {
		return nil, errors.New("llamacpp: llama.cpp cannot load model " + withLog(path))
	}
	m := &Model{p: p, ModelInfo: ModelInfo{Path: path}}
	var nv, ab, ae, bos, nct C.int32_t
	C.pg_model_info(p, &nv, &ab, &ae, &bos, &nct)
	m.NVocab, m.AddBOS, m.AddEOS, m.BOS, m.NCtxTrain = int(nv), ab != 0, ae != 0, int32(bos), int(nct)
	var desc [256]C.char
	C.pg_model_desc(p, &desc[0], C.size_t(len(desc)))
	m.Desc = C.GoString(&desc[0])
	if m.NVocab <= 0 {
		m.Close()
		return nil, fmt.Errorf("llamacpp: model %s has an empty vocabulary", path)
	}
	return m, nil
}

// Close frees the model. Contexts made from it must be closed first.
func (m *Model) Close() {
	if m != nil && m.p != nil {
		C.pg_model_free(m.p)
		m.p = nil
	}
}

// Tokenize tokenizes text with the model's vocabulary. addSpecial adds BOS
// (and EOS) where the model asks for them; parseSpecial turns special-token
// text into special tokens.
func (m *Model) Tokenize(text []byte, addSpecial, parseSpecial bool) ([]int32, error) {
	if len(text) > 1<<30 {
		return nil, fmt.Errorf("llamacpp: text of %d bytes is too large to tokenize", len(text))
	}
	var cText *C.char
	if len(text) > 0 {
		cText = (*C.char)(C.CBytes(text))
		defer C.free(unsafe.Pointer(cText))
	}
	as, ps := C.int(0), C.int(0)
	if addSpecial {
		as = 1
	}
	if parseSpecial {
		ps = 1
	}
	capacity := len(text) + 2
	for range 2 {
		out := make([]int32, capacity)
		n := int(C.pg_tokenize(m.p, cText, C.int32_t(len(text)), (*C.int32_t)(unsafe.Pointer(&out[0])), C.int32_t(capacity), as, ps))
		if n >= 0 {
			return out[:n], nil
		}
		if n == -(1 << 31) {
			break
		}
		capacity = -n
	}
	return nil, errors.New("llamacpp: tokenizing failed: the token count does not fit")
}

// Context is an evaluation context of a model.
type Context struct {
	p      unsafe.Pointer
	m      *Model
	handle uintptr
	nOut   int
}

var (
	cbMu   sync.Mutex
	cbNext uintptr
	cbs    = map[uintptr]TensorFunc{}
)

//export physariumEvalCallback
func physariumEvalCallback(handle C.uintptr_t, t unsafe.Pointer, ask C.bool) C.bool {
	cbMu.Lock()
	f := cbs[uintptr(handle)]
	cbMu.Unlock()
	if f == nil {
		return C.bool(!ask)
	}
	return C.bool(f(Tensor{p: t}, bool(ask)))
}

// NewContext creates an evaluation context on the CPU.
func (m *Model) NewContext(p ContextParams) (*Context, error) {
	if p.NCtx <= 0 || p.NBatch <= 0 || p.NSeq <= 0 || p.Threads <= 0 || p.NUBatch < 0 {
		return nil, fmt.Errorf("llamacpp: context for %s: NCtx, NBatch, NSeq and Threads must be positive (%+v)", m.Path, p)
	}
	if p.NUBatch == 0 {
		p.NUBatch = 512
	}
	o := C.pg_ctx_opts{n_ctx: C.uint32_t(p.NCtx), n_batch: C.uint32_t(p.NBatch), n_ubatch: C.uint32_t(p.NUBatch),
		n_seq_max: C.uint32_t(p.NSeq), n_threads: C.int32_t(p.Threads)}
	c := &Context{m: m}
	if p.OnTensor != nil {
		cbMu.Lock()
		cbNext++
		c.handle = cbNext
		cbs[c.handle] = p.OnTensor
		cbMu.Unlock()
		o.eval_handle = C.uintptr_t(c.handle)
	}
	loadMu.Lock()
	C.pg_log_clear()
	c.p = C.pg_ctx_new(m.p, &o)
	msg := lastError()
	loadMu.Unlock()
	if c.p == nil {
		c.Close()
		if msg != "" {
			msg = ": " + msg
		}
		return nil, fmt.Errorf("llamacpp: llama.cpp cannot create a context (n_ctx %d, batch %d, %d sequences) for %s%s", p.NCtx, p.NBatch, p.NSeq, m.Path, msg)
	}
	return c, nil
}

// Close frees the context.
func (c *Context) Close() {
	if c == nil {
		return
	}
	if c.p != nil {
		C.pg_ctx_free(c.p)
		c.p = nil
	}
	if c.handle != 0 {
		cbMu.Lock()
		delete(cbs, c.handle)
		cbMu.Unlock()
		c.handle = 0
	}
}

// NCtx returns the context's actual number of KV cells.
func (c *Context) NCtx() int { return int(C.pg_ctx_n_ctx(c.p)) }

// Clear empties the context's memory (KV cache) of every sequence.
func (c *Context) Clear() { C.pg_ctx_clear(c.p) }

// Decode evaluates a batch; the logits of the tokens that asked for them are
// then available through Logits until the next Decode.
func (c *Context) Decode(b *Batch) error {
	loadMu.Lock()
	C.pg_log_clear()
	rc := C.pg_decode(c.p, b.p)
	msg := ""
	if rc != 0 {
		msg = lastError()
	}
	loadMu.Unlock()
	if rc != 0 {
		if msg != "" {
			msg = ": " + msg
		}
		return fmt.Errorf("llamacpp: llama_decode of %d tokens with %s failed (code %d)%s", b.Len(), c.m.Path, int32(rc), msg)
	}
	c.nOut = b.outputs
	return nil
}

// Rows returns the logits of n consecutive outputs of the last decoded
// batch, starting with the output of batch index i (as
// llama_get_logits_ith): a view of n*NVocab floats owned by llama.cpp and
// valid until the next Decode. Outputs are stored in batch order, so the
// outputs of one sequence's run of tokens are consecutive rows.
func (c *Context) Rows(i, n int) ([]float32, error) {
	if n < 0 || n > c.nOut {
		return nil, fmt.Errorf("llamacpp: %d logit rows asked of %s, the batch produced %d", n, c.m.Path, c.nOut)
	}
	p := C.pg_logits_ith(c.p, C.int32_t(i))
	if p == nil {
		return nil, fmt.Errorf("llamacpp: no logits for batch index %d of %s", i, c.m.Path)
	}
	return unsafe.Slice((*float32)(unsafe.Pointer(p)), n*c.m.NVocab), nil
}

// Batch is a llama_batch of token ids.
type Batch struct {
	p       unsafe.Pointer
	max     int
	outputs int
}

// NewBatch allocates a batch of at most n tokens.
func NewBatch(n int) (*Batch, error) {
	if n <= 0 || n > 1<<30 {
		return nil, fmt.Errorf("llamacpp: batch size %d out of range", n)
	}
	p := C.pg_batch_new(C.int32_t(n))
	if p == nil {
		return nil, fmt.Errorf("llamacpp: cannot allocate a batch of %d tokens", n)
	}
	b := &Batch{p: p, max: n}
	runtime.SetFinalizer(b, (*Batch).Close)
	return b, nil
}

// Reset empties the batch.
func (b *Batch) Reset() { C.pg_batch_reset(b.p); b.outputs = 0 }

// Len returns the number of tokens in the batch.
func (b *Batch) Len() int { return int(C.pg_batch_n(b.p)) }

// Add appends tokens at positions pos0, pos0+1, ... of sequence seq; tokens
// at positions >= outFrom ask for their logits. It returns the number of
// outputs added.
func (b *Batch) Add(tokens []int32, pos0, seq, outFrom int) (int, error) {
	if len(tokens) == 0 {
		return 0, nil
	}
	n := int(C.pg_batch_add_run(b.p, (*C.int32_t)(unsafe.Pointer(&tokens[0])), C.int32_t(len(tokens)), C.int32_t(pos0), C.int32_t(seq), C.int32_t(outFrom)))
	if n < 0 {
		return 0, fmt.Errorf("llamacpp: batch of %d tokens cannot take %d more", b.max, len(tokens))
	}
	b.outputs += n
	return n, nil
}

// Close frees the batch.
func (b *Batch) Close() {
	if b != nil && b.p != nil {
		C.pg_batch_free(b.p)
		b.p = nil
	}
}

// Tensor is a node of the graph being evaluated, seen by a TensorFunc.
type Tensor struct{ p unsafe.Pointer }

// Name is the tensor's name in the graph (e.g. "ffn_out-3").
func (t Tensor) Name() string { return C.GoString(C.pg_tensor_name(t.p)) }

// Op is the operation that computes the tensor (e.g. "MUL_MAT").
func (t Tensor) Op() string { return C.GoString(C.pg_tensor_op(t.p)) }

// Type is the ggml type name of the tensor's data (e.g. "f32").
func (t Tensor) Type() string { return C.GoString(C.pg_tensor_type(t.p)) }

// Shape returns ne[0..3].
func (t Tensor) Shape() [4]int64 {
	var ne [4]C.int64_t
	C.pg_tensor_ne(t.p, &ne[0])
	return [4]int64{int64(ne[0]), int64(ne[1]), int64(ne[2]), int64(ne[3])}
}

// Bytes returns the size of the tensor's data.
func (t Tensor) Bytes() int { return int(C.pg_tensor_nbytes(t.p)) }

// Read copies the tensor's data (from whichever backend holds it) into dst,
// which must hold Bytes() bytes.
func (t Tensor) Read(dst []byte) error {
	n := t.Bytes()
	if len(dst) < n {
		return fmt.Errorf("llamacpp: tensor %s has %d bytes, buffer %d", t.Name(), n, len(dst))
	}
	if n > 0 {
		C.pg_tensor_get(t.p, unsafe.Pointer(&dst[0]), 0, C.size_t(n))
	}
	return nil
}
