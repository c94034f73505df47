package gguf

import (
	"encoding/binary"
	"fmt"
	"io"
	"math"
)

// ValueType is a GGUF metadata value type id.
type ValueType uint32

// The GGUF metadata value types.
const (
	TypeUint8   ValueType = 0
	TypeInt8    ValueType = 1
	TypeUint16  ValueType = 2
	TypeInt16   ValueType = 3
	TypeUint32  ValueType = 4
	TypeInt32   ValueType = 5
	TypeFloat32 ValueType = 6
	TypeBool    ValueType = 7
	TypeString  ValueType = 8
	TypeArray   ValueType = 9
	TypeUint64  ValueType = 10
	TypeInt64   ValueType = 11
	TypeFloat64 ValueType = 12
)

var valueTypeNames = [...]string{
	TypeUint8:   "UINT8",
	TypeInt8:    "INT8",
	TypeUint16:  "UINT16",
	TypeInt16:   "INT16",
	TypeUint32:  "UINT32",
	TypeInt32:   "INT32",
	TypeFloat32: "FLOAT32",
	TypeBool:    "BOOL",
	TypeString:  "STRING",
	TypeArray:   "ARRAY",
	TypeUint64:  "UINT64",
	TypeInt64:   "INT64",
	TypeFloat64: "FLOAT64",
}

// String returns the upper-case name of the value type as gguf-py spells it
// ("UINT8", "STRING", "ARRAY", ...), or "ValueType(N)" for an unknown id.
func (t ValueType) String() string {
	if int(t) < len(valueTypeNames) {
		return valueTypeNames[t]
	}
	return fmt.Sprintf("ValueType(%d)", uint32(t))
}

// Valid reports whether t is a known GGUF value type id (ARRAY included).
func (t ValueType) Valid() bool { return t <= TypeFloat64 }

// scalarSize returns the encoded size of a fixed-size scalar type, or 0 for
// STRING, ARRAY and unknown ids.
func (t ValueType) scalarSize() int {
	switch t {
	case TypeUint8, TypeInt8, TypeBool:
		return 1
	case TypeUint16, TypeInt16:
		return 2
	case TypeUint32, TypeInt32, TypeFloat32:
		return 4
	case TypeUint64, TypeInt64, TypeFloat64:
		return 8
	}
	return 0
}

// Value is one metadata value. Data holds the Go value of the exact stored
// type: uint8, int8, uint16, int16, uint32, int32, float32, bool, string,
// uint64, int64, float64 for scalars; for arrays (Type == TypeArray) a slice
// of the element type ([]uint8 ... []string ... []float64). Nested arrays are
// not supported.
//
// An array too large to decode at once (see MaxEagerArrayBytes) has an
// *ArrayRef as Data instead of a slice.
//
// A BOOL read from a file keeps its byte: ggml reads any nonzero byte as
// true, and the writer writes back the byte that was read (2 stays 2) as
// long as Data still says the same.
type Value struct {
	Type ValueType
	Elem ValueType // element type when Type == TypeArray
	Data any

	// raw holds the BOOL bytes as read when one of them is neither 0 nor
	// 1; a pointer keeps Value (and every KV of a header of millions)
	// small.
	raw *[]byte
}

// KV is one metadata key-value pair.
type KV struct {
	Key   string
	Value Value
}

// Uint8 returns a UINT8 value.
func Uint8(v uint8) Value { return Value{Type: TypeUint8, Data: v} }

// Int8 returns an INT8 value.
func Int8(v int8) Value { return Value{Type: TypeInt8, Data: v} }

// Uint16 returns a UINT16 value.
func Uint16(v uint16) Value { return Value{Type: TypeUint16, Data: v} }

// Int16 returns an INT16 value.
func Int16(v int16) Value { return Value{Type: TypeInt16, Data: v} }

// Uint32 returns a UINT32 value.
func Uint32(v uint32) Value { return Value{Type: TypeUint32, Data: v} }

// Int32 returns an INT32 value.
func Int32(v int32) Value { return Value{Type: TypeInt32, Data: v} }

// Float32 returns a FLOAT32 value.
func Float32(v float32) Value { return Value{Type: TypeFloat32, Data: v} }

// Bool returns a BOOL value.
func Bool(v bool) Value { return Value{Type: TypeBool, Data: v} }

// String returns a STRING value.
func String(v string) Value { return Value{Type: TypeString, Data: v} }

// Uint64 returns a UINT64 value.
func Uint64(v uint64) Value { return Value{Type: TypeUint64, Data: v} }

// Int64 returns an INT64 value.
func Int64(v int64) Value { return Value{Type: TypeInt64, Data: v} }

