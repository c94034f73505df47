//go:build cgo

package calibrate_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/physarium/physarium-gguf/calibrate"
	"github.com/physarium/physarium-gguf/gguf"
	"github.com/physarium/physarium-gguf/imatrix"
	"github.com/physarium/physarium-gguf/llamacpp"
	"github.com/physarium/physarium-gguf/testmodels"
	rt "github.com/physarium/physarium-gguf/testmodels/llamacpp"
)

const (
	stories   = "../../shared/models/stories260K.gguf"
	calibText = "../../shared/models/tinystories_valid_calib.txt"
)

// load loads the runtime's libraries (rt.Load).
func load(t testing.TB) *llamacpp.Library { return rt.Load(t) }

func timeout(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func readFile(t testing.TB, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func run(t *testing.T, lib *llamacpp.Library, o calibrate.Options) *calibrate.Result {
	t.Helper()
	if o.Threads == 0 {
		o.Threads = 1
	}
	if o.MaxMemory == 0 {
		o.MaxMemory = 1 << 30
	}
	res, err := calibrate.Run(timeout(t), lib, o)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// matchText is how much of the calibration text TestMatchesLlamaImatrix
// feeds both tools: its first 32 KiB (cut at a line end), about 125 chunks
// of 128 tokens. Every chunk goes through the same code, so the whole text
// (about 900 chunks) checked nothing more and took 6 times the CPU.
const matchText = 32 << 10

// TestMatchesLlamaImatrix: on a real model the in_sum2 and counts equal
// llama-imatrix's own output on the same text and context size.
func TestMatchesLlamaImatrix(t *testing.T) {
	lib := load(t)
	dir := t.TempDir()
	textPath, text := rt.TextPrefix(t, calibText, matchText)
	ref := filepath.Join(dir, "ref.gguf")
	if err := rt.Imatrix(timeout(t), stories, textPath, 128, ref); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "cal.gguf")
	// The CLI's progress bar is this callback: it may run on the
	// evaluation's goroutine, and what it stored must be readable once
	// Run returns (the race detector checks that ordering here).
	var seen []calibrate.Progress
	run(t, lib, calibrate.Options{Model: stories, Out: out, Text: text, TextName: textPath, Ctx: 128,
		Progress: func(p calibrate.Progress) { seen = append(seen, p) }})
	if len(seen) == 0 || seen[len(seen)-1].Done != seen[len(seen)-1].Total {
		t.Errorf("progress calls %+v: want at least one, the last with Done == Total", seen)
	}
	want, err := imatrix.Load(ref)
	if err != nil {
		t.Fatal(err)
	}
	got, err := imatrix.Load(out)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Entries) != len(want.Entries) || got.ChunkCount != want.ChunkCount || got.ChunkSize != want.ChunkSize {
		t.Fatalf("%d entries, chunks %d x %d; llama-imatrix %d entries, chunks %d x %d", len(got.Entries), got.ChunkCount, got.ChunkSize,
			len(want.Entries), want.ChunkCount, want.ChunkSize)
	}
	worst := 0.0
	for name, we := range want.Entries {
		ge := got.Entries[name]
		if ge == nil {
			t.Fatalf("%s missing", name)
		}
		if len(ge.Counts) != len(we.Counts) || len(ge.Sums) != len(we.Sums) {
			t.Fatalf("%s: shapes differ", name)
		}
		for i := range we.Counts {
			if ge.Counts[i] != we.Counts[i] {
				t.Fatalf("%s: count %v, llama-imatrix %v", name, ge.Counts[i], we.Counts[i])
			}
		}
		for i := range we.Sums {
			d := math.Abs(float64(ge.Sums[i])-float64(we.Sums[i])) / math.Max(math.Abs(float64(we.Sums[i])), 1e-30)
			worst = max(worst, d)
			if d > 1e-6 {
				t.Fatalf("%s[%d]: %v, llama-imatrix %v (relative %.3g)", name, i, ge.Sums[i], we.Sums[i], d)
			}
		}
	}
	t.Logf("%d tensors, worst relative difference %.3g", len(want.Entries), worst)
	// llama.cpp's own llama-quantize takes the file as --imatrix.
	log, err := rt.RunTool(timeout(t), "llama-quantize", "--imatrix", out, stories, filepath.Join(dir, "q.gguf"), "Q4_0", "1")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(log, fmt.Sprintf("loaded %d importance matrix entries", len(want.Entries))) {
		t.Fatalf("llama-quantize did not load the entries:\n%s", log)
	}
}

func genModel(t *testing.T, c testmodels.Config) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "model.gguf")
	if err := testmodels.Write(p, c, gguf.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestGramAgreesWithIndependentForward: on a generated model the moments
// and the Gram of layer 0's attention input equal the same statistics
// computed here from the model's own tensors (embedding row, RMS norm,
// norm weight) for the tokens calibrate ran; every Gram is symmetric
// positive semi-definite (its Cholesky factor exists with a ridge of 1e-9
// of the mean diagonal) with in_sq on its diagonal; two runs (with two
// threads) and four pass plans write the same bytes.
func TestGramAgreesWithIndependentForward(t *testing.T) {
	lib := load(t)
	c := testmodels.DefaultConfig()
	c.Layers = 3 // so that a later pass stops before the last layer
	model := genModel(t, c)
	dir := t.TempDir()
	text := readFile(t, calibText)
	const ctxN, chunks = 64, 6
	o := calibrate.Options{Model: model, Text: text, TextName: calibText, Ctx: ctxN, Chunks: chunks, Gram: true, Threads: 2}
	o.Out = filepath.Join(dir, "a.gguf")
	res := run(t, lib, o)
	if res.Passes != 1 || res.Inputs != 4*c.Layers {
		t.Fatalf("plan %+v, want one pass (the Grams take less than %d bytes) and %d inputs", res.Plan, calibrate.DefaultPassFloor, 4*c.Layers)
	}
	cal, err := imatrix.LoadCalibration(o.Out)
	if err != nil {
		t.Fatal(err)
	}
	// The tokens calibrate evaluated: chunk starts replaced by BOS.
	lm, err := lib.LoadModel(model)
	if err != nil {
		t.Fatal(err)
	}
	defer lm.Close()
	toks, err := lm.Tokenize(bytes.TrimSuffix(text, []byte("\n")), true, false)
	if err != nil {
		t.Fatal(err)
	}
	n := c.Embd
	emb, err := testmodels.Values(c, "token_embd.weight")
	if err != nil {
		t.Fatal(err)
	}
	nw, err := testmodels.Values(c, "blk.0.attn_norm.weight")
	if err != nil {
		t.Fatal(err)
	}
	eps := rmsEps(t, model)
	sum, abs, sq := make([]float64, n), make([]float64, n), make([]float64, n)
	gram := make([]float64, n*n)
	x := make([]float64, n)
	for k := range chunks * ctxN {
		tok := toks[k]
		if k%ctxN == 0 && lm.AddBOS {
			tok = lm.BOS
		}
		row := emb[int(tok)*n : (int(tok)+1)*n]
		ms := 0.0
		for _, v := range row {
			ms += float64(v) * float64(v)
		}
		scale := 1 / math.Sqrt(ms/float64(n)+eps)
		for j := range x {
			x[j] = float64(row[j]) * scale * float64(nw[j])
			sum[j] += x[j]
			abs[j] += math.Abs(x[j])
			sq[j] += x[j] * x[j]
		}
		for i := range n {
			for j := range n {
				gram[i*n+j] += x[i] * x[j]
			}
		}
	}
	mo := cal.Tensors["blk.0.attn_k.weight"]
	if mo.Input != "blk.0.attn_q.weight" || mo.Count[0] != chunks*ctxN {
		t.Fatalf("attn_k reads %s with %v tokens", mo.Input, mo.Count)
	}
	near := func(what string, got, want, scale float64) {
		t.Helper()
		if math.Abs(got-want) > 1e-4*scale {
			t.Fatalf("%s: %v, independent %v", what, got, want)
		}
	}
	for j := range n {
		near("sum", mo.Sum[j], sum[j], math.Sqrt(sq[j]*float64(chunks*ctxN)))
		near("sum |x|", mo.Abs[j], abs[j], abs[j])
		near("sum x^2", mo.Sq[j], sq[j], sq[j])
		near("in_sum2", float64(mo.Sq32[j]), sq[j], sq[j])
	}
	var in *imatrix.Input
	for _, i := range cal.Inputs {
		if i.Name == "blk.0.attn_q.weight" {
			in = i
		}
	}
	g, err := in.Dense(0)
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		for j := range n {
			near("gram", g[i*n+j], gram[i*n+j], math.Sqrt(gram[i*n+i]*gram[j*n+j]))
		}
	}
	for _, in := range cal.Inputs {
		mo := cal.Tensors[in.Name]
		d, err := in.Dense(0)
		if err != nil {
			t.Fatal(err)
		}
		w := in.Width
		for i := range w {
			if d[i*w+i] != mo.Sq[i] {
				t.Fatalf("%s: diagonal %d %v, in_sq %v", in.Name, i, d[i*w+i], mo.Sq[i])
			}
			for j := range i {
				if d[i*w+j] != d[j*w+i] || d[i*w+j]*d[i*w+j] > d[i*w+i]*d[j*w+j]*(1+1e-9) {
					t.Fatalf("%s: G[%d][%d] %v breaks symmetry or Cauchy-Schwarz", in.Name, i, j, d[i*w+j])
				}
			}
		}
		if in.Count[0] != mo.Count[0] {
			t.Fatalf("%s: Gram of %v tokens, moments of %v", in.Name, in.Count[0], mo.Count[0])
		}
		if k, pivot := choleskyFails(d, w); k >= 0 {
			t.Fatalf("%s: not positive semi-definite: Cholesky pivot %d is %v", in.Name, k, pivot)
		}
	}
	// v^T G v = sum (v.x)^2 >= 0 for a few directions.
	for s := range 4 {
		v := make([]float64, n)
		for j := range v {
			v[j] = math.Sin(float64(j*(s+1)) + float64(s))
		}
		q := 0.0
		for i := range n {
			for j := range n {
				q += v[i] * g[i*n+j] * v[j]
			}
		}
		if q < 0 {
			t.Fatalf("v^T G v = %v < 0", q)
		}
	}
	o.Out = filepath.Join(dir, "b.gguf")
	run(t, lib, o)
	if !bytes.Equal(readFile(t, filepath.Join(dir, "a.gguf")), readFile(t, o.Out)) {
		t.Fatal("two runs wrote different bytes")
	}
	// Every pass plan writes the same bytes: one layer per pass (pass 2 of
	// 3 stops its evaluation, one per chunk group, before layer 2), two
	// layers per pass, and a limit that splits each layer's inputs.
	layer := 8 * uint64(3*imatrix.PackedLen(c.Embd)+imatrix.PackedLen(c.FF))
	for _, plan := range []struct {
		passMemory, maxMemory uint64
		passes, stopped       int
	}{
		{layer, 1 << 30, c.Layers, (chunks + 31) / 32},
		{2 * layer, 1 << 30, 2, 0},
		{0, 8 * uint64(imatrix.PackedLen(c.FF)+imatrix.PackedLen(c.Embd)), -1, -1},
	} {
		o.Out = filepath.Join(dir, fmt.Sprintf("plan-%d-%d.gguf", plan.passMemory, plan.maxMemory))
		o.PassMemory, o.MaxMemory = plan.passMemory, plan.maxMemory
		res = run(t, lib, o)
		if plan.passes < 0 && res.Passes <= c.Layers || plan.passes >= 0 && (res.Passes != plan.passes || res.Stopped != plan.stopped) {
			t.Fatalf("pass budget %d, limit %d bytes: %d passes, %d evaluations stopped; want %d and %d (-1: more passes than layers)",
				plan.passMemory, plan.maxMemory, res.Passes, res.Stopped, plan.passes, plan.stopped)
		}
		if !bytes.Equal(readFile(t, filepath.Join(dir, "a.gguf")), readFile(t, o.Out)) {
			t.Fatalf("%d passes wrote other bytes than one", res.Passes)
		}
	}
}

