package quantize

import (
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/physarium/physarium-gguf/gguf"
	"github.com/physarium/physarium-gguf/internal/ggmlref"
)

// Benchmarks: one sub-benchmark per implementation, type and direction,
// named <impl>/<type>/<encode|decode> with impl "go" (this package) or
// "ggml" (the shipped library's reference code through ggmlref), on about a
// million values; b.SetBytes counts the float32 side (4 bytes a value), so
// MB/s compare across types.
//
//	go test -run '^$' -bench 'Codecs/.*/Q8_0/' -count 3 ./quantize/
//
// The speed table (million values per second, best of -speedtable.runs):
//
//	go test -run TestSpeedTable -speedtable ./quantize/

var (
	speedTable     = flag.Bool("speedtable", false, "print the markdown speed table of ours vs ggml")
	speedTableRuns = flag.Int("speedtable.runs", 3, "runs per cell of the speed table; the best counts")
	speedTableOnly = flag.String("speedtable.types", "", "comma-separated types for the speed table (default: all)")
	speedTableCPU  = flag.Bool("speedtable.cpu", false, "rate the speed table per CPU-second of the process (getrusage) instead of per wall second, with a column for the encoder with the SIMD paths off")
)

const (
	benchCols = 4096
	benchRows = 256 // benchCols*benchRows = 1M values
)

// benchData returns ~1M Gaussian values and their encoding by ours (or by
// ggml for decode-only types), shared by every sub-benchmark of one type.
func benchData(typ gguf.Type, lib *ggmlref.Lib) (src []float32, blocks []byte, err error) {
	ti, _ := typ.Info()
	r := rand.New(rand.NewPCG(1, uint64(typ)))
	src = make([]float32, benchCols*benchRows)
	for i := range src {
		src[i] = float32(r.NormFloat64() * 0.02)
	}
	blocks = make([]byte, len(src)/ti.BlockSize*ti.BlockBytes)
	switch {
	case CanEncode(typ):
		err = EncodeWeighted(typ, blocks, src, benchWeights(typ))
	case lib != nil:
		err = lib.Quantize(typ, blocks, src, benchRows, benchCols)
	default:
		err = errNoBenchData
	}
	return src, blocks, err
}

// benchWeights is the importance matrix row the IQ grid types are
// benchmarked with (ours and ggml's alike), nil for the other types.
func benchWeights(typ gguf.Type) []float32 {
	if !CanEncodeWeighted(typ) {
		return nil
	}
	r := rand.New(rand.NewPCG(2, uint64(typ)))
	w := make([]float32, benchCols)
	for i := range w {
		w[i] = float32(r.ExpFloat64())
	}
	return w
}

// errNoBenchData: the type can only be decoded and ggml is not at hand to
// encode its benchmark data.
var errNoBenchData = errors.New("no encoder for the benchmark data (set PHYSARIUM_LLAMA)")

// benchLib loads ggml for the ggml/ sub-benchmarks, or returns nil.
func benchLib() *ggmlref.Lib {
	lib, err := ggmlref.Load()
	if err != nil {
		return nil
	}
	return lib
}

