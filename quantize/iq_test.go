package quantize

import (
	"encoding/binary"
	"flag"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/physarium/physarium-gguf/gguf"
)

// iqGridTypes are the IQ grid types.
var iqGridTypes = []gguf.Type{
	gguf.TypeIQ2_XXS, gguf.TypeIQ2_XS, gguf.TypeIQ2_S, gguf.TypeIQ3_XXS,
	gguf.TypeIQ3_S, gguf.TypeIQ1_S, gguf.TypeIQ1_M,
}

// iqAllTypes are every type the iq*.go files register.
var iqAllTypes = append([]gguf.Type{gguf.TypeIQ4_NL, gguf.TypeIQ4_XS}, iqGridTypes...)

func TestParityIQ4_NL(t *testing.T) { checkParity(t, gguf.TypeIQ4_NL) }
func TestParityIQ4_XS(t *testing.T) { checkParity(t, gguf.TypeIQ4_XS) }

// The grid types go through checkParity too: ggml encodes IQ3_XXS, IQ3_S,
// IQ2_S and IQ1_M without an importance matrix, and those blocks are decoded
// by both sides; every type decodes 4096 random blocks.
func TestParityIQ2_XXS(t *testing.T) { checkParity(t, gguf.TypeIQ2_XXS, paritySeeds(1)) }
func TestParityIQ2_XS(t *testing.T)  { checkParity(t, gguf.TypeIQ2_XS, paritySeeds(1)) }
func TestParityIQ2_S(t *testing.T)   { checkParity(t, gguf.TypeIQ2_S, iqSlowRef()...) }
func TestParityIQ3_XXS(t *testing.T) { checkParity(t, gguf.TypeIQ3_XXS, paritySeeds(1)) }
func TestParityIQ3_S(t *testing.T)   { checkParity(t, gguf.TypeIQ3_S, paritySeeds(1)) }
func TestParityIQ1_S(t *testing.T)   { checkParity(t, gguf.TypeIQ1_S, paritySeeds(1)) }
func TestParityIQ1_M(t *testing.T)   { checkParity(t, gguf.TypeIQ1_M, iqSlowRef()...) }

// iqSlowFlag turns on the ggml-encoded rows for IQ2_S and IQ1_M. ggml's
// one-time grid set-up for those two takes 10-30 s on a busy machine, and
// their decoders are covered bit for bit by random and every-byte blocks
// without it, so by default they decode only random blocks.
var iqSlowFlag = flag.Bool("iqslow", false, "also decode ggml-encoded IQ2_S and IQ1_M rows (slow ggml set-up)")

func iqSlowRef() []parityOption {
	if !*iqSlowFlag {
		return []parityOption{parityOnly()}
	}
	return []parityOption{paritySeeds(1)}
}

// TestIQDecodeEveryByte decodes, for every IQ type, blocks in which each byte
// position in turn takes each of its 256 values (the rest random), and
// compares every bit with ggml's to_float. This visits every grid index,
// sign pattern and sub-block scale, and every fp16 scale high byte (Inf,
// NaN, subnormal scales included).
func TestIQDecodeEveryByte(t *testing.T) { withReferences(t, checkIQDecodeEveryByte) }

func checkIQDecodeEveryByte(t *testing.T, ref *reference) {
	for _, typ := range iqAllTypes {
		t.Run(typ.String(), func(t *testing.T) {
			ti, _ := typ.Info()
			bb := ti.BlockBytes
			r := rand.New(rand.NewPCG(uint64(typ), 7))
			src := make([]byte, bb*256*bb)
			for i := range src {
				src[i] = byte(r.Uint32())
			}
			for p := 0; p < bb; p++ {
				for v := 0; v < 256; v++ {
					src[(p*256+v)*bb+p] = byte(v)
				}
			}
			compareDecode(t, ref, typ, ti, src, nil)
		})
	}
}

// TestIQDecodeSpecialScales decodes blocks whose fp16 scale is each special
// value (±0, ±Inf, quiet and signalling NaNs, subnormals, the largest
// finite) with random payloads, bit for bit against ggml.
func TestIQDecodeSpecialScales(t *testing.T) { withReferences(t, checkIQDecodeSpecialScales) }

