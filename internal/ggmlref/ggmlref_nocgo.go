//go:build !cgo || purego

package ggmlref

import (
	"github.com/physarium/physarium-gguf/gguf"
)

// Lib is a loaded ggml library. Without cgo it cannot be created.
type Lib struct{}

// Load returns ErrNoLlama when PHYSARIUM_LLAMA is unset, and otherwise an
// error saying that the oracle needs cgo.
func Load() (*Lib, error) {
	if _, err := LibraryPath(); err != nil {
		return nil, err
	}
	return nil, ErrNoCgo
}

// Quantize is unavailable without cgo.
func (l *Lib) Quantize(t gguf.Type, dst []byte, src []float32, nrows, ncols int) error {
	return ErrNoCgo
}

// QuantizeImatrix is unavailable without cgo.
func (l *Lib) QuantizeImatrix(t gguf.Type, dst []byte, src []float32, nrows, ncols int, imatrix []float32) error {
	return ErrNoCgo
}

// Dequantize is unavailable without cgo.
func (l *Lib) Dequantize(t gguf.Type, dst []float32, src []byte) error { return ErrNoCgo }

// QuantizeRef is unavailable without cgo.
func (l *Lib) QuantizeRef(t gguf.Type, dst []byte, src []float32) error { return ErrNoCgo }

// RequiresImatrix is unavailable without cgo; it reports false.
func (l *Lib) RequiresImatrix(t gguf.Type) bool { return false }

// ParseGGUF is unavailable without cgo; it reports a refusal.
func (l *Lib) ParseGGUF(b []byte) Verdict { return Verdict{Reason: ErrNoCgo.Error()} }

// ParseGGUFFile is unavailable without cgo; it reports a refusal.
func (l *Lib) ParseGGUFFile(path string, size int64) Verdict {
	return Verdict{Reason: ErrNoCgo.Error()}
}
