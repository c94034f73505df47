package quantize

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/physarium/physarium-gguf/gguf"
)

func TestParityF32(t *testing.T)  { checkParity(t, gguf.TypeF32) }
func TestParityF16(t *testing.T)  { checkParity(t, gguf.TypeF16) }
func TestParityBF16(t *testing.T) { checkParity(t, gguf.TypeBF16) }

// TestHalfDecodeExhaustive decodes every one of the 65536 F16 and BF16 bit
// patterns (NaNs, infinities, subnormals, both zeros) with ours and ggml's.
func TestHalfDecodeExhaustive(t *testing.T) { withReferences(t, checkHalfDecodeExhaustive) }

func checkHalfDecodeExhaustive(t *testing.T, ref *reference) {
	src := make([]byte, 2*65536)
	for i := range 65536 {
		binary.LittleEndian.PutUint16(src[2*i:], uint16(i))
	}
	for _, typ := range []gguf.Type{gguf.TypeF16, gguf.TypeBF16} {
		ti, _ := typ.Info()
		compareDecode(t, ref, typ, ti, src, nil)
	}
}

// TestHalfEncodeSpecial encodes the float32 values where conversions go
// wrong (every exponent with edge mantissas: ties, the largest values below
// overflow, subnormal boundaries, NaNs with payloads, infinities) plus many
// random bit patterns (fewer in the golden run), and compares with ggml byte
// for byte.
func TestHalfEncodeSpecial(t *testing.T) { withReferences(t, checkHalfEncodeSpecial) }

func checkHalfEncodeSpecial(t *testing.T, ref *reference) {
	var src []float32
	for e := uint32(0); e < 256; e++ {
		for _, m := range []uint32{0, 1, 0x0FFF, 0x1000, 0x1001, 0x1FFF, 0x2000, 0x3FFF, 0x7FFF, 0x8000, 0x8001,
			0xFFFF, 0x10000, 0x400000, 0x400001, 0x7FE000, 0x7FEFFF, 0x7FF000, 0x7FFFFF} {
			b := e<<23 | m
			src = append(src, math.Float32frombits(b), math.Float32frombits(b|0x80000000))
		}
	}
	r := rand.New(rand.NewPCG(1, 2))
	nrandom := 1 << 16
	if ref.golden() {
		nrandom = 1 << 8
	}
	for range nrandom {
		src = append(src, math.Float32frombits(r.Uint32()))
	}
	for _, typ := range []gguf.Type{gguf.TypeF16, gguf.TypeBF16, gguf.TypeF32} {
		ti, _ := typ.Info()
		want, err := ref.encoded(t, typ, src, 1, len(src))
		if err != nil {
			t.Fatal(err)
		}
		got := make([]byte, len(want))
		if err := Encode(typ, got, src); err != nil {
			t.Fatal(err)
		}
		if i := firstBlockDiff(got, want, ti.BlockBytes); i >= 0 {
			t.Fatalf("%s: %g (%08x) encodes to %x, ggml gives %x", typ, src[i], math.Float32bits(src[i]),
				got[i*ti.BlockBytes:(i+1)*ti.BlockBytes], want[i*ti.BlockBytes:(i+1)*ti.BlockBytes])
		}
	}
}

// TestHalfDecodeSIMDMatchesGo decodes every F16 and BF16 bit pattern with the
// SIMD path and the Go path at every start offset and length class (so the
// vector body and the scalar tail both see every pattern) and compares bit
// for bit, with guard values after the destination.
func TestHalfDecodeSIMDMatchesGo(t *testing.T) {
	if SIMD() == "go" {
		t.Skip("no SIMD path on this machine or build")
	}
	src := make([]byte, 2*65536)
	for i := range 65536 {
		binary.LittleEndian.PutUint16(src[2*i:], uint16(i*40503)) // a permutation: neighbours differ
	}
	const guard = 0x7FC0DEAD
	for _, typ := range []gguf.Type{gguf.TypeF16, gguf.TypeBF16} {
		for _, lo := range []int{0, 1, 3, 7} {
			for _, n := range []int{65536 - lo, 1, 7, 8, 9, 15, 17, 1000} {
				if lo+n > 65536 {
					continue
				}
				in := src[2*lo : 2*(lo+n)]
				got := make([]float32, n+4)
				want := make([]float32, n)
				for i := n; i < n+4; i++ {
					got[i] = math.Float32frombits(guard)
				}
				if err := Decode(typ, got[:n], in); err != nil {
					t.Fatal(err)
				}
				if err := pureGo(func() error { return Decode(typ, want, in) }); err != nil {
					t.Fatal(err)
				}
				for i := range want {
					if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
						t.Fatalf("%s offset %d len %d: element %d (%04x): simd %08x, go %08x", typ, lo, n, i,
							binary.LittleEndian.Uint16(in[2*i:]), math.Float32bits(got[i]), math.Float32bits(want[i]))
					}
				}
				for i := n; i < n+4; i++ {
					if math.Float32bits(got[i]) != guard {
						t.Fatalf("%s offset %d len %d: guard %d overwritten", typ, lo, n, i-n)
					}
				}
			}
		}
	}
}