func checkIQDecodeSpecialScales(t *testing.T, ref *reference) {
	specials := []uint16{0x0000, 0x8000, 0x7C00, 0xFC00, 0x7E00, 0xFE00, 0x7C01, 0x7D55, 0xFDFF,
		0x7FFF, 0x0001, 0x8001, 0x03FF, 0x0400, 0x7BFF, 0xFBFF, 0x3C00}
	for _, typ := range iqAllTypes {
		t.Run(typ.String(), func(t *testing.T) {
			ti, _ := typ.Info()
			bb := ti.BlockBytes
			r := rand.New(rand.NewPCG(uint64(typ), 11))
			src := make([]byte, bb*len(specials)*8)
			for i := range src {
				src[i] = byte(r.Uint32())
			}
			for i := 0; i < len(src)/bb; i++ {
				b := src[i*bb : (i+1)*bb]
				h := specials[i%len(specials)]
				if typ == gguf.TypeIQ1_M {
					// The scale lives in the top nibbles of the last four uint16s.
					for k := 0; k < 4; k++ {
						w := binary.LittleEndian.Uint16(b[48+2*k:])
						w = w&0x0fff | (h>>(4*k)&0xf)<<12
						binary.LittleEndian.PutUint16(b[48+2*k:], w)
					}
				} else {
					binary.LittleEndian.PutUint16(b, h)
				}
			}
			compareDecode(t, ref, typ, ti, src, nil)
		})
	}
}

// TestIQTablesAgainstGGML checks the generated grids the other way round
// from the generator: a block per grid entry, sign bits and scales random,
// decoded by both sides.
func TestIQTablesAgainstGGML(t *testing.T) { withReferences(t, checkIQTablesAgainstGGML) }

func checkIQTablesAgainstGGML(t *testing.T, ref *reference) {
	type placer struct {
		typ     gguf.Type
		entries int
		place   func(b []byte, idx int)
	}
	ps := []placer{
		{gguf.TypeIQ2_XXS, len(iq2xxsGrid), func(b []byte, i int) { b[2+8*(i%8)+i%4] = byte(i) }},
		{gguf.TypeIQ2_XS, len(iq2xsGrid), func(b []byte, i int) {
			o := 2 + 2*(i%32)
			binary.LittleEndian.PutUint16(b[o:], binary.LittleEndian.Uint16(b[o:])&^511|uint16(i))
		}},
		{gguf.TypeIQ2_S, len(iq2sGrid), func(b []byte, i int) {
			g := i % 32 // group: qs[g], qh[g/4] bits 2*(g%4)..
			b[2+g] = byte(i)
			s := 2 * uint(g%4)
			b[66+g/4] = b[66+g/4]&^(3<<s) | byte(i>>8)<<s
		}},
		{gguf.TypeIQ3_XXS, len(iq3xxsGrid), func(b []byte, i int) { b[2+i%64] = byte(i) }},
		{gguf.TypeIQ3_S, len(iq3sGrid), func(b []byte, i int) {
			k := i % 64 // qs[k]; its bit 8 is qh[k/8] bit k%8
			b[2+k] = byte(i)
			b[66+k/8] = b[66+k/8]&^(1<<(k%8)) | byte(i>>8)<<(k%8)
		}},
		{gguf.TypeIQ1_S, len(iq1sGrid), func(b []byte, i int) {
			g := i % 32
			b[2+g] = byte(i)
			o := 34 + 2*(g/4)
			s := 3 * uint(g%4)
			w := binary.LittleEndian.Uint16(b[o:])
			binary.LittleEndian.PutUint16(b[o:], w&^(7<<s)|uint16(i>>8)<<s)
		}},
		{gguf.TypeIQ1_M, len(iq1sGrid), func(b []byte, i int) {
			g := i % 32
			b[g] = byte(i)
			s := 4 * uint(g%2)
			b[32+g/2] = b[32+g/2]&^(7<<s) | byte(i>>8)<<s
		}},
	}
	for _, p := range ps {
		t.Run(p.typ.String(), func(t *testing.T) {
			ti, _ := p.typ.Info()
			bb := ti.BlockBytes
			r := rand.New(rand.NewPCG(uint64(p.typ), 3))
			src := make([]byte, p.entries*bb)
			for i := 0; i < p.entries; i++ {
				b := src[i*bb : (i+1)*bb]
				for k := range b {
					b[k] = byte(r.Uint32())
				}
				if p.typ == gguf.TypeIQ1_M {
					b[55] = b[55]&0x0f | 0x30 // scale 0x3?.. finite
				} else {
					binary.LittleEndian.PutUint16(b, 0x3C00)
				}
				p.place(b, i)
			}
			compareDecode(t, ref, p.typ, ti, src, nil)
		})
	}
}

