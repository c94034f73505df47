//go:build cgo && !purego

package ggmlref

/*
#cgo LDFLAGS: -ldl
#include <dlfcn.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

// ref_type_traits mirrors struct ggml_type_traits of ggml.h field for field.
typedef void (*ref_to_float_t)(const void *x, float *y, int64_t k);
typedef void (*ref_from_float_t)(const float *x, void *y, int64_t k);
struct ref_type_traits {
	const char      *type_name;
	int64_t          blck_size;
	int64_t          blck_size_interleave;
	size_t           type_size;
	bool             is_quantized;
	ref_to_float_t   to_float;
	ref_from_float_t from_float_ref;
};

typedef size_t (*ref_quantize_chunk_t)(int type, const float *src, void *dst, int64_t start,
                                       int64_t nrows, int64_t n_per_row, const float *imatrix);
typedef void (*ref_quantize_init_t)(int type);
typedef bool (*ref_requires_imatrix_t)(int type);
typedef const struct ref_type_traits *(*ref_get_traits_t)(int type);

static void *ref_dlopen(const char *path) { return dlopen(path, RTLD_NOW | RTLD_LOCAL); }
static const char *ref_dlerror(void) { return dlerror(); }
static void *ref_dlsym(void *h, const char *name) { return dlsym(h, name); }

static size_t ref_quantize_chunk(void *fn, int type, const float *src, void *dst, int64_t nrows, int64_t ncols, const float *imatrix) {
	return ((ref_quantize_chunk_t)fn)(type, src, dst, 0, nrows, ncols, imatrix);
}
static void ref_quantize_init(void *fn, int type) { ((ref_quantize_init_t)fn)(type); }
static bool ref_requires_imatrix(void *fn, int type) { return ((ref_requires_imatrix_t)fn)(type); }
static const struct ref_type_traits *ref_get_traits(void *fn, int type) { return ((ref_get_traits_t)fn)(type); }
static void ref_to_float(void *fn, const void *x, float *y, int64_t k) { ((ref_to_float_t)fn)(x, y, k); }
static void ref_from_float(void *fn, const float *x, void *y, int64_t k) { ((ref_from_float_t)fn)(x, y, k); }
*/
import "C"

import (
	"fmt"
	"strings"
	"sync"
	"unsafe"

	"github.com/physarium/physarium-gguf/gguf"
)

// typeCount is GGML_TYPE_COUNT of the ggml.h this package mirrors; ggml
// aborts when asked for the traits of a larger id.
const typeCount = 43

// traits is what Load read from ggml_get_type_traits for one type.
type traits struct {
	name        string
	blockSize   int
	blockBytes  int
	toFloat     unsafe.Pointer
	fromFloatRf unsafe.Pointer
	imatrix     bool
}

// Lib is a loaded libggml-base. Its methods are safe for concurrent use.
type Lib struct {
	path          string
	quantizeChunk unsafe.Pointer
	quantizeInit  unsafe.Pointer
	traits        [typeCount]traits
	known         [typeCount]bool
	gguf          ggufSyms
}

var (
	loadOnce sync.Once
	loaded   *Lib
	loadErr  error
)

// Load opens $PHYSARIUM_LLAMA/lib/libggml-base.so (once per process),
// resolves the functions the oracle uses and checks every type's block size
// and block bytes against gguf.Type.Info, so that a layout mismatch between
// this package's view of ggml and the library fails loudly. It returns
// ErrNoLlama when PHYSARIUM_LLAMA is unset.
func Load() (*Lib, error) {
	path, err := LibraryPath()
	if err != nil {
		return nil, err
	}
	loadOnce.Do(func() { loaded, loadErr = load(path) })
	if loadErr != nil {
		return nil, loadErr
	}
	if loaded.path != path {
		return nil, fmt.Errorf("ggmlref: already loaded %s, cannot also load %s", loaded.path, path)
	}
	return loaded, nil
}

