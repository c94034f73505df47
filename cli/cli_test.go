package cli

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/physarium/physarium-gguf/gguf"
	"github.com/physarium/physarium-gguf/quantize"
	"github.com/physarium/physarium-gguf/testmodels"
)

const stories = "../../shared/models/stories260K.gguf"

// run runs the command line with args and returns its stdout, stderr and
// error.
func run(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	a := New("test")
	a.Stdout, a.Stderr = &out, &errb
	err := a.RunContext(context.Background(), append([]string{Name}, args...))
	return out.String(), errb.String(), err
}

func mustRun(t *testing.T, args ...string) string {
	t.Helper()
	out, stderr, err := run(t, args...)
	if err != nil {
		t.Fatalf("%q: %v (stderr %q)", args, err, stderr)
	}
	return out
}

func needStories(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(stories); err != nil {
		t.Fatalf("test model missing: %v", err)
	}
}

func TestTestmodelDeterministic(t *testing.T) {
	dir := t.TempDir()
	flags := []string{"testmodel", "--layers", "1", "--embd", "64", "--ff", "96", "--heads", "2", "--vocab", "300", "--type", "f16", "--dist", "laplace", "--seed", "5"}
	a, b, c := filepath.Join(dir, "a.gguf"), filepath.Join(dir, "b.gguf"), filepath.Join(dir, "c.gguf")
	mustRun(t, append(flags, a)...)
	mustRun(t, append(flags, b)...)
	mustRun(t, append(append(flags, "--seed", "6"), c)...)
	ba, _ := os.ReadFile(a)
	bb, _ := os.ReadFile(b)
	bc, _ := os.ReadFile(c)
	if len(ba) == 0 || !bytes.Equal(ba, bb) {
		t.Fatalf("same flags gave different files (%d and %d bytes)", len(ba), len(bb))
	}
	if bytes.Equal(ba, bc) {
		t.Fatal("another seed gave the same file")
	}
	// Without --force an existing file is kept; with it, replaced.
	if _, _, err := run(t, append(flags, a)...); err == nil || ExitCode(err) != ExitFailure || !strings.Contains(err.Error(), "--force") {
		t.Errorf("overwriting without --force: %v", err)
	}
	mustRun(t, append(append(flags, "--seed", "6", "--force"), a)...)
	if ba, _ = os.ReadFile(a); !bytes.Equal(ba, bc) {
		t.Error("--force did not replace the file")
	}
}

func TestTestmodelTypes(t *testing.T) {
	models := typeModels(t)
	for _, name := range supportedTypeNames() {
		typ, _ := gguf.ParseType(name)
		p := models[typ]
		f, err := gguf.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		q, _ := f.Tensor("blk.0.attn_q.weight")
		if q.Type != typ {
			t.Errorf("--type %s: attn_q is %s", name, q.Type)
		}
		f.Close()
	}
}

