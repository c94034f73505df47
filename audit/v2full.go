package audit

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/physarium/physarium-gguf/errata"
	"github.com/physarium/physarium-gguf/gguf"
	"github.com/physarium/physarium-gguf/imatrix"
	"github.com/physarium/physarium-gguf/internal/filehash"
	"github.com/physarium/physarium-gguf/kernel"
	"github.com/physarium/physarium-gguf/method"
)

// foodReplay replays activation-flow's full v2 food (activation-flow run
// with a calibration file and no importance matrix) through the method's
// own deciders, on the original's values and the calibration file the
// audit is given (Options.Calibration).
type foodReplay struct {
	m       method.Method
	cfg     method.Config
	decider method.Decider
	states  map[string]any // the Prepare state of every target
	state   any            // the Prepare state of the tensor being walked
	rows    int            // the rows of one matrix of that tensor
}

// loadCalibration opens Options.Calibration for the replay of the full
// v2 food.
func (a *auditor) loadCalibration(path string) error {
	if path == "" {
		return nil
	}
	f, err := imatrix.LoadCalibration(path)
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	a.calibration = method.NewCalibration(filepath.Base(path), f, method.DefaultDamp)
	sum, err := filehash.SHA256(a.ctx, path)
	if err != nil {
		return fmt.Errorf("audit: calibration: %w", err)
	}
	a.calibration.SHA256 = sum
	return nil
}

// prepareFoodReplay sets up the replay of a file whose importance states
// the full v2 food, or returns why it cannot run ("" when it runs, or
// when the file is not such a file: ok false).
func (a *auditor) prepareFoodReplay(name, imp string) (reason string, ok bool) {
	if name != method.ActivationFlow || !strings.Contains(imp, "v2 full food") {
		return "", false
	}
	if strings.HasPrefix(imp, "adaptive v2 full") {
		return "", false // reconstructed: the generic reason applies
	}
	if a.calibration == nil {
		return fmt.Sprintf("not verifiable by replay: physarium.version 2, method %q eats the full v2 food from a calibration file (physarium.calibration): give it with --calibration", name), true
	}
	desc, _ := a.str(errata.KeyCalibration)
	if !strings.Contains(desc, " sha256:"+a.calibration.SHA256+" ") {
		a.r.disagree(errata.KeyPrefix+errata.KeyCalibration, "", desc, "the file --calibration gives ("+a.calibration.Name+" sha256:"+a.calibration.SHA256+")", BasisFile)
		return "not verifiable by replay: --calibration is not the calibration file physarium.calibration names", true
	}
	cfg := method.Config{Params: a.params, Calibration: a.calibration}
	factors, err := storedFactors(imp)
	if err != nil {
		return "physarium.importance unusable: " + err.Error(), true
	}
	cfg.Factors = factors
	if damp, ok := storedDamp(imp); ok {
		a.calibration.Damp = damp
	}
	m, _ := method.Lookup(method.ActivationFlow)
	for _, r := range method.Ranks() {
		cfg.Rank = r
		if m.Importance(cfg) == imp {
			d, err := m.NewDecider(cfg)
			if err != nil {
				return err.Error(), true
			}
			a.food = &foodReplay{m: m, cfg: cfg, decider: d}
			return "", true
		}
	}
	return fmt.Sprintf("not verifiable by replay: physarium.importance %q is not what activation-flow writes for any rank with the full food", imp), true
}

// storedFactors reads the factors named in a full-food importance.
func storedFactors(imp string) (method.Factors, error) {
	_, rest, ok := strings.Cut(imp, "factors ")
	if !ok {
		return method.Factors{}, fmt.Errorf("names no factors")
	}
	list, _, _ := strings.Cut(rest, ";")
	f, err := method.ParseFactors(list)
	if err != nil {
		return f, err
	}
	f.NoGram = strings.Contains(imp, "contribution not computed")
	return f, nil
}