// Float64 returns a FLOAT64 value.
func Float64(v float64) Value { return Value{Type: TypeFloat64, Data: v} }

func array(elem ValueType, data any) Value { return Value{Type: TypeArray, Elem: elem, Data: data} }

// Uint8s returns an ARRAY of UINT8.
func Uint8s(v []uint8) Value { return array(TypeUint8, v) }

// Int8s returns an ARRAY of INT8.
func Int8s(v []int8) Value { return array(TypeInt8, v) }

// Uint16s returns an ARRAY of UINT16.
func Uint16s(v []uint16) Value { return array(TypeUint16, v) }

// Int16s returns an ARRAY of INT16.
func Int16s(v []int16) Value { return array(TypeInt16, v) }

// Uint32s returns an ARRAY of UINT32.
func Uint32s(v []uint32) Value { return array(TypeUint32, v) }

// Int32s returns an ARRAY of INT32.
func Int32s(v []int32) Value { return array(TypeInt32, v) }

// Float32s returns an ARRAY of FLOAT32.
func Float32s(v []float32) Value { return array(TypeFloat32, v) }

// Bools returns an ARRAY of BOOL.
func Bools(v []bool) Value { return array(TypeBool, v) }

// Strings returns an ARRAY of STRING.
func Strings(v []string) Value { return array(TypeString, v) }

// Uint64s returns an ARRAY of UINT64.
func Uint64s(v []uint64) Value { return array(TypeUint64, v) }

// Int64s returns an ARRAY of INT64.
func Int64s(v []int64) Value { return array(TypeInt64, v) }

// Float64s returns an ARRAY of FLOAT64.
func Float64s(v []float64) Value { return array(TypeFloat64, v) }

// AsString returns the value of a STRING.
func (v Value) AsString() (string, bool) {
	s, ok := v.Data.(string)
	return s, ok && v.Type == TypeString
}

// AsUint64 returns the value of any unsigned integer, or of a non-negative
// signed integer, as a uint64.
func (v Value) AsUint64() (uint64, bool) {
	switch x := v.Data.(type) {
	case uint8:
		return uint64(x), v.Type == TypeUint8
	case uint16:
		return uint64(x), v.Type == TypeUint16
	case uint32:
		return uint64(x), v.Type == TypeUint32
	case uint64:
		return x, v.Type == TypeUint64
	case int8:
		return uint64(x), x >= 0 && v.Type == TypeInt8
	case int16:
		return uint64(x), x >= 0 && v.Type == TypeInt16
	case int32:
		return uint64(x), x >= 0 && v.Type == TypeInt32
	case int64:
		return uint64(x), x >= 0 && v.Type == TypeInt64
	}
	return 0, false
}

// AsFloat64 returns the value of any numeric scalar (integer or float) as a
// float64.
func (v Value) AsFloat64() (float64, bool) {
	switch x := v.Data.(type) {
	case float32:
		return float64(x), v.Type == TypeFloat32
	case float64:
		return x, v.Type == TypeFloat64
	case uint8:
		return float64(x), v.Type == TypeUint8
	case uint16:
		return float64(x), v.Type == TypeUint16
	case uint32:
		return float64(x), v.Type == TypeUint32
	case uint64:
		return float64(x), v.Type == TypeUint64
	case int8:
		return float64(x), v.Type == TypeInt8
	case int16:
		return float64(x), v.Type == TypeInt16
	case int32:
		return float64(x), v.Type == TypeInt32
	case int64:
		return float64(x), v.Type == TypeInt64
	}
	return 0, false
}

// AsBool returns the value of a BOOL.
func (v Value) AsBool() (bool, bool) {
	b, ok := v.Data.(bool)
	return b, ok && v.Type == TypeBool
}

// Len returns the number of elements of an array, and 0 for a scalar.
func (v Value) Len() int {
	if v.Type != TypeArray {
		return 0
	}
	switch x := v.Data.(type) {
	case []uint8:
		return len(x)
	case []int8:
		return len(x)
	case []uint16:
		return len(x)
	case []int16:
		return len(x)
	case []uint32:
		return len(x)
	case []int32:
		return len(x)
	case []float32:
		return len(x)
	case []bool:
		return len(x)
	case []string:
		return len(x)
	case []uint64:
		return len(x)
	case []int64:
		return len(x)
	case []float64:
		return len(x)
	case *ArrayRef:
		return int(x.n)
	}
	return 0
}