func load(path string) (*Lib, error) {
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	h := C.ref_dlopen(cpath)
	if h == nil {
		return nil, fmt.Errorf("ggmlref: dlopen %s: %s", path, C.GoString(C.ref_dlerror()))
	}
	sym := func(name string) (unsafe.Pointer, error) {
		cname := C.CString(name)
		defer C.free(unsafe.Pointer(cname))
		p := C.ref_dlsym(h, cname)
		if p == nil {
			return nil, fmt.Errorf("ggmlref: %s: symbol %s not found", path, name)
		}
		return p, nil
	}
	l := &Lib{path: path}
	var getTraits, requiresImatrix unsafe.Pointer
	for _, s := range []struct {
		name string
		p    *unsafe.Pointer
	}{
		{"ggml_quantize_chunk", &l.quantizeChunk},
		{"ggml_quantize_init", &l.quantizeInit},
		{"ggml_get_type_traits", &getTraits},
		{"ggml_quantize_requires_imatrix", &requiresImatrix},
	} {
		p, err := sym(s.name)
		if err != nil {
			return nil, err
		}
		*s.p = p
	}
	if err := l.loadGGUF(sym); err != nil {
		return nil, err
	}
	for _, t := range gguf.Types() {
		if int(t) >= typeCount {
			return nil, fmt.Errorf("ggmlref: type %s (id %d) is beyond GGML_TYPE_COUNT %d of the mirrored ggml.h", t, t, typeCount)
		}
		ti, _ := t.Info()
		tr := C.ref_get_traits(getTraits, C.int(t))
		if tr == nil {
			return nil, fmt.Errorf("ggmlref: %s: no type traits for %s", path, t)
		}
		got := traits{
			blockSize:   int(tr.blck_size),
			blockBytes:  int(tr.type_size),
			toFloat:     unsafe.Pointer(tr.to_float),
			fromFloatRf: unsafe.Pointer(tr.from_float_ref),
			imatrix:     bool(C.ref_requires_imatrix(requiresImatrix, C.int(t))),
		}
		if tr.type_name != nil {
			got.name = C.GoString(tr.type_name)
		}
		if got.blockSize != ti.BlockSize || got.blockBytes != ti.BlockBytes || !strings.EqualFold(got.name, ti.Name) {
			return nil, fmt.Errorf("ggmlref: %s: type %d is %q with %d values in %d bytes, gguf says %s with %d in %d: layout mismatch",
				path, t, got.name, got.blockSize, got.blockBytes, ti.Name, ti.BlockSize, ti.BlockBytes)
		}
		l.traits[t] = got
		l.known[t] = true
	}
	return l, nil
}

func (l *Lib) lookup(t gguf.Type) (*traits, error) {
	if int(t) >= typeCount || !l.known[t] {
		return nil, fmt.Errorf("ggmlref: unknown type %s", t)
	}
	return &l.traits[t], nil
}

// chunkTypes are the types ggml_quantize_chunk has a case for; it aborts on
// any other (Q8_1 and Q8_K have row quantizers but no case).
var chunkTypes = map[gguf.Type]bool{
	gguf.TypeF32: true, gguf.TypeF16: true, gguf.TypeBF16: true,
	gguf.TypeQ1_0: true, gguf.TypeQ2_0: true,
	gguf.TypeQ4_0: true, gguf.TypeQ4_1: true, gguf.TypeQ5_0: true, gguf.TypeQ5_1: true, gguf.TypeQ8_0: true,
	gguf.TypeMXFP4: true, gguf.TypeNVFP4: true,
	gguf.TypeQ2_K: true, gguf.TypeQ3_K: true, gguf.TypeQ4_K: true, gguf.TypeQ5_K: true, gguf.TypeQ6_K: true,
	gguf.TypeTQ1_0: true, gguf.TypeTQ2_0: true,
	gguf.TypeIQ2_XXS: true, gguf.TypeIQ2_XS: true, gguf.TypeIQ3_XXS: true, gguf.TypeIQ3_S: true,
	gguf.TypeIQ2_S: true, gguf.TypeIQ1_S: true, gguf.TypeIQ1_M: true, gguf.TypeIQ4_NL: true, gguf.TypeIQ4_XS: true,
}

// RequiresImatrix reports whether ggml refuses to quantize t without an
// importance matrix (Quantize returns an error for such types).
func (l *Lib) RequiresImatrix(t gguf.Type) bool {
	tr, err := l.lookup(t)
	return err == nil && tr.imatrix
}

// Quantize runs ggml_quantize_chunk(t, src, dst, 0, nrows, ncols, NULL):
// nrows rows of ncols values each, no importance matrix. src must hold
// exactly nrows*ncols values and dst exactly the rows' bytes; ncols must be
// a multiple of t's block size. Every argument is checked here, because
// ggml aborts the process on a bad one.
func (l *Lib) Quantize(t gguf.Type, dst []byte, src []float32, nrows, ncols int) error {
	return l.QuantizeImatrix(t, dst, src, nrows, ncols, nil)
}