func TestInspectJSONStories(t *testing.T) {
	needStories(t)
	out := mustRun(t, "inspect", "--json", stories)
	var doc map[string]json.RawMessage
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("not JSON: %v", err)
	}
	if got := keys(doc); strings.Join(got, ",") != "alignment,data_offset,kv,tensors,version" {
		t.Fatalf("top-level fields %v", got)
	}
	var top struct {
		Version    int `json:"version"`
		Alignment  int `json:"alignment"`
		DataOffset int `json:"data_offset"`
	}
	json.Unmarshal([]byte(out), &top)
	if top.Version != 3 || top.Alignment != 32 || top.DataOffset <= 0 || top.DataOffset%32 != 0 {
		t.Errorf("header %+v", top)
	}
	var kvs []map[string]json.RawMessage
	if err := json.Unmarshal(doc["kv"], &kvs); err != nil {
		t.Fatal(err)
	}
	if len(kvs) != 19 {
		t.Errorf("%d keys, want 19", len(kvs))
	}
	found := map[string]map[string]json.RawMessage{}
	for _, kv := range kvs {
		var key, typ string
		json.Unmarshal(kv["key"], &key)
		json.Unmarshal(kv["type"], &typ)
		want := "key,type,value"
		if typ == "ARRAY" {
			want = "elem_type,key,type,value"
		}
		if got := strings.Join(keys(kv), ","); got != want {
			t.Errorf("kv %s: fields %s, want %s", key, got, want)
		}
		found[key] = kv
	}
	if a := found["general.architecture"]; string(a["type"]) != `"STRING"` || string(a["value"]) != `"llama"` {
		t.Errorf("general.architecture: %s", a)
	}
	if a := found["llama.block_count"]; string(a["type"]) != `"UINT32"` || string(a["value"]) != "5" {
		t.Errorf("llama.block_count: %s", a)
	}
	if a := found["llama.attention.layer_norm_rms_epsilon"]; string(a["type"]) != `"FLOAT32"` || string(a["value"]) != "1e-05" {
		t.Errorf("rms epsilon: %s", a)
	}
	if a := found["tokenizer.ggml.seperator_token_id"]; string(a["value"]) != "4294967295" {
		t.Errorf("separator id: %s", a)
	}
	var toks []string
	if a := found["tokenizer.ggml.tokens"]; string(a["elem_type"]) != `"STRING"` || json.Unmarshal(a["value"], &toks) != nil || len(toks) != 512 || toks[0] != "<unk>" || toks[3] != "<0x00>" {
		t.Errorf("tokens: elem_type %s, %d tokens", a["elem_type"], len(toks))
	}
	var tensors []map[string]json.RawMessage
	if err := json.Unmarshal(doc["tensors"], &tensors); err != nil {
		t.Fatal(err)
	}
	if len(tensors) != 48 {
		t.Fatalf("%d tensors, want 48", len(tensors))
	}
	end := top.DataOffset
	for _, tj := range tensors {
		if got := strings.Join(keys(tj), ","); got != "bytes,name,offset,shape,type" {
			t.Fatalf("tensor fields %s", got)
		}
		var ten struct {
			Name   string
			Type   string
			Shape  []int
			Offset int
			Bytes  int
		}
		raw, _ := json.Marshal(tj)
		json.Unmarshal(raw, &ten)
		n := 1
		for _, d := range ten.Shape {
			n *= d
		}
		// stories260K is all F32: bytes = 4 * elements; offsets are
		// absolute, aligned, and follow each other.
		if ten.Type != "F32" || ten.Bytes != 4*n || ten.Offset%32 != 0 || ten.Offset < end {
			t.Errorf("tensor %+v (previous end %d)", ten, end)
		}
		end = ten.Offset + ten.Bytes
	}
	if st, _ := os.Stat(stories); int64(end) != st.Size() {
		t.Errorf("last tensor ends at %d, file size %d", end, st.Size())
	}
	var first struct {
		Name  string
		Shape []int
	}
	raw, _ := json.Marshal(tensors[0])
	json.Unmarshal(raw, &first)
	if first.Name != "token_embd.weight" || len(first.Shape) != 2 || first.Shape[0] != 64 || first.Shape[1] != 512 {
		t.Errorf("first tensor %+v", first)
	}
}

func keys[V any](m map[string]V) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

func TestInspectTextStories(t *testing.T) {
	needStories(t)
	out := mustRun(t, "inspect", stories)
	f, err := gguf.Open(stories)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, ti := range f.Tensors {
		if !strings.Contains(out, ti.Name) {
			t.Errorf("text output lacks tensor %s", ti.Name)
		}
	}
	for _, kv := range f.KVs {
		if !strings.Contains(out, kv.Key) {
			t.Errorf("text output lacks key %s", kv.Key)
		}
	}
	for _, want := range []string{"version:     3", "alignment:   32", `"<unk>", "<s>", "</s>"`, "... (512 elements)", "[64, 512]"} {
		if !strings.Contains(out, want) {
			t.Errorf("text output lacks %q", want)
		}
	}
	if strings.Contains(out, "PHYSARIUM") {
		t.Error("surgery record printed for a file without physarium keys")
	}
}

