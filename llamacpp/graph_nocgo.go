//go:build !cgo

package llamacpp

import "errors"

// Name is "" without cgo.
func (t Tensor) Name() string { return "" }

// Op is "" without cgo.
func (t Tensor) Op() string { return "" }

// Type is "" without cgo.
func (t Tensor) Type() string { return "" }

// Shape is zero without cgo.
func (t Tensor) Shape() [4]int64 { return [4]int64{} }

// Bytes is 0 without cgo.
func (t Tensor) Bytes() int { return 0 }

// Read fails without cgo.
func (t Tensor) Read(dst []byte) error { return ErrUnavailable }

// Src has no sources without cgo.
func (t Tensor) Src(i int) (Tensor, bool) { return Tensor{}, false }

// Strides is zero without cgo.
func (t Tensor) Strides() [4]uint64 { return [4]uint64{} }

// ErrLayout is returned by CheckLayout when a graph tensor's struct does not
// have the layout the accessors read.
var ErrLayout = errors.New("llamacpp: ggml_tensor does not have the layout this binding reads (unsupported ggml)")

// CheckLayout fails without cgo.
func (t Tensor) CheckLayout() error { return ErrUnavailable }

// ID is 0 without cgo.
func (t Tensor) ID() uintptr { return 0 }