// check reports whether Data holds the Go type that Type (and Elem) require.
func (v Value) check() error {
	want := v.Type
	if v.Type == TypeArray {
		want = v.Elem
		if v.Elem == TypeArray {
			return fmt.Errorf("nested arrays are unsupported")
		}
	}
	if a, isRef := v.Data.(*ArrayRef); isRef {
		if v.Type != TypeArray || a == nil || a.elem != v.Elem {
			return fmt.Errorf("value of type %s (of %s) holds an array reference of %s", v.Type, v.Elem, a.Elem())
		}
		return nil
	}
	var ok bool
	switch want {
	case TypeUint8:
		ok = isType[uint8](v)
	case TypeInt8:
		ok = isType[int8](v)
	case TypeUint16:
		ok = isType[uint16](v)
	case TypeInt16:
		ok = isType[int16](v)
	case TypeUint32:
		ok = isType[uint32](v)
	case TypeInt32:
		ok = isType[int32](v)
	case TypeFloat32:
		ok = isType[float32](v)
	case TypeBool:
		ok = isType[bool](v)
	case TypeString:
		ok = isType[string](v)
	case TypeUint64:
		ok = isType[uint64](v)
	case TypeInt64:
		ok = isType[int64](v)
	case TypeFloat64:
		ok = isType[float64](v)
	default:
		return fmt.Errorf("unknown value type %s", want)
	}
	if !ok {
		if v.Type == TypeArray {
			return fmt.Errorf("value of type ARRAY of %s holds %T", v.Elem, v.Data)
		}
		return fmt.Errorf("value of type %s holds %T", v.Type, v.Data)
	}
	return nil
}

// rawBytes returns the BOOL bytes kept as read, or nil.
func (v Value) rawBytes() []byte {
	if v.raw == nil {
		return nil
	}
	return *v.raw
}

func isType[T any](v Value) bool {
	if v.Type == TypeArray {
		_, ok := v.Data.([]T)
		return ok
	}
	_, ok := v.Data.(T)
	return ok
}

// appendValue appends the encoding of v (without its type id) to b. v must
// have passed check. It is one flat switch over the format's 13 value types
// and their array forms (gocyclo counts each case): one case per wire
// layout, with nothing shared that a split would name.
func appendValue(b []byte, v Value) []byte {
	if v.Type == TypeArray {
		b = appendU32(b, uint32(v.Elem))
		b = appendU64(b, uint64(v.Len()))
		switch x := v.Data.(type) {
		case []uint8:
			b = append(b, x...)
		case []int8:
			for _, e := range x {
				b = append(b, byte(e))
			}
		case []uint16:
			for _, e := range x {
				b = appendU16(b, e)
			}
		case []int16:
			for _, e := range x {
				b = appendU16(b, uint16(e))
			}
		case []uint32:
			for _, e := range x {
				b = appendU32(b, e)
			}
		case []int32:
			for _, e := range x {
				b = appendU32(b, uint32(e))
			}
		case []float32:
			for _, e := range x {
				b = appendU32(b, math.Float32bits(e))
			}
		case []bool:
			for i, e := range x {
				if raw := v.rawBytes(); len(raw) == len(x) && (raw[i] != 0) == e {
					b = append(b, raw[i])
				} else {
					b = appendBool(b, e)
				}
			}
		case []string:
			for _, e := range x {
				b = appendString(b, e)
			}
		case []uint64:
			for _, e := range x {
				b = appendU64(b, e)
			}
		case []int64:
			for _, e := range x {
				b = appendU64(b, uint64(e))
			}
		case []float64:
			for _, e := range x {
				b = appendU64(b, math.Float64bits(e))
			}
		}
		return b
	}
	switch x := v.Data.(type) {
	case uint8:
		b = append(b, x)
	case int8:
		b = append(b, byte(x))
	case uint16:
		b = appendU16(b, x)
	case int16:
		b = appendU16(b, uint16(x))
	case uint32:
		b = appendU32(b, x)
	case int32:
		b = appendU32(b, uint32(x))
	case float32:
		b = appendU32(b, math.Float32bits(x))
	case bool:
		if raw := v.rawBytes(); len(raw) == 1 && (raw[0] != 0) == x {
			b = append(b, raw[0])
		} else {
			b = appendBool(b, x)
		}
	case string:
		b = appendString(b, x)
	case uint64:
		b = appendU64(b, x)
	case int64:
		b = appendU64(b, uint64(x))
	case float64:
		b = appendU64(b, math.Float64bits(x))
	}
	return b
}

