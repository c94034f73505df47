package prune

import (
	"context"
	"math"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/physarium/physarium-gguf/errata"
	"github.com/physarium/physarium-gguf/gguf"
	"github.com/physarium/physarium-gguf/imatrix"
	"github.com/physarium/physarium-gguf/kernel"
	"github.com/physarium/physarium-gguf/method"
	"github.com/physarium/physarium-gguf/quantize"
)

// writeImatrix writes a GGUF importance matrix for the given tensors of a
// model: sums = (column index % 7 + 1)^2 * count, so a_i = i%7+1, except
// entries listed in length, which get that many columns instead.
func writeImatrix(t *testing.T, path string, f *gguf.File, skip map[string]bool, length map[string]int) {
	t.Helper()
	m := &imatrix.Matrix{Datasets: []string{"calib.txt"}, ChunkCount: 5, ChunkSize: 128, Entries: map[string]*imatrix.Entry{}}
	for _, ti := range f.Tensors {
		if !regexp.MustCompile(errata.DefaultTargetPattern).MatchString(ti.Name) || skip[ti.Name] {
			continue
		}
		n := int(ti.Shape[0])
		if l, ok := length[ti.Name]; ok {
			n = l
		}
		sums := make([]float32, n)
		for i := range sums {
			a := float32(i%7 + 1)
			sums[i] = a * a * 10
		}
		m.Entries[ti.Name] = &imatrix.Entry{Name: ti.Name, Sums: sums, Counts: []float64{10}}
	}
	if err := m.WriteGGUF(path, gguf.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func sparsityParams(s float64) *kernel.Params {
	p := kernel.DefaultParams()
	p.Mode, p.Sparsity = kernel.Sparsity, s
	return &p
}

// decodeTensor returns the values of a tensor of a file.
func decodeTensor(t *testing.T, f *gguf.File, name string) []float32 {
	t.Helper()
	ti, ok := f.Tensor(name)
	if !ok {
		t.Fatalf("no tensor %s", name)
	}
	raw := make([]byte, ti.Bytes())
	if _, err := f.ReadAt(raw, f.DataOffset+int64(ti.Offset)); err != nil {
		t.Fatal(err)
	}
	v := make([]float32, ti.Elements())
	if err := quantize.Decode(ti.Type, v, raw); err != nil {
		t.Fatal(err)
	}
	return v
}

func TestV2MethodsOnStories(t *testing.T) {
	in := filepath.Join(sharedModels, "stories260K.gguf")
	src, err := gguf.Open(in)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dir := t.TempDir()
	imat := filepath.Join(dir, "im.gguf")
	writeImatrix(t, imat, src, nil, nil)
	ctx := context.Background()

	for _, c := range []struct {
		method  string
		rank    method.Rank
		version int
		perRow  bool
	}{
		{method.Magnitude, "", 0, false},
		{method.Wanda, "", 0, true},
		{method.ActivationFlow, method.RankRowFlow, 2, true},
		{method.ActivationFlow, method.RankRowFlowMould, 2, true},
		{method.ActivationFlow, method.RankRowMould, 2, true},
		{method.ActivationFlow, method.RankTile, 2, false},
		{method.ActivationFlow, method.RankFlowShare, 2, false},
		{method.ActivationFlow, "", 2, method.DefaultRank != method.RankFlowShare}, // the default
	} {
		t.Run(c.method+"-"+string(c.rank), func(t *testing.T) {
			out := filepath.Join(dir, c.method+string(c.rank)+".gguf")
			opts := Options{Params: sparsityParams(0.4), Method: c.method, Rank: c.rank, Threads: 2}
			if mustMethod(c.method).NeedsImatrix() {
				opts.Imatrix = imat
			}
			r, err := File(ctx, in, out, opts)
			if err != nil {
				t.Fatal(err)
			}
			if r.Version != c.version || r.Method != c.method {
				t.Errorf("version %d method %s", r.Version, r.Method)
			}
			if mustMethod(c.method).NeedsImatrix() != (r.Imatrix != "") || mustMethod(c.method).NeedsImatrix() && !strings.HasPrefix(r.Imatrix, "im.gguf format=gguf datasets=calib.txt chunks=5 chunk_size=128") {
				t.Errorf("imatrix %q", r.Imatrix)
			}
			if c.method == method.ActivationFlow && !strings.Contains(r.Importance, "stability not computed") {
				t.Errorf("importance %q", r.Importance)
			}
			if !strings.Contains(r.Errata, r.Importance) {
				t.Errorf("errata does not state the importance: %s", r.Errata)
			}
			checkOutput(t, in, out, r)
			fo, err := gguf.Open(out)
			if err != nil {
				t.Fatal(err)
			}
			defer fo.Close()
			kv, _ := fo.KV("physarium.version")
			if kv.Value.Data.(uint32) != uint32(c.version) {
				t.Errorf("physarium.version %v", kv.Value.Data)
			}
			// Sparsity: per output row for the row ranks, per tensor for
			// magnitude, per tile for the tile rank; always round(s*n) zeros.
			for _, tr := range r.Tensors {
				v := decodeTensor(t, fo, tr.Name)
				before := decodeTensor(t, src, tr.Name)
				row := int(tr.Shape[0])
				zeros := func(x []float32) int {
					z := 0
					for _, w := range x {
						if w == 0 {
							z++
						}
					}
					return z
				}
				if z := zeros(v); c.method != method.ActivationFlow || c.rank != method.RankTile {
					if z != int(math.Round(0.4*float64(len(v)))) {
						t.Fatalf("%s: %d zeros of %d, want round(0.4*n)", tr.Name, z, len(v))
					}
				}
				switch {
				case c.perRow:
					for o := 0; o*row < len(v); o++ {
						want := errata.RowQuota(o%int(tr.Shape[1]), row, 0.4)
						if want != 25 && want != 26 && row == 64 {
							t.Fatalf("quota %d", want)
						}
						if z := zeros(v[o*row : (o+1)*row]); z != max(want, zeros(before[o*row:(o+1)*row])) {
							t.Fatalf("%s row %d: %d zeros, want %d", tr.Name, o, z, want)
						}
					}
				case c.method == method.ActivationFlow && (c.rank == method.RankFlowShare || c.rank == "" && method.DefaultRank == method.RankFlowShare):
					// Per 256-row band: BandQuota zeros, and every kill's
					// share F/rowsum(F) (a_i = i%7+1 in this imatrix) is at
					// most every survivor's.
					rows := len(v) / row
					for o0 := 0; o0 < rows; o0 += errata.TileSize {
						n := min(errata.TileSize, rows-o0)
						bv, bb := v[o0*row:(o0+n)*row], before[o0*row:(o0+n)*row]
						if z := zeros(bv); z != errata.BandQuota(o0, n, row, 0.4) {
							t.Fatalf("%s band at row %d: %d zeros, want %d", tr.Name, o0, z, errata.BandQuota(o0, n, row, 0.4))
						}
						maxKilled, minKept := float32(-1), float32(math.Inf(1))
						for r := 0; r < n; r++ {
							var rs float64
							for i, w := range bb[r*row : (r+1)*row] {
								rs += float64(float32(math.Abs(float64(w))) * float32(i%7+1))
							}
							kept := 0
							for i, w := range bb[r*row : (r+1)*row] {
								sh := float32(float64(float32(math.Abs(float64(w)))*float32(i%7+1)) / rs)
								switch {
								case w == 0:
								case bv[r*row+i] == 0:
									maxKilled = max(maxKilled, sh)
								default:
									minKept = min(minKept, sh)
									kept++
								}
							}
							if kept == 0 {
								t.Fatalf("%s row %d lost every weight", tr.Name, o0+r)
							}
						}
						if maxKilled > minKept {
							t.Fatalf("%s band at row %d: killed share %g > kept share %g", tr.Name, o0, maxKilled, minKept)
						}
					}
				case c.method == method.Magnitude:
					if z := zeros(v); z != int(math.Round(0.4*float64(len(v)))) {
						t.Fatalf("%s: %d zeros of %d", tr.Name, z, len(v))
					}
					// Every survivor is at least as large as every kill.
					minKept, maxKilled := math.Inf(1), 0.0
					for i := range v {
						a := math.Abs(float64(before[i]))
						if v[i] == 0 && before[i] != 0 {
							maxKilled = max(maxKilled, a)
						} else if v[i] != 0 {
							minKept = min(minKept, a)
						}
					}
					if maxKilled > minKept {
						t.Fatalf("%s: killed |w| up to %g but kept %g", tr.Name, maxKilled, minKept)
					}
				}
			}
		})
	}
}

func TestV2ImatrixErrors(t *testing.T) {
	in := filepath.Join(sharedModels, "stories260K.gguf")
	src, err := gguf.Open(in)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dir := t.TempDir()
	ctx := context.Background()
	missing := filepath.Join(dir, "missing.gguf")
	writeImatrix(t, missing, src, map[string]bool{"blk.2.ffn_down.weight": true}, nil)
	if _, err := File(ctx, in, "", Options{DryRun: true, Imatrix: missing}); err == nil || !strings.Contains(err.Error(), "blk.2.ffn_down.weight") || !strings.Contains(err.Error(), "--imatrix-missing v1") {
		t.Errorf("missing entry: %v", err)
	}
	r, err := File(ctx, in, "", Options{DryRun: true, Imatrix: missing, ImatrixMissingV1: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.ImatrixMissing) != 1 || r.ImatrixMissing[0] != "blk.2.ffn_down.weight" || !strings.Contains(r.Imatrix, "missing(v1 food |w|)=blk.2.ffn_down.weight") {
		t.Errorf("fallback: %q %q", r.ImatrixMissing, r.Imatrix)
	}
	if r.Version != 2 || r.Method != "activation-flow" || r.Mode != "natural" {
		t.Errorf("natural v2: version %d method %s mode %s", r.Version, r.Method, r.Mode)
	}
	wrong := filepath.Join(dir, "wrong.gguf")
	writeImatrix(t, wrong, src, nil, map[string]int{"blk.1.attn_k.weight": 31})
	if _, err := File(ctx, in, "", Options{DryRun: true, Imatrix: wrong, ImatrixMissingV1: true}); err == nil || !strings.Contains(err.Error(), "blk.1.attn_k.weight") || !strings.Contains(err.Error(), "31 values") {
		t.Errorf("wrong length: %v", err)
	}
	for _, o := range []Options{
		{DryRun: true, Method: method.Wanda, Params: sparsityParams(0.3)},               // no imatrix
		{DryRun: true, Method: method.Wanda, Imatrix: missing, ImatrixMissingV1: true},  // natural mode
		{DryRun: true, Method: method.Magnitude},                                        // natural mode
		{DryRun: true, Method: method.MagnitudeFlow, Imatrix: missing},                  // imatrix unused
		{DryRun: true, Method: "bogus"},                                                 // unknown
		{DryRun: true, Imatrix: filepath.Join(dir, "nonexistent.gguf")},                 // no file
		{DryRun: true, Imatrix: in},                                                     // a model, not an imatrix
		{DryRun: true, Imatrix: missing, Rank: "sideways", Params: sparsityParams(0.3)}, // unknown rank
	} {
		if _, err := File(ctx, in, "", o); err == nil || !strings.HasPrefix(err.Error(), "prune: ") {
			t.Errorf("%+v: error %v", o, err)
		}
	}
}

// mustMethod returns the registered method of a name, nil if none.
func mustMethod(name string) method.Method {
	m, _ := method.Lookup(name)
	return m
}
