package prune

import (
	"bytes"
	"io"
	"testing"

	"github.com/physarium/physarium-gguf/gguf"
	"github.com/physarium/physarium-gguf/quantize"
)

// checkOutput verifies a pruned file against its input: same tensors and
// KVs, non-targets byte for byte, kills read back as zero where the type
// has a zero code, every block without a kill unchanged, and the stored
// keys equal to the report.
func checkOutput(t *testing.T, in, out string, r *Report) {
	t.Helper()
	fi, err := gguf.Open(in)
	if err != nil {
		t.Fatal(err)
	}
	defer fi.Close()
	fo, err := gguf.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer fo.Close()
	if len(fi.Tensors) != len(fo.Tensors) {
		t.Fatalf("%d tensors in, %d out", len(fi.Tensors), len(fo.Tensors))
	}
	targets := map[string]*TensorReport{}
	for i := range r.Tensors {
		targets[r.Tensors[i].Name] = &r.Tensors[i]
	}
	for i, ti := range fi.Tensors {
		to := fo.Tensors[i]
		if ti.Name != to.Name || ti.Type != to.Type || len(ti.Shape) != len(to.Shape) {
			t.Fatalf("tensor %d: %s %s %v in, %s %s %v out", i, ti.Name, ti.Type, ti.Shape, to.Name, to.Type, to.Shape)
		}
		a, _ := io.ReadAll(fi.TensorReader(ti))
		b, _ := io.ReadAll(fo.TensorReader(to))
		tr := targets[ti.Name]
		if tr == nil {
			if !bytes.Equal(a, b) {
				t.Errorf("non-target tensor %s changed", ti.Name)
			}
			continue
		}
		ty := ti.Type.Info
		info, _ := ty()
		n := int(ti.Elements())
		va, vb := make([]float32, n), make([]float32, n)
		if err := quantize.Decode(ti.Type, va, a); err != nil {
			t.Fatal(err)
		}
		if err := quantize.Decode(ti.Type, vb, b); err != nil {
			t.Fatal(err)
		}
		var zeros uint64
		for j := range va {
			if vb[j] == 0 && va[j] != 0 {
				zeros++
			}
		}
		if tr.ZeroCode && zeros < tr.Killed {
			t.Errorf("%s: %d weights became zero, %d killed", ti.Name, zeros, tr.Killed)
		}
		changedBlocks := uint64(0)
		for blk := 0; blk < n/info.BlockSize; blk++ {
			if !bytes.Equal(a[blk*info.BlockBytes:(blk+1)*info.BlockBytes], b[blk*info.BlockBytes:(blk+1)*info.BlockBytes]) {
				changedBlocks++
			}
		}
		if changedBlocks > tr.Reencoded {
			t.Errorf("%s: %d blocks changed, %d re-encoded", ti.Name, changedBlocks, tr.Reencoded)
		}
	}
	// KVs: the input's in order, then the physarium keys.
	for i, kv := range fi.KVs {
		if fo.KVs[i].Key != kv.Key {
			t.Fatalf("KV %d: %s in, %s out", i, kv.Key, fo.KVs[i].Key)
		}
	}
	want := Keys(r)
	got := fo.KVs[len(fi.KVs):]
	if len(got) != len(want) {
		t.Fatalf("%d physarium keys written, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i].Key != want[i].Key || got[i].Value.Type != want[i].Value.Type {
			t.Errorf("key %d: %s %s, want %s %s", i, got[i].Key, got[i].Value.Type, want[i].Key, want[i].Value.Type)
		}
	}
	if kv, ok := fo.KV("physarium.killed"); !ok {
		t.Error("no physarium.killed")
	} else if v, _ := kv.Value.AsUint64(); v != r.Killed {
		t.Errorf("physarium.killed = %d, report says %d", v, r.Killed)
	}
}
