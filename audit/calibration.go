package audit

import (
	"bytes"
	"fmt"
	"math"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/physarium/physarium-gguf/errata"
	"github.com/physarium/physarium-gguf/imatrix"
	"github.com/physarium/physarium-gguf/internal/filehash"
	"github.com/physarium/physarium-gguf/kernel"
	"github.com/physarium/physarium-gguf/method"
	"github.com/physarium/physarium-gguf/quantize"
)

// A file whose survivors moved (SparseGPT, or any method with
// --reconstruct) is replayed from its calibration file (Options.Calibration):
// the method package decides every band of the original again, with the
// configuration the stored keys name (method, mode, sparsity, rank,
// pattern, damping and column block), and the expected bytes are the
// original's with every block that holds a kill or a moved survivor
// re-encoded from the replayed values, as prune writes them. The OBS
// solver is deterministic float64 arithmetic in a fixed order, so the
// replay finds the same bytes on every machine that runs this build.

// calReplay is the replay of a reconstructed file: the method, its
// configuration and one decider, and per tensor the method's state.
type calReplay struct {
	m       method.Method
	cfg     method.Config
	decider method.Decider
	cal     *imatrix.Calibration
	// act holds the activation scales of each target (methods that read
	// an importance matrix), by tensor name; a target the stored
	// physarium.imatrix lists as missing has none.
	act map[string][]float32
	// state is the method's Prepare state of the tensor being walked.
	state any
	// outErr and outEnergy sum the replayed layer-output change and the
	// dense output energy, tensor after tensor (as prune sums them).
	outErr, outEnergy float64
	// tensors counts the targets replayed whole.
	tensors int
	after   []float32
	tensor  struct{ err, energy float64 }
}

// reconstruction matches physarium.reconstruction's damping and block.
var reconstruction = regexp.MustCompile(`(?:^| )damp=(\S+) blocksize=(\d+)(?: |$)`)

// prepareCalReplay sets up the replay of a reconstructed file from the
// calibration file at path, or returns why it cannot run.
func (a *auditor) prepareCalReplay(path, name string) (string, error) {
	m, ok := method.Lookup(name)
	if !ok {
		return fmt.Sprintf("method %q is unknown", name), nil
	}
	switch {
	case !a.hasParams:
		return "physarium.params missing or unusable", nil
	case a.orig == nil:
		return "needs the original (--against)", nil
	}
	recon, _ := a.str(errata.KeyReconstruction)
	mm := reconstruction.FindStringSubmatch(recon)
	if mm == nil {
		return fmt.Sprintf("physarium.reconstruction %q names no damp=<x> blocksize=<n>", recon), nil
	}
	damp, err1 := strconv.ParseFloat(mm[1], 64)
	block, err2 := strconv.Atoi(mm[2])
	if err1 != nil || err2 != nil || !(damp > 0) || math.IsInf(damp, 0) || block <= 0 {
		return fmt.Sprintf("physarium.reconstruction %q: damping or block unusable", recon), nil
	}
	sum, err := filehash.SHA256(a.ctx, path)
	if err != nil {
		return "", fmt.Errorf("audit: calibration: %w", err)
	}
	stored, _ := a.str(errata.KeyCalibration)
	if !strings.Contains(stored, " sha256:"+sum+" ") {
		return fmt.Sprintf("the calibration file %s (sha256:%s) is not the one physarium.calibration names (%q)", filepath.Base(path), sum, stored), nil
	}
	cal, err := imatrix.LoadCalibration(path)
	if err != nil {
		return "", fmt.Errorf("audit: calibration: %w", err)
	}
	cfg := method.Config{Params: a.params, Impl: kernel.Auto, BlockSize: block}
	cfg.Calibration = method.NewCalibration(filepath.Base(path), cal, damp)
	cfg.Calibration.SHA256 = sum
	imp, _ := a.str(errata.KeyImportance)
	if name == method.ActivationFlow && strings.Contains(imp, "v2 full food") {
		// prune ate the full v2 food: the same factors, as the
		// importance states them, choose the mask as the update goes.
		factors, err := storedFactors(imp)
		if err != nil {
			cal.Close()
			return "physarium.importance unusable: " + err.Error(), nil
		}
		cfg.Factors = factors
	}
	if p, ok := a.storedPattern(); ok {
		cfg.Pattern = p
		m = method.Patterned(m)
	}
	if a.reconstructed {
		m = method.WithReconstruction(m, cfg)
	}
	if c, ok := m.(method.Calibrated); !ok || !c.NeedsCalibration() {
		cal.Close()
		return fmt.Sprintf("method %q without physarium.reconstructed reads no calibration file", name), nil
	}
	for _, r := range m.Ranks(a.params.Mode) {
		if c := cfg; m.Importance(withRank(c, r)) == imp {
			cfg.Rank = r
			break
		}
	}
	rp := &calReplay{m: m, cfg: cfg, cal: cal}
	if m.NeedsImatrix() {
		if why := a.calActivations(rp); why != "" {
			cal.Close()
			return why, nil
		}
	}
	if err := m.Validate(cfg); err != nil {
		cal.Close()
		return "the stored configuration does not run: " + err.Error(), nil
	}
	if rp.decider, err = m.NewDecider(cfg); err != nil {
		cal.Close()
		return "", fmt.Errorf("audit: %w", err)
	}
	a.cal = rp
	return "", nil
}