func appendU16(b []byte, v uint16) []byte { return append(b, byte(v), byte(v>>8)) }
func appendU32(b []byte, v uint32) []byte {
	return append(b, byte(v), byte(v>>8), byte(v>>16), byte(v>>24))
}
func appendU64(b []byte, v uint64) []byte {
	return appendU32(appendU32(b, uint32(v)), uint32(v>>32))
}
func appendBool(b []byte, v bool) []byte {
	if v {
		return append(b, 1)
	}
	return append(b, 0)
}
func appendString(b []byte, s string) []byte {
	return append(appendU64(b, uint64(len(s))), s...)
}

// ArrayRef is an array value left in the file: the reader keeps arrays
// whose elements take more than MaxEagerArrayBytes this way, after checking
// their count, their lengths and that they fit in the file. The writer
// copies it byte for byte from the file, which must still be open.
type ArrayRef struct {
	src  io.ReaderAt
	off  int64 // file offset of the first element
	size int64 // encoded bytes of the elements
	n    uint64
	elem ValueType
}

// Len returns the number of elements.
func (a *ArrayRef) Len() uint64 { return a.n }

// Elem returns the element type.
func (a *ArrayRef) Elem() ValueType { return a.elem }

// Size returns the encoded size of the elements in bytes (without the
// element type and count that precede them).
func (a *ArrayRef) Size() int64 { return a.size }

// Reader returns a reader of the encoded elements, as stored in the file.
func (a *ArrayRef) Reader() *io.SectionReader { return io.NewSectionReader(a.src, a.off, a.size) }

// String describes the array without reading it.
func (a *ArrayRef) String() string {
	return fmt.Sprintf("[%d %s elements, %d bytes, not loaded]", a.n, a.elem, a.size)
}

// Load reads and decodes the elements into a Value whose Data is a slice,
// as if the array had been small enough to decode when the file was read.
func (a *ArrayRef) Load() (Value, error) {
	p := make([]byte, a.size)
	if _, err := io.ReadFull(a.Reader(), p); err != nil {
		return Value{}, fmt.Errorf("gguf: array of %d %s: %w", a.n, a.elem, err)
	}
	if a.elem != TypeString {
		return decodeArray(a.elem, p), nil
	}
	out := make([]string, 0, min(a.n, 1024))
	for i := uint64(0); i < a.n; i++ {
		if len(p) < 8 || binary.LittleEndian.Uint64(p) > uint64(len(p)-8) {
			return Value{}, fmt.Errorf("gguf: array of %d %s: element %d changed since the file was read", a.n, a.elem, i)
		}
		k := binary.LittleEndian.Uint64(p)
		out = append(out, string(p[8:8+k]))
		p = p[8+k:]
	}
	return Value{Type: TypeArray, Elem: TypeString, Data: out}, nil
}

// decodeArray decodes the little-endian elements p of a fixed-size type t;
// len(p) is a multiple of the element size.
func decodeArray(t ValueType, p []byte) Value {
	le := binary.LittleEndian
	es := t.scalarSize()
	n := len(p) / es
	v := Value{Type: TypeArray, Elem: t}
	switch t {
	case TypeUint8:
		v.Data = p
	case TypeInt8:
		o := make([]int8, n)
		for i := range o {
			o[i] = int8(p[i])
		}
		v.Data = o
	case TypeBool:
		o := make([]bool, n)
		odd := false
		for i := range o {
			o[i] = p[i] != 0
			odd = odd || p[i] > 1
		}
		v.Data = o
		if odd {
			v.raw = &p
		}
	case TypeUint16:
		o := make([]uint16, n)
		for i := range o {
			o[i] = le.Uint16(p[2*i:])
		}
		v.Data = o
	case TypeInt16:
		o := make([]int16, n)
		for i := range o {
			o[i] = int16(le.Uint16(p[2*i:]))
		}
		v.Data = o
	case TypeUint32:
		o := make([]uint32, n)
		for i := range o {
			o[i] = le.Uint32(p[4*i:])
		}
		v.Data = o
	case TypeInt32:
		o := make([]int32, n)
		for i := range o {
			o[i] = int32(le.Uint32(p[4*i:]))
		}
		v.Data = o
	case TypeFloat32:
		o := make([]float32, n)
		for i := range o {
			o[i] = math.Float32frombits(le.Uint32(p[4*i:]))
		}
		v.Data = o
	case TypeUint64:
		o := make([]uint64, n)
		for i := range o {
			o[i] = le.Uint64(p[8*i:])
		}
		v.Data = o
	case TypeInt64:
		o := make([]int64, n)
		for i := range o {
			o[i] = int64(le.Uint64(p[8*i:]))
		}
		v.Data = o
	case TypeFloat64:
		o := make([]float64, n)
		for i := range o {
			o[i] = math.Float64frombits(le.Uint64(p[8*i:]))
		}
		v.Data = o
	}
	return v
}
