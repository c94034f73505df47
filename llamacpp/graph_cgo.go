//go:build cgo

package llamacpp

/*
#include <stdint.h>
#include <string.h>
#include "shim.h"

// Offsets in struct ggml_tensor of the supported ggml (64-bit): type 0,
// buffer 8, ne[4] 16, nb[4] 48, op 80, op_params 84, flags 148, src[10] 152,
// view_src 232, view_offs 240, data 248, name 256. pg_graph_layout_ok checks
// the one offset a library call can confirm (the name).
static void *pg_graph_src(void *t, int i) { return ((void **)((char *)t + 152))[i]; }
static void pg_graph_nb(void *t, uint64_t nb[4]) { memcpy(nb, (const char *)t + 48, 4 * sizeof(uint64_t)); }
static int pg_graph_layout_ok(void *t) { return pg_tensor_name(t) == (const char *)t + 256; }
*/
import "C"

import (
	"errors"
	"unsafe"
)

// maxSrc is GGML_MAX_SRC of the supported ggml.
const maxSrc = 10

// Src returns the node's i-th source (src[i]: for MUL_MAT, 0 is the weight
// and 1 the input; for MUL_MAT_ID, 2 holds the expert ids), and false when
// the node has none there.
func (t Tensor) Src(i int) (Tensor, bool) {
	if i < 0 || i >= maxSrc || t.p == nil {
		return Tensor{}, false
	}
	p := C.pg_graph_src(t.p, C.int(i))
	if p == nil {
		return Tensor{}, false
	}
	return Tensor{p: p}, true
}

// Strides returns nb[0..3], the byte strides of the tensor's dimensions
// (a view's rows need not be contiguous).
func (t Tensor) Strides() [4]uint64 {
	var nb [4]C.uint64_t
	C.pg_graph_nb(t.p, &nb[0])
	return [4]uint64{uint64(nb[0]), uint64(nb[1]), uint64(nb[2]), uint64(nb[3])}
}

// ErrLayout is returned by CheckLayout when a graph tensor's struct does not
// have the layout the accessors read.
var ErrLayout = errors.New("llamacpp: ggml_tensor does not have the layout this binding reads (unsupported ggml)")

// CheckLayout confirms, on a live graph tensor, that the struct offsets the
// accessors use (Src, Strides) match the loaded ggml: the name must lie
// where ggml_get_name finds it.
func (t Tensor) CheckLayout() error {
	if t.p == nil || C.pg_graph_layout_ok(t.p) == 0 {
		return ErrLayout
	}
	return nil
}

// ID returns an identity of the node, equal for the same node within one
// graph evaluation (the allocator may reuse it in the next evaluation).
func (t Tensor) ID() uintptr { return uintptr(unsafe.Pointer(t.p)) }