// withRank returns cfg with rank r.
func withRank(cfg method.Config, r method.Rank) method.Config {
	cfg.Rank = r
	return cfg
}

// calActivations gives the replay the activation scales of every target
// from the calibration file's importance matrix, when physarium.imatrix
// describes that matrix, or says why it cannot.
func (a *auditor) calActivations(rp *calReplay) string {
	stored, _ := a.str(errata.KeyImatrix)
	desc, list, _ := strings.Cut(stored, errata.ImatrixMissingMark)
	if want := rp.cal.Matrix.Describe(); desc != want {
		return fmt.Sprintf("the method read an importance matrix (%q) that is not the calibration file's (%q); the audit reads it only from the calibration file", desc, want)
	}
	missing := map[string]bool{}
	if list != "" {
		for _, n := range strings.Split(list, ",") {
			missing[n] = true
		}
	}
	rp.act = map[string][]float32{}
	for _, n := range a.storedNames() {
		t, ok := a.file.Tensor(n)
		if !ok || missing[n] || len(t.Shape) < 2 {
			continue
		}
		e, ok := rp.cal.Entries[n]
		if !ok {
			return fmt.Sprintf("the calibration file has no importance entry for target %s, which physarium.imatrix does not list as missing", n)
		}
		mats := 1
		for _, d := range t.Shape[2:] {
			mats *= int(d)
		}
		s, err := e.Scales(int(t.Shape[0]), mats)
		if err != nil {
			return fmt.Sprintf("tensor %s: %v", n, err)
		}
		rp.act[n] = s
	}
	return ""
}

// close releases the calibration file.
func (rp *calReplay) close() {
	if rp != nil && rp.cal != nil {
		rp.cal.Close()
	}
}

// startCalTensor runs the method's Prepare on the original's tensor
// w.ot, reading its bands from the original.
func (w *walk) startCalTensor() error {
	rp, a, ot := w.a.cal, w.a, w.ot
	rp.tensor.err, rp.tensor.energy = 0, 0
	rows, mats := int(ot.Shape[1]), 1
	for _, n := range ot.Shape[2:] {
		mats *= int(n)
	}
	rp.state = nil
	pr, ok := rp.m.(method.Preparer)
	if !ok {
		return nil
	}
	var raw []byte
	bands := bandStarts(rows, mats)
	t := method.Tensor{Name: ot.Name, Cols: w.rowLen, Rows: rows, Matrices: mats}
	t.ReadBand = func(b int, dst []float32) ([]float32, error) {
		if b < 0 || b >= len(bands) {
			return nil, fmt.Errorf("audit: tensor %s: band %d of %d", ot.Name, b, len(bands))
		}
		row0, nr := bands[b][0], bands[b][1]
		raw = grow(raw, nr*int(w.rowBytes))
		if err := readTensor(a.orig, ot, uint64(row0)*w.rowBytes, raw); err != nil {
			return nil, err
		}
		dst = grow(dst, nr*w.rowLen)
		if err := quantize.Decode(ot.Type, dst, raw); err != nil {
			return nil, fmt.Errorf("audit: %s: tensor %s: %w", a.orig.Path, ot.Name, err)
		}
		return dst, nil
	}
	var err error
	if rp.state, err = pr.Prepare(a.ctx, t, rp.cfg); err != nil {
		return fmt.Errorf("audit: replay of tensor %s: %w", ot.Name, err)
	}
	return nil
}

// bandStarts lists each band's first row (counting every matrix's rows)
// and its rows, in errata.Bands order matrix after matrix.
func bandStarts(rows, mats int) [][2]int {
	var out [][2]int
	for m := range mats {
		for r0, nr := range errata.Bands(rows) {
			out = append(out, [2]int{m*rows + r0, nr})
		}
	}
	return out
}

// endCalTensor adds a walked tensor's output error to the file's.
func (w *walk) endCalTensor() {
	rp := w.a.cal
	rp.outErr += rp.tensor.err
	rp.outEnergy += rp.tensor.energy
	rp.tensors++
}