// choleskyFails factors G + r I (G n x n, r = 1e-9 of G's mean diagonal,
// room for rounding) in place of a copy and returns the first pivot that
// is not positive, or -1: a negative eigenvalue larger than r fails it.
func choleskyFails(g []float64, n int) (int, float64) {
	a := append([]float64(nil), g...)
	tr := 0.0
	for i := range n {
		tr += a[i*n+i]
	}
	r := 1e-9 * tr / float64(n)
	for j := range n {
		d := a[j*n+j] + r
		for k := range j {
			d -= a[j*n+k] * a[j*n+k]
		}
		if !(d > 0) {
			return j, d
		}
		d = math.Sqrt(d)
		a[j*n+j] = d
		for i := j + 1; i < n; i++ {
			v := a[i*n+j]
			for k := range j {
				v -= a[i*n+k] * a[j*n+k]
			}
			a[i*n+j] = v / d
		}
	}
	return -1, 0
}

func rmsEps(t *testing.T, model string) float64 {
	t.Helper()
	f, err := gguf.Open(model)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	kv, ok := f.KV("llama.attention.layer_norm_rms_epsilon")
	if !ok {
		t.Fatal("no rms epsilon")
	}
	return float64(kv.Value.Data.(float32))
}

// TestMoEExpertCounts: expert statistics count only routed tokens.
func TestMoEExpertCounts(t *testing.T) {
	lib := load(t)
	c := testmodels.DefaultConfig()
	c.Experts, c.ExpertsUsed = 4, 2
	model := genModel(t, c)
	out := filepath.Join(t.TempDir(), "moe.gguf")
	const ctxN, chunks = 64, 4
	run(t, lib, calibrate.Options{Model: model, Out: out, Text: readFile(t, calibText), TextName: calibText, Ctx: ctxN, Chunks: chunks, Gram: true})
	cal, err := imatrix.LoadCalibration(out)
	if err != nil {
		t.Fatal(err)
	}
	seen := 0
	for name, mo := range cal.Tensors {
		if mo.Mats == 1 {
			continue
		}
		seen++
		total := 0.0
		for _, n := range mo.Count {
			total += n
		}
		if mo.Mats != c.Experts || total != float64(chunks*ctxN*c.ExpertsUsed) {
			t.Fatalf("%s: %d experts, counts %v (sum %v), want %d x %d", name, mo.Mats, mo.Count, total, chunks*ctxN, c.ExpertsUsed)
		}
	}
	if seen != 3*c.Layers {
		t.Fatalf("%d expert tensors, want %d", seen, 3*c.Layers)
	}
}