// writeGGUF writes a file with the given keys and tensors whose data is
// zero bytes.
func writeGGUF(t *testing.T, kvs []gguf.KV, tensors []gguf.TensorInfo) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "k.gguf")
	w, err := gguf.Create(p, gguf.Header{KVs: kvs, Tensors: tensors}, gguf.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, ti := range w.Tensors() {
		if _, err := w.Write(make([]byte, ti.Bytes())); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestInspectSpecialValuesAndErrata(t *testing.T) {
	errata := "Physarium-v1 surgery (magnitude-flow): 10 of 100 target projection weights killed (10 %, denominator: all weights of the 1 target tensors); these are surgery figures."
	p := writeGGUF(t, []gguf.KV{
		{Key: "general.architecture", Value: gguf.String("llama")},
		{Key: "x.nan", Value: gguf.Float32(float32(math.NaN()))},
		{Key: "x.inf", Value: gguf.Float64(math.Inf(1))},
		{Key: "x.floats", Value: gguf.Float32s([]float32{1.5, float32(math.Inf(-1)), float32(math.NaN())})},
		{Key: "x.big", Value: gguf.Uint64(math.MaxUint64)},
		{Key: "x.neg", Value: gguf.Int64(math.MinInt64)},
		{Key: "x.html", Value: gguf.String("<a & b>\n\"q\"")},
		{Key: "x.bool", Value: gguf.Bool(true)},
		{Key: "x.u64s", Value: gguf.Uint64s([]uint64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10})},
		{Key: "physarium.version", Value: gguf.Uint32(1)},
		{Key: "physarium.errata", Value: gguf.String(errata)},
	}, []gguf.TensorInfo{{Name: "w", Type: gguf.TypeF32, Shape: []uint64{8}}})

	out := mustRun(t, "inspect", "--json", p)
	var doc struct {
		KV []struct {
			Key      string
			Type     string
			ElemType string `json:"elem_type"`
			Value    json.RawMessage
		}
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out)
	}
	want := map[string]string{
		"x.nan":    `"NaN"`,
		"x.inf":    `"+Inf"`,
		"x.floats": `[1.5,"-Inf","NaN"]`,
		"x.big":    "18446744073709551615",
		"x.neg":    "-9223372036854775808",
		"x.html":   `"<a & b>\n\"q\""`,
		"x.bool":   "true",
		"x.u64s":   "[1,2,3,4,5,6,7,8,9,10]",
	}
	for _, kv := range doc.KV {
		if w, ok := want[kv.Key]; ok && string(kv.Value) != w {
			t.Errorf("%s = %s, want %s", kv.Key, kv.Value, w)
		}
		if kv.Key == "x.u64s" && (kv.Type != "ARRAY" || kv.ElemType != "UINT64") {
			t.Errorf("x.u64s type %s elem %s", kv.Type, kv.ElemType)
		}
	}

	text := mustRun(t, "inspect", p)
	for _, w := range []string{"PHYSARIUM SURGERY RECORD", "ERRATA (physarium.errata)", "denominator: all weights of the 1 target", "[1, 2, 3, 4, 5, 6, 7, 8, ... (10 elements)]", "NaN", "+Inf"} {
		if !strings.Contains(text, w) {
			t.Errorf("text output lacks %q", w)
		}
	}
	if i, j := strings.Index(text, "ERRATA"), strings.Index(text, "metadata ("); i < 0 || i > j {
		t.Error("errata not printed before the metadata listing")
	}
}

func TestDumpF32IsRawBytes(t *testing.T) {
	needStories(t)
	out := mustRun(t, "dump", "--tensor", "blk.2.ffn_down.weight", stories)
	f, err := gguf.Open(stories)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ti, _ := f.Tensor("blk.2.ffn_down.weight")
	file, err := os.ReadFile(stories)
	if err != nil {
		t.Fatal(err)
	}
	start := f.DataOffset + int64(ti.Offset)
	raw := file[start : start+int64(ti.Bytes())]
	if len(out) != 172*64*4 || out != string(raw) {
		t.Fatalf("dump gave %d bytes, differing from the %d raw bytes", len(out), len(raw))
	}
}

