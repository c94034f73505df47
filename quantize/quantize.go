// Package quantize holds one block codec per ggml tensor type: Decode turns
// blocks into float32 values and Encode turns float32 values into blocks,
// byte for byte as ggml's reference quantizers do.
//
// The package knows ggml block layouts and nothing of files: callers pass
// whole blocks (len(src) a multiple of the type's block bytes for Decode, of
// its block size for Encode).
package quantize

import (
	"errors"
	"fmt"

	"github.com/physarium/physarium-gguf/gguf"
)

// ZeroKind says how a type's encoders treat weights that must read back as 0.
type ZeroKind int

const (
	// ZeroExact: the reference encoder maps every 0.0 input to an exact 0.0
	// (symmetric formats: the grid holds zero).
	ZeroExact ZeroKind = iota
	// ZeroPreserving: the grid can hold zero, but only EncodeKeepZeros puts it
	// there (formats with a min: Q4_1, Q5_1, Q2_K, Q4_K, Q5_K).
	ZeroPreserving
	// ZeroNone: the format has no zero code (IQ4_NL, IQ4_XS, the IQ grids);
	// a killed weight reads back as the nearest code, and the caller counts
	// how far from zero it lands.
	ZeroNone
)

// codec is the set of functions registered for one type. The encoders are
// nil for types that can only be decoded; encode is nil too for types that
// ggml encodes only with importance weights (needsWeights).
type codec struct {
	decode          func(dst []float32, src []byte)
	encode          func(dst []byte, src []float32)
	encodeKeepZeros func(dst []byte, src []float32)
	// encodeWeighted takes one importance weight per value of src, or nil.
	encodeWeighted func(dst []byte, src, qw []float32)
	// keepZerosWeighted is encodeKeepZeros on top of importance weights
	// (one per value of src); nil for types whose keep-zeros encoder
	// takes none.
	keepZerosWeighted func(dst []byte, src, qw []float32)
	needsWeights      bool
	zero              ZeroKind
}

// ErrNeedsWeights is returned (wrapped) by Encode for a type that ggml
// quantizes only with importance weights: use EncodeWeighted.
var ErrNeedsWeights = errors.New("ggml encodes this type only with importance weights (an imatrix)")

var codecs = map[gguf.Type]codec{}

// register is called from the init function of each codec's file.
func register(t gguf.Type, c codec) {
	if _, dup := codecs[t]; dup {
		panic("quantize: codec registered twice for " + t.String())
	}
	codecs[t] = c
}

// UnsupportedError is returned for a type this package cannot decode or encode.
type UnsupportedError struct {
	Type gguf.Type
	Op   string // "decode" or "encode"
}

func (e *UnsupportedError) Error() string {
	return fmt.Sprintf("quantize: unsupported type %s for %s", e.Type, e.Op)
}

// CanDecode reports whether Decode supports t.
func CanDecode(t gguf.Type) bool { return codecs[t].decode != nil }

// CanEncode reports whether t can be encoded: by Encode, or, for the types
// where NeedsWeights is true, by EncodeWeighted (and EncodeKeepZeros, which
// brings its own weights).
func CanEncode(t gguf.Type) bool {
	c := codecs[t]
	return c.encode != nil || c.encodeWeighted != nil
}

// NeedsWeights reports whether ggml encodes t only with importance weights
// (IQ2_XXS, IQ2_XS, IQ1_S): Encode refuses such a type and EncodeWeighted
// must be given weights.
func NeedsWeights(t gguf.Type) bool { return codecs[t].needsWeights }

// CanEncodeWeighted reports whether EncodeWeighted takes importance weights
// for t (the IQ grid types).
func CanEncodeWeighted(t gguf.Type) bool { return codecs[t].encodeWeighted != nil }

// Zero returns how t's encoders treat zeros; ok is false when t cannot be encoded.
func Zero(t gguf.Type) (z ZeroKind, ok bool) {
	return codecs[t].zero, CanEncode(t)
}

func sizes(t gguf.Type, op string) (blockSize, blockBytes int, err error) {
	ti, ok := t.Info()
	if !ok {
		return 0, 0, &UnsupportedError{Type: t, Op: op}
	}
	return ti.BlockSize, ti.BlockBytes, nil
}

// Decode dequantizes src, a whole number of t's blocks, into dst, which must
// hold exactly the blocks' elements.
func Decode(t gguf.Type, dst []float32, src []byte) error {
	c := codecs[t]
	if c.decode == nil {
		return &UnsupportedError{Type: t, Op: "decode"}
	}
	bs, bb, err := sizes(t, "decode")
	if err != nil {
		return err
	}
	if len(src)%bb != 0 || len(dst) != len(src)/bb*bs {
		return fmt.Errorf("quantize: decode %s: %d bytes into %d values: not whole blocks of %d bytes / %d values", t, len(src), len(dst), bb, bs)
	}
	c.decode(dst, src)
	return nil
}