// TestClearKilled checks ClearKilled on both paths against its definition:
// killed elements become +0, the count of kills and of kills of ±0 are
// right, every other byte (and the guard bytes around) is untouched, for
// aligned and unaligned data and lengths around the vector widths.
func TestClearKilled(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for _, typ := range []gguf.Type{gguf.TypeF16, gguf.TypeBF16, gguf.TypeF32} {
		size := 2
		if typ == gguf.TypeF32 {
			size = 4
		}
		for _, n := range []int{1, 7, 8, 9, 15, 16, 17, 31, 33, 1000, 4099} {
			for _, shift := range []int{0, 1, size} {
				data := make([]byte, size*n+shift+8)
				for i := range data {
					data[i] = byte(r.Uint32())
				}
				mask := make([]byte, n)
				var wantKilled, wantZero uint64
				for i := range mask {
					if r.IntN(3) == 0 {
						// a ±0 element: all bytes zero but maybe the sign
						e := data[shift+i*size : shift+(i+1)*size]
						clear(e)
						if r.IntN(2) == 0 {
							e[size-1] = 0x80
						}
					}
					if r.IntN(2) == 0 {
						mask[i] = 1
					}
				}
				want := append([]byte(nil), data...)
				for i, m := range mask {
					if m == 0 {
						continue
					}
					e := want[shift+i*size : shift+(i+1)*size]
					wantKilled++
					zero := true
					for k, b := range e {
						if k == size-1 {
							b &= 0x7F
						}
						zero = zero && b == 0
					}
					if zero {
						wantZero++
					}
					clear(e)
				}
				for _, simd := range []bool{true, false} {
					got := append([]byte(nil), data...)
					was := SetSIMD(simd)
					killed, wasZero, err := ClearKilled(typ, got[shift:shift+size*n], mask)
					SetSIMD(was)
					if err != nil {
						t.Fatal(err)
					}
					if killed != wantKilled || wasZero != wantZero {
						t.Fatalf("%s n=%d shift=%d simd=%v: killed %d, was zero %d; want %d, %d", typ, n, shift, simd, killed, wasZero, wantKilled, wantZero)
					}
					if i := firstBlockDiff(got, want, 1); i >= 0 {
						t.Fatalf("%s n=%d shift=%d simd=%v: byte %d is %02x, want %02x", typ, n, shift, simd, i, got[i], want[i])
					}
				}
			}
		}
	}
	if _, _, err := ClearKilled(gguf.TypeQ8_0, make([]byte, 34), make([]byte, 32)); err == nil {
		t.Fatal("Q8_0: no error")
	}
	if _, _, err := ClearKilled(gguf.TypeF16, make([]byte, 3), make([]byte, 2)); err == nil {
		t.Fatal("length mismatch: no error")
	}
}

func BenchmarkClearKilled(b *testing.B) {
	const n = 1 << 20
	mask := make([]byte, n)
	r := rand.New(rand.NewPCG(5, 6))
	for i := range mask {
		if r.IntN(4) == 0 {
			mask[i] = 1
		}
	}
	for _, typ := range []gguf.Type{gguf.TypeF16, gguf.TypeF32} {
		ti, _ := typ.Info()
		data := make([]byte, n*ti.BlockBytes)
		for _, simd := range []bool{true, false} {
			name := typ.String() + "/go"
			if simd {
				if SIMD() == "go" {
					continue
				}
				name = typ.String() + "/" + SIMD()
			}
			b.Run(name, func(b *testing.B) {
				was := SetSIMD(simd)
				defer SetSIMD(was)
				b.SetBytes(int64(len(data)))
				for b.Loop() {
					ClearKilled(typ, data, mask)
				}
			})
		}
	}
}