// TestIQKsigns checks the closed form of the sign table: eight sign bits
// with an even number of ones whose low seven are the index.
func TestIQKsigns(t *testing.T) {
	seen := map[uint8]bool{}
	for i, s := range ksignsIQ2XS {
		if int(s&127) != i {
			t.Fatalf("ksigns[%d] = %#x: low bits differ", i, s)
		}
		if n := popcount8(s); n%2 != 0 {
			t.Fatalf("ksigns[%d] = %#x has %d ones", i, s, n)
		}
		seen[s] = true
	}
	if len(seen) != 128 {
		t.Fatalf("%d distinct sign patterns, want 128", len(seen))
	}
}

func popcount8(b uint8) int {
	n := 0
	for ; b != 0; b &= b - 1 {
		n++
	}
	return n
}

// TestIQ4ZeroNone documents ZeroNone for IQ4_NL and IQ4_XS: a killed (0.0)
// input always gets the code of value +1, the one nearest zero, so it reads
// back as the scale of its 32 values and not as 0 (unless that scale is 0).
// It logs how far from zero killed weights land, relative to the largest
// magnitude in their group.
func TestIQ4ZeroNone(t *testing.T) {
	for _, typ := range []gguf.Type{gguf.TypeIQ4_NL, gguf.TypeIQ4_XS} {
		t.Run(typ.String(), func(t *testing.T) {
			if z, ok := Zero(typ); !ok || z != ZeroNone {
				t.Fatalf("Zero(%s) = %v, %v; want ZeroNone, true", typ, z, ok)
			}
			ti, _ := typ.Info()
			const n = 256 * 256
			r := rand.New(rand.NewPCG(uint64(typ), 99))
			src := make([]float32, n)
			for i := range src {
				if r.IntN(2) == 0 {
					src[i] = float32(r.NormFloat64())
				}
			}
			clear(src[256:512]) // whole groups killed: these must read back 0
			enc := make([]byte, n/ti.BlockSize*ti.BlockBytes)
			if err := Encode(typ, enc, src); err != nil {
				t.Fatal(err)
			}
			enc2 := make([]byte, len(enc))
			if err := EncodeKeepZeros(typ, enc2, src); err != nil {
				t.Fatal(err)
			}
			if string(enc2) != string(enc) {
				t.Fatalf("EncodeKeepZeros differs from Encode for a ZeroNone type")
			}
			dec := make([]float32, n)
			if err := Decode(typ, dec, enc); err != nil {
				t.Fatal(err)
			}
			var killed, nonzero int
			var sumRel, maxRel float64
			for g := 0; g < n; g += 32 {
				var gmax float64
				for _, v := range src[g : g+32] {
					gmax = math.Max(gmax, math.Abs(float64(v)))
				}
				unit := groupUnit(typ, enc, g) // the decoded value of code +1
				for i := g; i < g+32; i++ {
					if src[i] != 0 {
						continue
					}
					killed++
					if code := codeAt(typ, enc, i); kvaluesIQ4NL[code] != 1 {
						t.Fatalf("killed weight %d got code %d (value %d), want the code of value 1", i, code, kvaluesIQ4NL[code])
					}
					if math.Float32bits(dec[i]) != math.Float32bits(unit) {
						t.Fatalf("killed weight %d decodes to %v, want the group unit %v", i, dec[i], unit)
					}
					if gmax == 0 {
						if dec[i] != 0 {
							t.Fatalf("weight %d of an all-zero group decodes to %v", i, dec[i])
						}
						continue
					}
					if dec[i] == 0 {
						continue
					}
					nonzero++
					rel := math.Abs(float64(dec[i])) / gmax
					sumRel += rel
					maxRel = math.Max(maxRel, rel)
				}
			}
			if nonzero == 0 {
				t.Fatal("no killed weight in a live group decoded nonzero: ZeroNone not exercised")
			}
			t.Logf("%s: %d killed weights, %d read back nonzero; |decoded|/max|group|: mean %.5f, max %.5f (1/127 = %.5f)",
				typ, killed, nonzero, sumRel/float64(nonzero), maxRel, 1.0/127)
		})
	}
}