// storedDamp reads the relative damping lambda=D*mean(diag H) of a
// full-food importance.
func storedDamp(imp string) (float64, bool) {
	_, rest, ok := strings.Cut(imp, "lambda=")
	if !ok {
		return 0, false
	}
	v, _, ok := strings.Cut(rest, "*mean")
	if !ok {
		return 0, false
	}
	d, err := strconv.ParseFloat(v, 64)
	return d, err == nil
}

// startTensor readies the replay of target t. The first call prepares
// every target of the file at once, as prune does, so that tensors
// reading the same input share its factor until their last band.
func (fr *foodReplay) startTensor(a *auditor, t gguf.TensorInfo) error {
	if fr.states == nil {
		fr.states = map[string]any{}
		p, ok := fr.m.(method.Preparer)
		if !ok {
			return fmt.Errorf("audit: method %s prepares no tensor", fr.m.Name())
		}
		for _, name := range a.targetList() {
			ti, ok := a.file.Tensor(name)
			if !ok || len(ti.Shape) < 2 {
				continue
			}
			st, err := p.Prepare(a.ctx, method.Tensor{Name: name, Cols: int(ti.Shape[0]), Rows: int(ti.Shape[1]), Matrices: matrices(ti)}, fr.cfg)
			if err != nil {
				return fmt.Errorf("audit: %w", err)
			}
			fr.states[name] = st
		}
	}
	st, ok := fr.states[t.Name]
	if !ok {
		return fmt.Errorf("audit: target %s was not prepared for the replay", t.Name)
	}
	fr.state, fr.rows = st, int(t.Shape[1])
	return nil
}

// matrices is the number of matrices of a tensor (ne[2]*ne[3]).
func matrices(t gguf.TensorInfo) int {
	mats := 1
	for _, n := range t.Shape[2:] {
		mats *= int(n)
	}
	return mats
}

// band decides the band of nr rows of matrix m whose first row (counting
// every matrix's rows) is row0 on the original's values a.bufs.before,
// and returns its mask, with the kills zeroed in a.bufs.vals.
func (fr *foodReplay) band(a *auditor, r *TensorReplay, m int, row0 uint64, nr, cols int) ([]byte, error) {
	b := &a.bufs
	n := nr * cols
	b.mask = grow(b.mask, n)
	band := &method.Band{Values: b.before[:n], Rows: nr, Cols: cols, Row0: int(row0), MatrixRow0: int(row0) - m*fr.rows, State: fr.state}
	c, err := fr.decider.Decide(band, b.mask[:n])
	if err != nil {
		return nil, err
	}
	b.vals = grow(b.vals, n)
	copy(b.vals, b.before[:n])
	for i, x := range b.mask[:n] {
		if x != 0 {
			b.vals[i] = 0
			r.Killed++
		}
	}
	r.ZeroBefore += c.ZeroBefore
	for c0 := 0; c0 < cols; c0 += errata.TileSize {
		r.Tiles++
	}
	return b.mask[:n], nil
}

// fullFoodLabels finds the rank of method m in mode whose full-food
// importance (with the factors and damping imp names, with and without
// reconstruction, with the file's pattern) is imp, and the count rule of
// that run (nil in natural mode); found is false when none is.
func (a *auditor) fullFoodLabels(m method.Method, mode kernel.Mode, imp string) (rank method.Rank, rule method.Rule, found bool) {
	if m.Name() != method.ActivationFlow || !strings.Contains(imp, "v2 full food") {
		return "", nil, false
	}
	factors, err := storedFactors(imp)
	if err != nil {
		return "", nil, false
	}
	damp, ok := storedDamp(imp)
	if !ok {
		damp = method.DefaultDamp
	}
	cfg := method.Config{Params: kernel.Params{Mode: mode}, Factors: factors, Calibration: method.NewCalibration("", nil, damp)}
	if p, ok := a.storedPattern(); ok {
		cfg.Pattern = p
	}
	ranks := append([]method.Rank{""}, m.Ranks(mode)...)
	for _, r := range ranks {
		cfg.Rank = r
		for _, x := range []method.Method{m, method.WithReconstruction(m, cfg)} {
			if x.Importance(cfg) != imp {
				continue
			}
			return r, x.Rule(cfg), true
		}
	}
	return "", nil, false
}