func TestDumpDecodes(t *testing.T) {
	for _, typ := range []gguf.Type{gguf.TypeF16, gguf.TypeQ8_0, gguf.TypeQ4_K} {
		if !testmodels.SupportedType(typ) || !quantize.CanDecode(typ) {
			t.Logf("skip %s: no codec yet", typ)
			continue
		}
		c := testmodels.DefaultConfig()
		c.Layers, c.Type = 1, typ
		p := filepath.Join(t.TempDir(), "m.gguf")
		if err := testmodels.Write(p, c, gguf.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		name := "blk.0.ffn_down.weight"
		out := mustRun(t, "dump", "--tensor", name, p)
		vals, _ := testmodels.Values(c, name)
		ti, _ := typ.Info()
		enc := make([]byte, len(vals)/ti.BlockSize*ti.BlockBytes)
		if err := quantize.Encode(typ, enc, vals); err != nil {
			t.Fatal(err)
		}
		want := make([]float32, len(vals))
		if err := quantize.Decode(typ, want, enc); err != nil {
			t.Fatal(err)
		}
		if len(out) != 4*len(want) {
			t.Fatalf("%s: dump gave %d bytes, want %d", typ, len(out), 4*len(want))
		}
		for i, w := range want {
			if g := binary.LittleEndian.Uint32([]byte(out[4*i:])); g != math.Float32bits(w) {
				t.Fatalf("%s: value %d = %g, want %g", typ, i, math.Float32frombits(g), w)
			}
		}
	}
}

func TestDumpErrors(t *testing.T) {
	needStories(t)
	_, _, err := run(t, "dump", "--tensor", "blk.9.nothing", stories)
	if err == nil || ExitCode(err) != ExitFailure || !strings.Contains(err.Error(), "blk.9.nothing") || !strings.Contains(err.Error(), "stories260K.gguf") {
		t.Errorf("unknown tensor: %v", err)
	}
	if _, _, err := run(t, "dump", stories); ExitCode(err) != ExitUsage {
		t.Errorf("dump without --tensor: %v", err)
	}
	if _, _, err := run(t, "dump", "--tensor", "x", filepath.Join(t.TempDir(), "missing.gguf")); ExitCode(err) != ExitFailure {
		t.Errorf("missing file: %v", err)
	}
	// A type without a decoder: the error names tensor and type.
	var undecodable gguf.Type
	found := false
	for _, typ := range gguf.Types() {
		if typ != gguf.TypeF32 && !quantize.CanDecode(typ) {
			undecodable, found = typ, true
			break
		}
	}
	if !found {
		t.Log("every type decodes; no unsupported-type case to test")
		return
	}
	ti, _ := undecodable.Info()
	p := writeGGUF(t, nil, []gguf.TensorInfo{{Name: "odd", Type: undecodable, Shape: []uint64{uint64(ti.BlockSize) * 2}}})
	_, _, err = run(t, "dump", "--tensor", "odd", p)
	if err == nil || !strings.Contains(err.Error(), "unsupported type") || !strings.Contains(err.Error(), "odd") || !strings.Contains(err.Error(), undecodable.String()) {
		t.Errorf("undecodable %s: %v", undecodable, err)
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{},
		{"frobnicate"},
		{"--nope"},
		{"inspect"},
		{"inspect", "a", "b"},
		{"inspect", "--bogus", "x"},
		{"inspect", "x.gguf", "--json"},
		{"testmodel"},
		{"testmodel", "--layers", "many", "x.gguf"},
		{"testmodel", "--type", "q9_9", "x.gguf"},
		{"testmodel", "--type", "q8_k", "x.gguf"},
		{"testmodel", "--heads", "3", "x.gguf"},
		{"testmodel", "--type", "q4_0", "--embd", "48", "--heads", "2", "x.gguf"},
		{"testmodel", "--dist", "cauchy", "x.gguf"},
		{"dump", "--tensor"},
		{"demo", "a", "b"},
	} {
		_, _, err := run(t, args...)
		if code := ExitCode(err); code != ExitUsage {
			t.Errorf("%q: exit code %d (%v), want %d", args, code, err, ExitUsage)
		}
	}
	if _, _, err := run(t, "inspect", filepath.Join(t.TempDir(), "none.gguf")); ExitCode(err) != ExitFailure {
		t.Errorf("inspect of a missing file: %v", err)
	}
	if out, _, err := run(t, "--version"); err != nil || !strings.Contains(out, "test") {
		t.Errorf("--version: %q %v", out, err)
	}
	if out, _, err := run(t, "--help"); err != nil || !strings.Contains(out, "denominator") || !strings.Contains(out, "testmodel") {
		t.Errorf("--help: %v", err)
	}
}

func TestTestmodelCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	p := filepath.Join(t.TempDir(), "m.gguf")
	a := New("test")
	a.Stdout, a.Stderr = &bytes.Buffer{}, &bytes.Buffer{}
	err := a.RunContext(ctx, []string{Name, "testmodel", p})
	if ExitCode(err) != ExitSignal {
		t.Fatalf("cancelled testmodel: %v", err)
	}
	if ents, _ := os.ReadDir(filepath.Dir(p)); len(ents) != 0 {
		t.Fatalf("cancelled testmodel left %d files", len(ents))
	}
}

func TestDemo(t *testing.T) {
	dir := t.TempDir()
	out, stderr, err := run(t, "demo", dir)
	if err != nil {
		t.Fatalf("%v (%s)", err, stderr)
	}
	p := filepath.Join(dir, "testmodel.gguf")
	if _, err := os.Stat(p); err != nil {
		t.Fatal(err)
	}
	pruned := filepath.Join(dir, "testmodel.pruned.gguf")
	if _, err := os.Stat(pruned); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{pruned, "over target:", "of 1310720 target weights", "denominator: all weights of the 14 target tensors", "blk.1.ffn_down.weight"} {
		if !strings.Contains(out, want) {
			t.Errorf("demo report lacks %q:\n%s", want, out)
		}
	}
	// Runs again over its own output.
	if _, _, err := run(t, "demo", dir); err != nil {
		t.Fatal(err)
	}
}

func TestExitCode(t *testing.T) {
	if ExitCode(nil) != 0 || ExitCode(os.ErrNotExist) != 1 || ExitCode(usageErrorf("x")) != 2 {
		t.Fatal("ExitCode mapping")
	}
	if ExitCode(fmt.Errorf("testmodel: %w", context.Canceled)) != ExitSignal {
		t.Fatal("a cancelled run must exit with ExitSignal")
	}
	wrapped := &ExitError{Code: 7, Err: os.ErrNotExist}
	if ExitCode(wrapped) != 7 || !strings.Contains(wrapped.Error(), "not exist") {
		t.Fatal("ExitError")
	}
}