// calBand decides band index of the original (a.bufs.before, nr rows of
// matrix m, row0 its first row counting every matrix) with the method and
// returns the mask; a.bufs.vals holds the values prune writes (kills 0,
// survivors moved) and a.bufs.touched marks the blocks prune re-encodes.
func (w *walk) calBand(m, index int, row0 uint64, nr int) ([]byte, error) {
	b, rp, r := &w.a.bufs, w.a.cal, w.walked.replay
	n := nr * w.rowLen
	rows := int(w.t.Shape[1])
	band := method.Band{Values: b.before[:n], Rows: nr, Cols: w.rowLen, Row0: int(row0), MatrixRow0: int(row0) - m*rows, Index: index, State: rp.state}
	if act := rp.act[w.t.Name]; act != nil {
		band.Act = act[m*w.rowLen : (m+1)*w.rowLen]
	}
	b.mask = grow(b.mask, n)
	clear(b.mask)
	c, err := rp.decider.Decide(&band, b.mask)
	if err != nil {
		return nil, fmt.Errorf("audit: replay of tensor %s: %w", w.t.Name, err)
	}
	rc, ok := rp.decider.(method.Reconstructor)
	if !ok {
		return nil, fmt.Errorf("audit: replay of tensor %s: method %s rewrites no survivors", w.t.Name, rp.m.Name())
	}
	rp.after = grow(rp.after, n)
	moved, err := rc.Survivors(&band, b.mask, rp.after)
	if err != nil {
		return nil, fmt.Errorf("audit: replay of tensor %s: %w", w.t.Name, err)
	}
	rp.tensor.err += c.OutputError
	rp.tensor.energy += c.OutputEnergy
	r.SurvivorsChanged += moved
	b.vals = grow(b.vals, n)
	for i, mk := range b.mask[:n] {
		v := rp.after[i]
		if mk != 0 {
			if b.before[i] == 0 {
				return nil, fmt.Errorf("audit: replay of tensor %s: the method marked element %d, already zero, as a kill", w.t.Name, row0*uint64(w.rowLen)+uint64(i))
			}
			r.Killed++
			v = 0
		}
		if b.before[i] == 0 {
			r.ZeroBefore++
		}
		b.vals[i] = v
	}
	blocks := n / w.blockSize
	b.touched = grow(b.touched, blocks)
	for blk := range blocks {
		lo, hi := blk*w.blockSize, (blk+1)*w.blockSize
		t := false
		for i := lo; i < hi && !t; i++ {
			t = b.mask[i] != 0 || math.Float32bits(rp.after[i]) != math.Float32bits(b.before[i])
		}
		b.touched[blk] = t
	}
	if w.blockSize == 1 {
		return b.mask[:n], w.keptBytes()
	}
	return b.mask[:n], nil
}

// keptBytes clears the touched mark of every single-weight survivor whose
// new value encodes to its stored bytes: prune keeps those bytes and does
// not count them re-encoded.
func (w *walk) keptBytes() error {
	b, bb := &w.a.bufs, w.blockLen
	b.one = grow(b.one, bb)
	for i, t := range b.touched {
		if !t || b.mask[i] != 0 {
			continue
		}
		if err := quantize.EncodeKeepZeros(w.t.Type, b.one, b.vals[i:i+1]); err != nil {
			return fmt.Errorf("audit: tensor %s: %w", w.t.Name, err)
		}
		b.touched[i] = !bytes.Equal(b.one, b.rawO[i*bb:(i+1)*bb])
	}
	return nil
}

// calReplayKeys checks physarium.survivors_changed and
// physarium.reconstruction_error against the replay when every target
// was replayed, and reports whether it did.
func (a *auditor) calReplayKeys() (moved uint64, ok bool) {
	rp := a.cal
	if rp == nil || rp.tensors != len(a.r.Tensors) {
		return 0, false
	}
	for _, t := range a.r.Tensors {
		if t.Replay == nil {
			return 0, false
		}
		moved += t.Replay.SurvivorsChanged
	}
	stored, has := a.u64(errata.KeySurvivorsMoved)
	a.figure(errata.KeySurvivorsMoved, "", stored, has, moved, BasisAgainst, "the survivors whose value the replayed reconstruction changed (before re-encoding)")
	if v, has := a.get(errata.KeyOutputError); has {
		e, _ := v.Data.(float64)
		want := 0.0
		if rp.outEnergy > 0 {
			want = rp.outErr / rp.outEnergy
		}
		ck := Check{Key: errata.KeyPrefix + errata.KeyOutputError, Stored: fmt.Sprint(e), Recounted: fmt.Sprint(want), Basis: BasisAgainst,
			Note: "the replayed layer-output change on the calibration inputs over the dense output energy, summed band after band and tensor after tensor as prune sums them"}
		ck.Status = statusOf(math.Float64bits(e) == math.Float64bits(want))
		a.r.check(ck)
	}
	return moved, true
}

// calibrationReason is why a reconstructed file is not replayed when no
// calibration file is given.
func calibrationReason(version uint64, name string) string {
	return fmt.Sprintf("not verifiable by replay: physarium.version %d, method %q: the survivors moved (physarium.reconstructed), and replaying the mask and the survivors needs the calibration file's Gram matrices (physarium.calibration): give it with --calibration", version, name)
}