// TestRefusals: each bad input gets its own clear error and leaves no file.
func TestRefusals(t *testing.T) {
	lib := load(t)
	c := testmodels.DefaultConfig()
	model := genModel(t, c)
	dir := t.TempDir()
	out := filepath.Join(dir, "out.gguf")
	text := readFile(t, calibText)
	for _, tc := range []struct {
		name string
		o    calibrate.Options
		want error
		msg  string
	}{
		{"short text", calibrate.Options{Text: []byte("Once upon a time."), Ctx: 128}, calibrate.ErrText, "fewer than two chunks"},
		{"no targets", calibrate.Options{Text: text, Ctx: 64, Layers: "99"}, calibrate.ErrNoTargets, "no target tensors"},
		{"gram over the limit", calibrate.Options{Text: text, Ctx: 64, Chunks: 2, Gram: true, MaxMemory: 1000}, calibrate.ErrMemory, "--max-memory"},
		{"unwritable out", calibrate.Options{Text: text, Ctx: 64, Out: filepath.Join(dir, "missing", "out.gguf")}, os.ErrNotExist, "cannot write"},
	} {
		o := tc.o
		o.Model, o.TextName, o.Threads = model, "text.txt", 1
		if o.Out == "" {
			o.Out = out
		}
		_, err := calibrate.Run(timeout(t), lib, o)
		if err == nil || !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.msg) {
			t.Fatalf("%s: %v, want %v containing %q", tc.name, err, tc.want, tc.msg)
		}
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 0 {
		t.Fatalf("left behind: %v", ents)
	}
	// A cancelled run leaves nothing either.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := calibrate.Run(ctx, lib, calibrate.Options{Model: model, Out: out, Text: text, TextName: "t", Ctx: 64, Threads: 1}); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: %v", err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatalf("left behind after cancel: %v", ents)
	}
}
