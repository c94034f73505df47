package imatrix

import (
	"context"
	"encoding/binary"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/physarium/physarium-gguf/gguf"
	"github.com/physarium/physarium-gguf/testmodels/llamacpp"
)

const sharedModels = "../../shared/models"

// realPair computes an importance matrix of stories260K with the real
// llama-imatrix (GGUF output) over the first part of the calibration text,
// and converts it to the legacy .dat format with llama-imatrix --in-file.
func realPair(t *testing.T) (ggufPath, datPath string) {
	t.Helper()
	dir := llamacpp.Require(t)
	tmp := t.TempDir()
	text, err := os.ReadFile(filepath.Join(sharedModels, "tinystories_valid_calib.txt"))
	if err != nil {
		t.Fatal(err)
	}
	small := filepath.Join(tmp, "calib_small.txt")
	if err := os.WriteFile(small, text[:min(len(text), 20000)], 0o644); err != nil {
		t.Fatal(err)
	}
	model := filepath.Join(sharedModels, "stories260K.gguf")
	ggufPath = filepath.Join(tmp, "small.imatrix.gguf")
	if err := llamacpp.Imatrix(context.Background(), model, small, 128, ggufPath); err != nil {
		t.Fatal(err)
	}
	datPath = filepath.Join(tmp, "small.imatrix.dat")
	cmd := exec.Command(filepath.Join(dir, "bin", llamacpp.ImatrixTool), "-m", model, "--in-file", ggufPath, "--output-format", "dat", "-o", datPath)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("llama-imatrix --output-format dat: %v\n%s", err, out)
	}
	return ggufPath, datPath
}