// benchCases returns the named benchmark functions for typ, in table order.
func benchCases(typ gguf.Type, lib *ggmlref.Lib) ([]string, []func(b *testing.B), error) {
	src, blocks, err := benchData(typ, lib)
	if err != nil {
		return nil, nil, err
	}
	var names []string
	var fns []func(b *testing.B)
	add := func(name string, f func() error) {
		names = append(names, name)
		fns = append(fns, func(b *testing.B) {
			b.SetBytes(int64(4 * len(src)))
			b.ReportAllocs()
			for b.Loop() {
				if err := f(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	out := make([]float32, len(src))
	enc := make([]byte, len(blocks))
	w := benchWeights(typ)
	if CanEncode(typ) {
		add("go/"+typ.String()+"/encode", func() error { return EncodeWeighted(typ, enc, src, w) })
		if *speedTableCPU && SIMD() != "go" {
			add("gotwin/"+typ.String()+"/encode", func() error {
				defer SetSIMD(SetSIMD(false))
				return EncodeWeighted(typ, enc, src, w)
			})
		}
	}
	if lib != nil && (w != nil || !lib.RequiresImatrix(typ)) && lib.QuantizeImatrix(typ, enc, src, benchRows, benchCols, w) == nil {
		add("ggml/"+typ.String()+"/encode", func() error { return lib.QuantizeImatrix(typ, enc, src, benchRows, benchCols, w) })
	}
	if CanDecode(typ) {
		add("go/"+typ.String()+"/decode", func() error { return Decode(typ, out, blocks) })
	}
	if lib != nil && lib.Dequantize(typ, out, blocks) == nil {
		add("ggml/"+typ.String()+"/decode", func() error { return lib.Dequantize(typ, out, blocks) })
	}
	return names, fns, nil
}

// benchTypes are the types with a registered codec, in id order.
func benchTypes() []gguf.Type {
	var ts []gguf.Type
	for _, t := range gguf.Types() {
		if CanDecode(t) || CanEncode(t) {
			ts = append(ts, t)
		}
	}
	return ts
}

func BenchmarkCodecs(b *testing.B) {
	lib := benchLib()
	for _, typ := range benchTypes() {
		names, fns, err := benchCases(typ, lib)
		if errors.Is(err, errNoBenchData) {
			b.Logf("%s: skipped: %v", typ, err)
			continue
		}
		if err != nil {
			b.Fatalf("%s: %v", typ, err)
		}
		for i, name := range names {
			b.Run(name, fns[i])
		}
	}
}

// TestSpeedTable prints, under -speedtable, a markdown table of million
// values per second for our codecs and ggml's reference code.
func TestSpeedTable(t *testing.T) {
	if !*speedTable {
		t.Skip("run with -speedtable to print the speed table")
	}
	if *speedTableCPU && processCPU() < 0 {
		t.Skip("-speedtable.cpu: no process CPU time on this platform")
	}
	lib := oracle(t)
	only := map[string]bool{}
	for _, s := range strings.Split(*speedTableOnly, ",") {
		if s = strings.TrimSpace(s); s != "" {
			only[strings.ToUpper(s)] = true
		}
	}
	var sb strings.Builder
	if *speedTableCPU {
		sb.WriteString("| type | encode go | encode go, SIMD off | encode ggml | decode go | decode ggml |\n|---|---:|---:|---:|---:|---:|\n")
	} else {
		sb.WriteString("| type | encode go | encode ggml | decode go | decode ggml |\n|---|---:|---:|---:|---:|\n")
	}
	for _, typ := range benchTypes() {
		if len(only) > 0 && !only[typ.String()] {
			continue
		}
		names, fns, err := benchCases(typ, lib)
		if err != nil {
			t.Fatalf("%s: %v", typ, err)
		}
		cell := map[string]string{}
		for i, name := range names {
			best := 0.0
			for range *speedTableRuns {
				var cpu float64 // CPU seconds of the last (measured) round
				r := testing.Benchmark(func(b *testing.B) {
					c0 := processCPU()
					fns[i](b)
					cpu = processCPU() - c0
				})
				if r.N == 0 {
					t.Fatalf("%s failed", name)
				}
				secs := r.T.Seconds()
				if *speedTableCPU {
					secs = cpu
				}
				mvs := float64(r.Bytes) / 4 * float64(r.N) / secs / 1e6
				best = max(best, mvs)
			}
			f := "%.0f"
			if best < 10 {
				f = "%.2f" // the i-quant grid encoders run at a few M values/s
			}
			cell[name[:strings.IndexByte(name, '/')]+"/"+name[strings.LastIndexByte(name, '/')+1:]] = fmt.Sprintf(f, best)
		}
		get := func(k string) string {
			if v, ok := cell[k]; ok {
				return v
			}
			return "-"
		}
		if *speedTableCPU {
			fmt.Fprintf(&sb, "| %s | %s | %s | %s | %s | %s |\n", typ, get("go/encode"), get("gotwin/encode"), get("ggml/encode"), get("go/decode"), get("ggml/decode"))
			continue
		}
		fmt.Fprintf(&sb, "| %s | %s | %s | %s | %s |\n", typ, get("go/encode"), get("ggml/encode"), get("go/decode"), get("ggml/decode"))
	}
	per := "wall second"
	if *speedTableCPU {
		per = "CPU-second of the process"
	}
	fmt.Print("\nM values per ", per, ", best of ", *speedTableRuns, " runs, ~1M Gaussian values:\n\n", sb.String())
}