// Encode quantizes src, a whole number of t's blocks of values, into dst,
// which must hold exactly those blocks, byte for byte as ggml's reference
// quantizer (ggml_quantize_chunk without an importance matrix) does.
func Encode(t gguf.Type, dst []byte, src []float32) error {
	c := codecs[t]
	if c.needsWeights {
		return fmt.Errorf("quantize: encode %s: %w: use EncodeWeighted", t, ErrNeedsWeights)
	}
	if c.encode == nil {
		return &UnsupportedError{Type: t, Op: "encode"}
	}
	return encodeWith(t, c.encode, dst, src)
}

// EncodeWeighted is Encode with importance weights, byte for byte as
// ggml_quantize_chunk with an imatrix: weights holds one value per column
// of a row, src is whole rows of len(weights) values (len(weights) a
// multiple of t's block size), and every row is weighted by the same
// weights. With nil weights it is Encode. Types without a weighted encoder
// (CanEncodeWeighted false) refuse weights.
func EncodeWeighted(t gguf.Type, dst []byte, src, weights []float32) error {
	if weights == nil {
		return Encode(t, dst, src)
	}
	c := codecs[t]
	if c.encodeWeighted == nil {
		return &UnsupportedError{Type: t, Op: "weighted encode"}
	}
	bs, bb, err := sizes(t, "weighted encode")
	if err != nil {
		return err
	}
	n := len(weights)
	if n == 0 || n%bs != 0 || len(src)%n != 0 {
		return fmt.Errorf("quantize: encode %s: %d weights for %d values: want whole rows, a multiple of %d values each", t, n, len(src), bs)
	}
	if len(dst) != len(src)/bs*bb {
		return fmt.Errorf("quantize: encode %s: %d values into %d bytes: not whole blocks of %d values / %d bytes", t, len(src), len(dst), bs, bb)
	}
	rowBytes := n / bs * bb
	for r := 0; r < len(src)/n; r++ {
		c.encodeWeighted(dst[r*rowBytes:(r+1)*rowBytes], src[r*n:(r+1)*n], weights)
	}
	return nil
}

// EncodeKeepZeros is Encode for blocks that hold pruned weights: every value
// of src that is exactly 0.0 reads back as exactly 0.0 wherever the format has
// a zero code (ZeroExact and ZeroPreserving types), and the other values are
// fitted as well as the format allows. For ZeroExact types and for IQ4_NL
// and IQ4_XS it is the reference encoder. For the IQ grid types (ZeroNone,
// no zero code) it is ggml's weighted encoder with weights of its own: 1 for
// a nonzero value and iqZeroWeight for a zero, so that the search pulls the
// zeros as close to 0 as the grid allows; it needs no imatrix.
func EncodeKeepZeros(t gguf.Type, dst []byte, src []float32) error {
	c := codecs[t]
	if !CanEncode(t) {
		return &UnsupportedError{Type: t, Op: "encode"}
	}
	enc := c.encode
	if c.encodeKeepZeros != nil {
		enc = c.encodeKeepZeros
	}
	return encodeWith(t, enc, dst, src)
}

// EncodeKeepZerosWeighted is EncodeKeepZeros with importance weights qw,
// one per value of src (len(qw) == len(src); nil is EncodeKeepZeros). For
// the IQ grid types (CanEncodeWeighted) the importance of value i is
// qw[i], times iqZeroWeight (4) when the value is exactly 0.0; with every
// qw[i] 1 it is EncodeKeepZeros byte for byte. For every other type the
// weights are ignored and it is EncodeKeepZeros.
func EncodeKeepZerosWeighted(t gguf.Type, dst []byte, src, qw []float32) error {
	c := codecs[t]
	if qw == nil || c.keepZerosWeighted == nil {
		return EncodeKeepZeros(t, dst, src)
	}
	if len(qw) != len(src) {
		return fmt.Errorf("quantize: encode %s: %d importance weights for %d values: want one per value", t, len(qw), len(src))
	}
	return encodeWith(t, func(dst []byte, src []float32) { c.keepZerosWeighted(dst, src, qw) }, dst, src)
}

func encodeWith(t gguf.Type, enc func([]byte, []float32), dst []byte, src []float32) error {
	bs, bb, err := sizes(t, "encode")
	if err != nil {
		return err
	}
	if len(src)%bs != 0 || len(dst) != len(src)/bs*bb {
		return fmt.Errorf("quantize: encode %s: %d values into %d bytes: not whole blocks of %d values / %d bytes", t, len(src), len(dst), bs, bb)
	}
	enc(dst, src)
	return nil
}