// codeAt returns the 4-bit code of value i of an IQ4_NL or IQ4_XS encoding.
func codeAt(typ gguf.Type, enc []byte, i int) uint8 {
	var q []byte
	switch typ {
	case gguf.TypeIQ4_NL:
		q = enc[i/32*18+2:]
	default:
		q = enc[i/256*136+8+(i%256)/32*16:]
	}
	j := i % 32
	if j < 16 {
		return q[j] & 0xf
	}
	return q[j-16] >> 4
}

// groupUnit returns what code +1 decodes to in the group of 32 starting at g.
func groupUnit(typ gguf.Type, enc []byte, g int) float32 {
	if typ == gguf.TypeIQ4_NL {
		return halfToFloat(binary.LittleEndian.Uint16(enc[g/32*18:]))
	}
	b := enc[g/256*136:]
	ib := (g % 256) / 32
	ls := int(b[4+ib/2]>>(4*(ib%2))&0xf) | int(binary.LittleEndian.Uint16(b[2:])>>(2*ib)&3)<<4
	return halfToFloat(binary.LittleEndian.Uint16(b)) * float32(ls-32)
}

// TestIQNoAllocs: the codecs work in place on whole blocks.
func TestIQNoAllocs(t *testing.T) {
	for _, typ := range iqAllTypes {
		ti, _ := typ.Info()
		src := make([]byte, 4*ti.BlockBytes)
		dst := make([]float32, 4*ti.BlockSize)
		if a := testing.AllocsPerRun(20, func() { _ = Decode(typ, dst, src) }); a != 0 {
			t.Errorf("Decode %s: %v allocations per call", typ, a)
		}
		if CanEncode(typ) {
			var w []float32 // IQ4: Encode
			if CanEncodeWeighted(typ) {
				w = make([]float32, ti.BlockSize)
			}
			_ = EncodeWeighted(typ, src, dst, w) // the first call builds the search tables
			if a := testing.AllocsPerRun(20, func() { _ = EncodeWeighted(typ, src, dst, w) }); a != 0 {
				t.Errorf("Encode %s: %v allocations per call", typ, a)
			}
		}
	}
}

// TestIQFP16 checks the fp16 helpers: every half round-trips, and the
// float-to-half rounding is to nearest even at the midpoints.
func TestIQFP16(t *testing.T) {
	for h := 0; h < 1<<16; h++ {
		f := halfToFloat(uint16(h))
		back := floatToHalf(f)
		isNaN := h&0x7c00 == 0x7c00 && h&0x3ff != 0
		if isNaN {
			if back != uint16(h)&0x8000|0x7E00 {
				t.Fatalf("NaN %#04x -> %v -> %#04x", h, f, back)
			}
			continue
		}
		if back != uint16(h) {
			t.Fatalf("%#04x -> %v -> %#04x", h, f, back)
		}
	}
	// 1 + 2^-11 is halfway between 1 and the next half: ties to even (1).
	if h := floatToHalf(1 + 0x1p-11); h != 0x3C00 {
		t.Errorf("tie 1+2^-11 -> %#04x, want 0x3c00", h)
	}
	if h := floatToHalf(1 + 3*0x1p-11); h != 0x3C02 {
		t.Errorf("tie 1+3*2^-11 -> %#04x, want 0x3c02", h)
	}
	if h := floatToHalf(65520); h != 0x7C00 {
		t.Errorf("65520 -> %#04x, want Inf", h)
	}
}

// TestIQ4EncodeNonFinite: NaN, ±Inf and extreme inputs encode as ggml
// encodes them (byte for byte), without panicking.
func TestIQ4EncodeNonFinite(t *testing.T) { withReferences(t, checkIQ4EncodeNonFinite) }

func checkIQ4EncodeNonFinite(t *testing.T, ref *reference) {
	specials := []float32{float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1)),
		math.MaxFloat32, -math.MaxFloat32, math.SmallestNonzeroFloat32, 1e-16, -1e-16, 0, float32(math.Copysign(0, -1))}
	for _, typ := range []gguf.Type{gguf.TypeIQ4_NL, gguf.TypeIQ4_XS} {
		t.Run(typ.String(), func(t *testing.T) {
			ti, _ := typ.Info()
			r := rand.New(rand.NewPCG(uint64(typ), 5))
			nrows, ncols := 64, 512
			if ref.golden() {
				nrows = 16
			}
			src := make([]float32, nrows*ncols)
			for i := range src {
				src[i] = float32(r.NormFloat64())
				if r.IntN(64) == 0 {
					src[i] = specials[r.IntN(len(specials))]
				}
			}
			// A few rows made only of one special value each.
			for k, v := range specials {
				row := src[k*ncols : (k+1)*ncols]
				for i := range row {
					row[i] = v
				}
			}
			want, err := ref.encoded(t, typ, src, nrows, ncols)
			if err != nil {
				t.Fatal(err)
			}
			got := make([]byte, len(want))
			if err := Encode(typ, got, src); err != nil {
				t.Fatal(err)
			}
			if b := firstBlockDiff(got, want, ti.BlockBytes); b >= 0 {
				lo, hi := b*ti.BlockBytes, (b+1)*ti.BlockBytes
				t.Fatalf("block %d differs:\n  ours %x\n  ggml %x\n  input %s", b, got[lo:hi], want[lo:hi],
					fmtValues(src[b*ti.BlockSize:(b+1)*ti.BlockSize]))
			}
		})
	}
}