func TestRealBothFormats(t *testing.T) {
	gp, dp := realPair(t)
	g, err := Load(gp)
	if err != nil {
		t.Fatal(err)
	}
	d, err := Load(dp)
	if err != nil {
		t.Fatal(err)
	}
	if g.Format != GGUF || d.Format != Legacy {
		t.Fatalf("formats %s, %s", g.Format, d.Format)
	}
	if g.ChunkCount <= 0 || g.ChunkSize != 128 {
		t.Errorf("gguf chunks %d size %d, want >0 and 128", g.ChunkCount, g.ChunkSize)
	}
	if len(g.Datasets) != 1 || !strings.HasSuffix(g.Datasets[0], "calib_small.txt") {
		t.Errorf("gguf datasets %q", g.Datasets)
	}
	// The legacy trailer stores the converting run's own chunk counter,
	// which need not equal the GGUF's; only its presence is checked.
	if d.ChunkCount <= 0 || len(d.Datasets) != 1 || d.Datasets[0] != g.Datasets[0] {
		t.Errorf("dat trailer chunks %d datasets %q; gguf %d %q", d.ChunkCount, d.Datasets, g.ChunkCount, g.Datasets)
	}
	t.Logf("gguf: %s", g.Describe())
	t.Logf("dat:  %s", d.Describe())
	model, err := gguf.Open(filepath.Join(sharedModels, "stories260K.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	defer model.Close()
	// Every projection of the model has an entry of the right length, and
	// both formats give the same activation scales.
	projections := 0
	for _, ti := range model.Tensors {
		if !strings.HasPrefix(ti.Name, "blk.") || len(ti.Shape) < 2 || strings.Contains(ti.Name, "norm") {
			continue
		}
		projections++
		n := int(ti.Shape[0])
		ge, ok := g.Entries[ti.Name]
		if !ok {
			t.Errorf("gguf: no entry for %s", ti.Name)
			continue
		}
		de, ok := d.Entries[ti.Name]
		if !ok {
			t.Errorf("dat: no entry for %s", ti.Name)
			continue
		}
		ga, err := ge.Scales(n, 1)
		if err != nil {
			t.Fatal(err)
		}
		da, err := de.Scales(n, 1)
		if err != nil {
			t.Fatal(err)
		}
		for i := range ga {
			if ga[i] <= 0 || math.Abs(float64(ga[i]-da[i])) > 1e-5*float64(ga[i]) {
				t.Fatalf("%s column %d: gguf a=%g dat a=%g", ti.Name, i, ga[i], da[i])
			}
		}
		// Direct definition: a_i = sqrt(in_sum2_i / count).
		want := math.Sqrt(float64(ge.Sums[3]) / ge.Counts[0])
		if math.Abs(float64(ga[3])-want) > 1e-6*want {
			t.Errorf("%s: a_3 = %g, want %g", ti.Name, ga[3], want)
		}
		if _, err := ge.Scales(n+1, 1); err == nil || !strings.Contains(err.Error(), ti.Name) {
			t.Errorf("wrong length accepted or error lacks the entry name: %v", err)
		}
	}
	if projections != 35 {
		t.Errorf("%d projections checked, want 35", projections)
	}
}

func TestScalesCountZeroAndExperts(t *testing.T) {
	e := &Entry{Name: "x", Sums: []float32{4, 9, 16, 25}, Counts: []float64{0, 4}}
	a, err := e.Scales(2, 2)
	if err != nil {
		t.Fatal(err)
	}
	want := []float32{2, 3, 2, 2.5}
	for i := range want {
		if a[i] != want[i] {
			t.Fatalf("a = %v, want %v", a, want)
		}
	}
	if _, err := e.Scales(4, 1); err == nil {
		t.Error("2 counts for 1 matrix accepted")
	}
	if _, err := e.Scales(3, 1); err == nil {
		t.Error("4 values for 3 columns accepted")
	}
}

// legacyBytes builds a legacy file.
func legacyBytes(entries []struct {
	name  string
	ncall int32
	vals  []float32
}, trailer bool) []byte {
	var b []byte
	le := binary.LittleEndian
	b = le.AppendUint32(b, uint32(len(entries)))
	for _, e := range entries {
		b = le.AppendUint32(b, uint32(len(e.name)))
		b = append(b, e.name...)
		b = le.AppendUint32(b, uint32(e.ncall))
		b = le.AppendUint32(b, uint32(len(e.vals)))
		for _, v := range e.vals {
			b = le.AppendUint32(b, math.Float32bits(v))
		}
	}
	if trailer {
		b = le.AppendUint32(b, 7)
		b = le.AppendUint32(b, 4)
		b = append(b, "data"...)
	}
	return b
}

func TestLegacyHostile(t *testing.T) {
	type ent = struct {
		name  string
		ncall int32
		vals  []float32
	}
	good := legacyBytes([]ent{{"a.weight", 2, []float32{2, 8}}}, true)
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	m, err := Load(write("good.dat", good))
	if err != nil {
		t.Fatal(err)
	}
	if m.ChunkCount != 7 || len(m.Datasets) != 1 || m.Datasets[0] != "data" {
		t.Errorf("trailer: %+v", m)
	}
	a, _ := m.Entries["a.weight"].Scales(2, 1)
	if a[0] != 1 || a[1] != 2 {
		t.Errorf("scales %v, want [1 2]", a)
	}
	if _, err := Load(write("notrailer.dat", legacyBytes([]ent{{"a", 1, []float32{1}}}, false))); err != nil {
		t.Errorf("no trailer: %v", err)
	}
	le := binary.LittleEndian
	cases := map[string][]byte{
		"empty":       {},
		"short":       {1, 0},
		"zero":        le.AppendUint32(nil, 0),
		"huge count":  le.AppendUint32(nil, 1<<30),
		"negative":    le.AppendUint32(nil, 0xffffffff),
		"trunc name":  good[:8],
		"trunc vals":  good[:len(good)-14],
		"nan":         legacyBytes([]ent{{"a", 1, []float32{float32(math.NaN())}}}, false),
		"neg value":   legacyBytes([]ent{{"a", 1, []float32{-1}}}, false),
		"neg ncall":   legacyBytes([]ent{{"a", -1, []float32{1}}}, false),
		"no values":   legacyBytes([]ent{{"a", 1, nil}}, false),
		"dup":         legacyBytes([]ent{{"a", 1, []float32{1}}, {"a", 1, []float32{1}}}, false),
		"garbage end": append(append([]byte{}, good...), 1, 2, 3, 4, 5),
	}
	for name, b := range cases {
		p := write(strings.ReplaceAll(name, " ", "_")+".dat", b)
		_, err := Load(p)
		if err == nil {
			t.Errorf("%s: accepted", name)
			continue
		}
		if !strings.HasPrefix(err.Error(), "imatrix: ") || !strings.Contains(err.Error(), p) {
			t.Errorf("%s: error %q lacks the package prefix or the file", name, err)
		}
	}
	// A huge nval must fail before allocating.
	b := le.AppendUint32(nil, 1)
	b = le.AppendUint32(b, 1)
	b = append(b, 'a')
	b = le.AppendUint32(b, 1)
	b = le.AppendUint32(b, 0x7fffffff)
	if _, err := Load(write("huge.dat", b)); err == nil || !strings.Contains(err.Error(), "entry a") {
		t.Errorf("huge nval: %v", err)
	}
}

func TestGGUFHostile(t *testing.T) {
	dir := t.TempDir()
	mk := func(name string, kvs []gguf.KV, ts []gguf.TensorInfo, data [][]float32) string {
		p := filepath.Join(dir, name)
		w, err := gguf.Create(p, gguf.Header{Version: 3, KVs: kvs, Tensors: ts}, gguf.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range data {
			var b []byte
			for _, v := range d {
				b = binary.LittleEndian.AppendUint32(b, math.Float32bits(v))
			}
			if err := w.WriteTensor(strings.NewReader(string(b))); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		return p
	}
	meta := []gguf.KV{
		{Key: "general.type", Value: gguf.String("imatrix")},
		{Key: "imatrix.datasets", Value: gguf.Strings([]string{"d.txt"})},
		{Key: "imatrix.chunk_count", Value: gguf.Uint32(3)},
		{Key: "imatrix.chunk_size", Value: gguf.Uint32(64)},
	}
	sums := gguf.TensorInfo{Name: "e.weight.in_sum2", Type: gguf.TypeF32, Shape: []uint64{2, 2}}
	counts := gguf.TensorInfo{Name: "e.weight.counts", Type: gguf.TypeF32, Shape: []uint64{1, 2}}
	p := mk("moe.gguf", meta, []gguf.TensorInfo{sums, counts}, [][]float32{{4, 16, 9, 9}, {4, 0}})
	m, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if got := m.Describe(); got != "moe.gguf format=gguf datasets=d.txt chunks=3 chunk_size=64" {
		t.Errorf("Describe = %q", got)
	}
	a, err := m.Entries["e.weight"].Scales(2, 2)
	if err != nil {
		t.Fatal(err)
	}
	if a[0] != 1 || a[1] != 2 || a[2] != 3 || a[3] != 3 {
		t.Errorf("per-expert scales %v, want [1 2 3 3]", a)
	}
	bad := map[string]string{
		mk("model.gguf", []gguf.KV{{Key: "general.type", Value: gguf.String("model")}}, []gguf.TensorInfo{sums, counts}, [][]float32{{1, 1, 1, 1}, {1, 1}}):      "not imatrix",
		mk("nocounts.gguf", meta, []gguf.TensorInfo{sums}, [][]float32{{1, 1, 1, 1}}):                                                                            "only one of",
		mk("mismatch.gguf", meta, []gguf.TensorInfo{sums, {Name: counts.Name, Type: gguf.TypeF32, Shape: []uint64{1, 3}}}, [][]float32{{1, 1, 1, 1}, {1, 1, 1}}): "3 counts for 2 matrices",
		mk("neg.gguf", meta, []gguf.TensorInfo{sums, counts}, [][]float32{{1, -1, 1, 1}, {1, 1}}):                                                                "value 1",
		mk("notensors.gguf", meta, nil, nil): "not an importance matrix",
		mk("nodims.gguf", meta, []gguf.TensorInfo{{Name: sums.Name, Type: gguf.TypeF32}, counts}, [][]float32{{1}, {1, 1}}): "no dimensions",
	}
	for p, want := range bad {
		_, err := Load(p)
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), p) {
			t.Errorf("%s: error %v, want one naming the file and containing %q", filepath.Base(p), err, want)
		}
	}
}