// QuantizeImatrix is Quantize with an importance matrix: imatrix holds one
// weight per column (ncols of them) or is nil, as ggml_quantize_chunk's last
// argument.
func (l *Lib) QuantizeImatrix(t gguf.Type, dst []byte, src []float32, nrows, ncols int, imatrix []float32) error {
	tr, err := l.lookup(t)
	if err != nil {
		return err
	}
	if !chunkTypes[t] {
		return fmt.Errorf("ggmlref: ggml_quantize_chunk cannot quantize %s", t)
	}
	if tr.imatrix && imatrix == nil {
		return fmt.Errorf("ggmlref: ggml quantizes %s only with an importance matrix", t)
	}
	if imatrix != nil && len(imatrix) != ncols {
		return fmt.Errorf("ggmlref: quantize %s: %d importance weights for rows of %d values", t, len(imatrix), ncols)
	}
	if nrows < 0 || ncols <= 0 || ncols%tr.blockSize != 0 {
		return fmt.Errorf("ggmlref: quantize %s: %d rows of %d values: not whole blocks of %d", t, nrows, ncols, tr.blockSize)
	}
	n := nrows * ncols
	if nrows != 0 && n/nrows != ncols || len(src) != n || len(dst) != n/tr.blockSize*tr.blockBytes {
		return fmt.Errorf("ggmlref: quantize %s: %d rows of %d values need %d values and %d bytes, have %d and %d",
			t, nrows, ncols, n, n/tr.blockSize*tr.blockBytes, len(src), len(dst))
	}
	if n == 0 {
		return nil
	}
	var im *C.float
	if imatrix != nil {
		im = (*C.float)(unsafe.Pointer(&imatrix[0]))
	}
	got := C.ref_quantize_chunk(l.quantizeChunk, C.int(t), (*C.float)(unsafe.Pointer(&src[0])),
		unsafe.Pointer(&dst[0]), C.int64_t(nrows), C.int64_t(ncols), im)
	if int(got) != len(dst) {
		return fmt.Errorf("ggmlref: quantize %s: ggml wrote %d bytes, want %d", t, got, len(dst))
	}
	return nil
}

// Dequantize runs t's to_float over src, a whole number of t's blocks, into
// dst, which must hold exactly their values. ggml has no to_float for F32
// (its values are stored as they are); for F32 Dequantize copies the bits.
func (l *Lib) Dequantize(t gguf.Type, dst []float32, src []byte) error {
	tr, err := l.lookup(t)
	if err != nil {
		return err
	}
	if len(src)%tr.blockBytes != 0 || len(dst) != len(src)/tr.blockBytes*tr.blockSize {
		return fmt.Errorf("ggmlref: dequantize %s: %d bytes into %d values: not whole blocks of %d bytes / %d values",
			t, len(src), len(dst), tr.blockBytes, tr.blockSize)
	}
	if len(dst) == 0 {
		return nil
	}
	if t == gguf.TypeF32 {
		copy(unsafe.Slice((*byte)(unsafe.Pointer(&dst[0])), len(src)), src)
		return nil
	}
	if tr.toFloat == nil {
		return fmt.Errorf("ggmlref: ggml has no to_float for %s", t)
	}
	C.ref_to_float(tr.toFloat, unsafe.Pointer(&src[0]), (*C.float)(unsafe.Pointer(&dst[0])), C.int64_t(len(dst)))
	return nil
}

// QuantizeRef runs t's from_float_ref (quantize_row_<type>_ref) over src, a
// whole number of t's blocks of values, into dst, which must hold exactly
// those blocks. For most types this equals Quantize of one row; ggml's
// row quantizers without an importance matrix call the same code.
func (l *Lib) QuantizeRef(t gguf.Type, dst []byte, src []float32) error {
	tr, err := l.lookup(t)
	if err != nil {
		return err
	}
	if tr.fromFloatRf == nil {
		return fmt.Errorf("ggmlref: ggml has no from_float_ref for %s", t)
	}
	if tr.imatrix {
		return fmt.Errorf("ggmlref: ggml quantizes %s only with an importance matrix", t)
	}
	if len(src)%tr.blockSize != 0 || len(dst) != len(src)/tr.blockSize*tr.blockBytes {
		return fmt.Errorf("ggmlref: quantize_ref %s: %d values into %d bytes: not whole blocks of %d values / %d bytes",
			t, len(src), len(dst), tr.blockSize, tr.blockBytes)
	}
	if len(src) == 0 {
		return nil
	}
	// ggml_quantize_chunk initialises the lookup tables some types need;
	// do the same before calling a row quantizer directly.
	C.ref_quantize_init(l.quantizeInit, C.int(t))
	C.ref_from_float(tr.fromFloatRf, (*C.float)(unsafe.Pointer(&src[0])), unsafe.Pointer(&dst[0]), C.int64_t(len(src)))
	return nil
}