// bestIndexInt8Ref is ggml's best_index_int8 transliterated: the reference
// for bestIndexIQ4.
func bestIndexInt8Ref(val *[16]int8, x float32) int {
	if x <= float32(val[0]) {
		return 0
	}
	if x >= float32(val[15]) {
		return 15
	}
	ml, mu := 0, 15
	for mu-ml > 1 {
		mav := (ml + mu) / 2
		if x < float32(val[mav]) {
			mu = mav
		} else {
			ml = mav
		}
	}
	if x-float32(val[mu-1]) < float32(val[mu])-x {
		return mu - 1
	}
	return mu
}

// TestIQBestIndex compares bestIndexIQ4 with the transliterated bisection on
// every table value, every midpoint and their float neighbours, special
// values and random floats.
func TestIQBestIndex(t *testing.T) {
	xs := []float32{float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1)), 0, float32(math.Copysign(0, -1)),
		math.MaxFloat32, -math.MaxFloat32, math.SmallestNonzeroFloat32}
	for i, v := range kvaluesIQ4NL {
		xs = append(xs, float32(v))
		if i > 0 {
			xs = append(xs, (float32(v)+float32(kvaluesIQ4NL[i-1]))/2)
		}
	}
	for _, x := range xs[:len(xs):len(xs)] {
		xs = append(xs, math.Nextafter32(x, float32(math.Inf(1))), math.Nextafter32(x, float32(math.Inf(-1))))
	}
	r := rand.New(rand.NewPCG(1, 1))
	for range 1 << 20 {
		xs = append(xs, float32(r.NormFloat64()*100), math.Float32frombits(r.Uint32()))
	}
	for _, x := range xs {
		if got, want := bestIndexIQ4(x), bestIndexInt8Ref(&kvaluesIQ4NL, x); got != want {
			t.Fatalf("bestIndexIQ4(%v) = %d, ggml's bisection gives %d", x, got, want)
		}
	}
}

// TestIQ4FromFloatRef compares Encode with ggml's from_float_ref
// (quantize_row_iq4_*_ref). For IQ4_XS that is the same code as
// ggml_quantize_chunk and must match byte for byte; ggml's IQ4_NL row
// reference searches no trial scales, unlike ggml_quantize_chunk (which
// Encode follows), so for IQ4_NL the test only logs how many blocks differ.
func TestIQ4FromFloatRef(t *testing.T) { withReferences(t, checkIQ4FromFloatRef) }

func checkIQ4FromFloatRef(t *testing.T, r *reference) {
	for _, typ := range []gguf.Type{gguf.TypeIQ4_NL, gguf.TypeIQ4_XS} {
		ti, _ := typ.Info()
		nvalues := 256 * 64
		if r.golden() {
			nvalues = 256 * 16
		}
		src := genRows(genCases[0], 1, nvalues, ti.BlockSize, 1)
		ref, err := r.encodedRef(t, typ, src)
		if err != nil {
			t.Fatal(err)
		}
		got := make([]byte, len(ref))
		if err := Encode(typ, got, src); err != nil {
			t.Fatal(err)
		}
		diff := 0
		for b := 0; b < len(ref); b += ti.BlockBytes {
			if string(got[b:b+ti.BlockBytes]) != string(ref[b:b+ti.BlockBytes]) {
				diff++
			}
		}
		if typ == gguf.TypeIQ4_XS && diff != 0 {
			t.Errorf("%s: %d blocks differ from quantize_row_iq4_xs_ref", typ, diff)
		}
		t.Logf("%s: %d of %d blocks differ from ggml's from_float_ref", typ, diff, len(ref)/ti.BlockBytes)
	}
}
