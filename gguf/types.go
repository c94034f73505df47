package gguf

import "fmt"

// Type is a ggml tensor type id as stored in a GGUF tensor info.
type Type uint32

// The ggml type ids. Ids 4, 5, 31-33 and 36-38 were removed from ggml and are
// rejected as unknown.
const (
	TypeF32     Type = 0
	TypeF16     Type = 1
	TypeQ4_0    Type = 2
	TypeQ4_1    Type = 3
	TypeQ5_0    Type = 6
	TypeQ5_1    Type = 7
	TypeQ8_0    Type = 8
	TypeQ8_1    Type = 9
	TypeQ2_K    Type = 10
	TypeQ3_K    Type = 11
	TypeQ4_K    Type = 12
	TypeQ5_K    Type = 13
	TypeQ6_K    Type = 14
	TypeQ8_K    Type = 15
	TypeIQ2_XXS Type = 16
	TypeIQ2_XS  Type = 17
	TypeIQ3_XXS Type = 18
	TypeIQ1_S   Type = 19
	TypeIQ4_NL  Type = 20
	TypeIQ3_S   Type = 21
	TypeIQ2_S   Type = 22
	TypeIQ4_XS  Type = 23
	TypeI8      Type = 24
	TypeI16     Type = 25
	TypeI32     Type = 26
	TypeI64     Type = 27
	TypeF64     Type = 28
	TypeIQ1_M   Type = 29
	TypeBF16    Type = 30
	TypeTQ1_0   Type = 34
	TypeTQ2_0   Type = 35
	TypeMXFP4   Type = 39
	TypeNVFP4   Type = 40
	TypeQ1_0    Type = 41
	TypeQ2_0    Type = 42
)

// TypeInfo describes the storage of one ggml type: a tensor row of ne[0]
// elements is ne[0]/BlockSize blocks of BlockBytes bytes each.
type TypeInfo struct {
	Name       string // upper-case name as llama.cpp prints it, e.g. "Q4_K"
	BlockSize  int    // elements per block
	BlockBytes int    // bytes per block
}

// typeInfos is indexed by type id; a zero BlockSize marks an id that ggml
// removed or never assigned. The figures were checked against
// ggml_get_type_traits of the ggml the tests run.
var typeInfos = [...]TypeInfo{
	TypeF32:     {"F32", 1, 4},
	TypeF16:     {"F16", 1, 2},
	TypeQ4_0:    {"Q4_0", 32, 18},
	TypeQ4_1:    {"Q4_1", 32, 20},
	TypeQ5_0:    {"Q5_0", 32, 22},
	TypeQ5_1:    {"Q5_1", 32, 24},
	TypeQ8_0:    {"Q8_0", 32, 34},
	TypeQ8_1:    {"Q8_1", 32, 36},
	TypeQ2_K:    {"Q2_K", 256, 84},
	TypeQ3_K:    {"Q3_K", 256, 110},
	TypeQ4_K:    {"Q4_K", 256, 144},
	TypeQ5_K:    {"Q5_K", 256, 176},
	TypeQ6_K:    {"Q6_K", 256, 210},
	TypeQ8_K:    {"Q8_K", 256, 292},
	TypeIQ2_XXS: {"IQ2_XXS", 256, 66},
	TypeIQ2_XS:  {"IQ2_XS", 256, 74},
	TypeIQ3_XXS: {"IQ3_XXS", 256, 98},
	TypeIQ1_S:   {"IQ1_S", 256, 50},
	TypeIQ4_NL:  {"IQ4_NL", 32, 18},
	TypeIQ3_S:   {"IQ3_S", 256, 110},
	TypeIQ2_S:   {"IQ2_S", 256, 82},
	TypeIQ4_XS:  {"IQ4_XS", 256, 136},
	TypeI8:      {"I8", 1, 1},
	TypeI16:     {"I16", 1, 2},
	TypeI32:     {"I32", 1, 4},
	TypeI64:     {"I64", 1, 8},
	TypeF64:     {"F64", 1, 8},
	TypeIQ1_M:   {"IQ1_M", 256, 56},
	TypeBF16:    {"BF16", 1, 2},
	TypeTQ1_0:   {"TQ1_0", 256, 54},
	TypeTQ2_0:   {"TQ2_0", 256, 66},
	TypeMXFP4:   {"MXFP4", 32, 17},
	TypeNVFP4:   {"NVFP4", 64, 36},
	TypeQ1_0:    {"Q1_0", 128, 18},
	TypeQ2_0:    {"Q2_0", 64, 18},
}

// Info returns the storage description of t and whether t is a known type.
func (t Type) Info() (TypeInfo, bool) {
	if int(t) >= len(typeInfos) || typeInfos[t].BlockSize == 0 {
		return TypeInfo{}, false
	}
	return typeInfos[t], true
}

// Valid reports whether t is a type id that current ggml can store.
func (t Type) Valid() bool {
	_, ok := t.Info()
	return ok
}

// String returns the type's name, or "type(N)" for an unknown id.
func (t Type) String() string {
	if ti, ok := t.Info(); ok {
		return ti.Name
	}
	return fmt.Sprintf("type(%d)", uint32(t))
}

// ParseType returns the type with the given name (case-insensitive).
func ParseType(name string) (Type, bool) {
	for id, ti := range typeInfos {
		if ti.BlockSize != 0 && equalFold(ti.Name, name) {
			return Type(id), true
		}
	}
	return 0, false
}

// Types returns every known type id in ascending order.
func Types() []Type {
	var ts []Type
	for id, ti := range typeInfos {
		if ti.BlockSize != 0 {
			ts = append(ts, Type(id))
		}
	}
	return ts
}

// RowBytes returns the bytes of a row of n elements of type t, and false when
// t is unknown or n is not a whole number of blocks.
func (t Type) RowBytes(n uint64) (uint64, bool) {
	ti, ok := t.Info()
	if !ok || n%uint64(ti.BlockSize) != 0 {
		return 0, false
	}
	return n / uint64(ti.BlockSize) * uint64(ti.BlockBytes), true
}

func equalFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		ca, cb := a[i], b[i]
		if 'a' <= ca && ca <= 'z' {
			ca -= 'a' - 'A'
		}
		if 'a' <= cb && cb <= 'z' {
			cb -= 'a' - 'A'
		}
		if ca != cb {
			return false
		}
	}
	return true
}
