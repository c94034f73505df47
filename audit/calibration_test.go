package audit

import (
	"context"
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/physarium/physarium-gguf/errata"
	"github.com/physarium/physarium-gguf/gguf"
	"github.com/physarium/physarium-gguf/kernel"
	"github.com/physarium/physarium-gguf/prune"
	"github.com/physarium/physarium-gguf/testmodels"
)

// replayFromCalibration audits the reconstructed file out and its control
// twin ctl with the calibration file: the replay runs, finds every block's
// bytes, and makes the kills, the moved survivors and the layer-output
// error exact.
func replayFromCalibration(t *testing.T, orig, cal, out, ctl string, rep *prune.Report) {
	t.Helper()
	ctx := context.Background()
	r, err := File(ctx, out, Options{Against: orig, Calibration: cal})
	if err != nil {
		t.Fatal(err)
	}
	if !r.OK() || !r.Replay.Ran {
		t.Fatalf("replay from the calibration file: %+v, %+v", r.Replay, r.Disagreements)
	}
	if r.Killed == nil || !r.Killed.Exact || r.Killed.Lo != rep.Killed {
		t.Errorf("replayed kills %+v, prune %d", r.Killed, rep.Killed)
	}
	for _, key := range []string{errata.KeySurvivorsMoved, errata.KeyOutputError} {
		if ck := findCheck(t, r, errata.KeyPrefix+key); ck.Status != StatusExact {
			t.Errorf("%s: %+v", key, ck)
		}
	}
	var moved uint64
	for _, ta := range r.Tensors {
		if ta.Replay == nil || ta.Replay.AsExpected != ta.Replay.KillBlocks || ta.Replay.MovedAsExpected != ta.Replay.MovedBlocks {
			t.Fatalf("tensor %s: %+v", ta.Name, ta.Replay)
		}
		moved += ta.Replay.SurvivorsChanged
	}
	if moved != rep.SurvivorsChanged.Numerator || moved == 0 {
		t.Errorf("replayed %d moved survivors, prune %d", moved, rep.SurvivorsChanged.Numerator)
	}
	cr, err := File(ctx, ctl, Options{Against: orig, Pruned: out, Calibration: cal})
	if err != nil {
		t.Fatal(err)
	}
	if !cr.OK() || !cr.Replay.Ran {
		t.Fatalf("control twin from the calibration file: %+v, %+v", cr.Replay, cr.Disagreements)
	}
	if ck := findCheck(t, cr, errata.KeyPrefix+errata.KeyReencoded); ck.Status != StatusExact {
		t.Errorf("control reencoded_blocks: %+v", ck)
	}
}

// TestCalibrationReplayCatchesTamperedSurvivor: a SparseGPT file with one
// survivor nudged by one ulp audits clean without the calibration file (a
// moved survivor is allowed) and disagrees with it, naming the tensor; a
// calibration file other than the one the file names is refused by name;
// --calibration on a file whose survivors did not move is an error.
func TestCalibrationReplayCatchesTamperedSurvivor(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	cfg := testmodels.DefaultConfig()
	cfg.Layers = 1
	orig := filepath.Join(dir, "m.gguf")
	if err := testmodels.Write(orig, cfg, gguf.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	cal := filepath.Join(dir, "cal.gguf")
	writeCalibration(t, cal, orig)
	p := kernel.DefaultParams()
	p.Mode, p.Sparsity = kernel.Sparsity, 0.5
	out := filepath.Join(dir, "p.gguf")
	if _, err := prune.File(ctx, orig, out, prune.Options{Method: "sparsegpt", Calibration: cal, Params: &p, Threads: 2}); err != nil {
		t.Fatal(err)
	}
	f, err := gguf.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	target := "blk.0.ffn_down.weight"
	ti, ok := f.Tensor(target)
	if !ok || ti.Type != gguf.TypeF32 {
		t.Fatalf("no F32 %s", target)
	}
	raw := make([]byte, 4*256)
	off := f.DataOffset + int64(ti.Offset)
	if _, err := f.ReadAt(raw, off); err != nil {
		t.Fatal(err)
	}
	f.Close()
	at := -1
	for i := 0; i < len(raw); i += 4 {
		if v := binary.LittleEndian.Uint32(raw[i:]); math.Float32frombits(v) != 0 {
			at = i
			break
		}
	}
	if at < 0 {
		t.Fatal("no survivor in the first row")
	}
	tampered := filepath.Join(dir, "t.gguf")
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	v := binary.LittleEndian.Uint32(data[off+int64(at):])
	binary.LittleEndian.PutUint32(data[off+int64(at):], v+1)
	if err := os.WriteFile(tampered, data, 0o644); err != nil {
		t.Fatal(err)
	}
	plain, err := File(ctx, tampered, Options{Against: orig})
	if err != nil {
		t.Fatal(err)
	}
	if !plain.OK() {
		t.Fatalf("without the calibration file: %+v", plain.Disagreements)
	}
	r, err := File(ctx, tampered, Options{Against: orig, Calibration: cal})
	if err != nil {
		t.Fatal(err)
	}
	if r.OK() || !r.Replay.Ran {
		t.Fatalf("the tampered survivor was not caught: %+v", r.Replay)
	}
	found := false
	for _, d := range r.Disagreements {
		found = found || d.Tensor == target && strings.Contains(d.Stored, "moved") || d.Tensor == target && strings.Contains(d.Stored, "not the expected")
	}
	if !found {
		t.Fatalf("no disagreement on %s: %+v", target, r.Disagreements)
	}
	other := filepath.Join(dir, "other.gguf")
	data, err = os.ReadFile(cal)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(other, append(data, 0), 0o644); err != nil {
		t.Fatal(err)
	}
	r, err = File(ctx, out, Options{Against: orig, Calibration: other})
	if err != nil {
		t.Fatal(err)
	}
	if r.Replay.Ran || !strings.Contains(r.Replay.Reason, "other.gguf") || !strings.Contains(r.Replay.Reason, "not the one physarium.calibration names") {
		t.Fatalf("another calibration file: %+v", r.Replay)
	}
	v1 := filepath.Join(dir, "v1.gguf")
	if _, err := prune.File(ctx, orig, v1, prune.Options{Threads: 2}); err != nil {
		t.Fatal(err)
	}
	if _, err := File(ctx, v1, Options{Against: orig, Calibration: cal}); err == nil || !strings.Contains(err.Error(), "physarium.reconstructed") {
		t.Fatalf("--calibration on a file whose survivors did not move: %v", err)
	}
}
