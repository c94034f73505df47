package prune

import (
	"context"
	"fmt"
	"math"
	"path/filepath"
	"strings"

	"github.com/physarium/physarium-gguf/errata"
	"github.com/physarium/physarium-gguf/gguf"
	"github.com/physarium/physarium-gguf/imatrix"
	"github.com/physarium/physarium-gguf/kernel"
	"github.com/physarium/physarium-gguf/method"
	"github.com/physarium/physarium-gguf/quantize"
)

// Rank is how activation-flow ranks in sparsity mode (method.Rank).
type Rank = method.Rank

// DefaultMethod is the method a run uses when Options.Method is empty:
// activation-flow with an importance matrix, else magnitude-flow.
func DefaultMethod(imatrix string) string {
	if imatrix != "" {
		return method.ActivationFlow
	}
	return method.MagnitudeFlow
}

// resolveMethod returns the run's method and its configuration, or why
// the options do not fit it.
func resolveMethod(ctx context.Context, opts Options, params kernel.Params) (method.Method, method.Config, error) {
	name := opts.Method
	if name == "" {
		name = DefaultMethod(opts.Imatrix)
	}
	m, err := method.Parse(name)
	if err != nil {
		return nil, method.Config{}, fmt.Errorf("prune: %w", err)
	}
	rank, err := method.ParseRank(string(opts.Rank))
	if err != nil {
		return nil, method.Config{}, fmt.Errorf("prune: %w", err)
	}
	if m.NeedsImatrix() && opts.Imatrix == "" {
		return nil, method.Config{}, fmt.Errorf("prune: method %s needs an importance matrix (--imatrix)", name)
	}
	if !opts.Pattern.None() {
		m = method.Patterned(m)
	}
	cfg := method.Config{Params: params, Impl: opts.Impl, Rank: rank, BlockSize: opts.BlockSize, Pattern: opts.Pattern}
	if opts.fullFood {
		if cfg.Calibration, err = openCalibration(ctx, opts); err != nil {
			return nil, method.Config{}, err
		}
		if cfg.Factors, err = method.ResolveFactors(opts.Factors, cfg.Calibration, opts.Reconstruct); err != nil {
			return nil, method.Config{}, fmt.Errorf("prune: %w", err)
		}
	} else if !opts.Factors.None() {
		return nil, method.Config{}, fmt.Errorf("prune: --factors chooses the full food of %s, which reads --calibration (without --imatrix)", method.ActivationFlow)
	}
	if opts.Reconstruct {
		if c, ok := m.(method.Calibrated); ok && c.NeedsCalibration() {
			return nil, method.Config{}, fmt.Errorf("prune: method %s reconstructs the survivors itself; drop --reconstruct", name)
		}
		m = method.WithReconstruction(m, cfg)
	}
	if cfg.Calibration == nil {
		if cfg.Calibration, err = loadCalibration(ctx, m, opts); err != nil {
			return nil, method.Config{}, err
		}
	}
	if err := m.Validate(cfg); err != nil {
		return nil, method.Config{}, fmt.Errorf("prune: %w", err)
	}
	return m, cfg, nil
}

// attachImatrix gives every target its activation scales from m; a target
// without an entry is an error unless fallback, which leaves it on |w|
// (v1 food) and lists it in the report.
func attachImatrix(plans []tensorPlan, m *imatrix.Matrix, fallback bool, r *Report) error {
	for i := range plans {
		p := &plans[i]
		if !p.target {
			continue
		}
		e, ok := m.Entries[p.info.Name]
		if !ok {
			if !fallback {
				return fmt.Errorf("prune: %s has no entry for target tensor %s (use --imatrix-missing v1 to prune it on |w| alone)", m.Path, p.info.Name)
			}
			r.ImatrixMissing = append(r.ImatrixMissing, p.info.Name)
			continue
		}
		a, err := e.Scales(p.rowLen, p.mats)
		if err != nil {
			return fmt.Errorf("prune: %s: tensor %s: %w", m.Path, p.info.Name, err)
		}
		p.act = a
	}
	return nil
}

// describeImatrix is the value of physarium.imatrix.
func describeImatrix(m *imatrix.Matrix, missing []string) string {
	s := m.Describe()
	if len(missing) > 0 {
		s += errata.ImatrixMissingMark + strings.Join(missing, ",")
	}
	return s
}

// prepareTargets lets a method that reads each target whole (a
// method.Preparer) do so before the run, and keeps what it returns.
func prepareTargets(ctx context.Context, f *gguf.File, plans []tensorPlan, m method.Method, cfg method.Config) error {
	pr, ok := m.(method.Preparer)
	if !ok {
		return nil
	}
	var raw []byte
	for i := range plans {
		p := &plans[i]
		if !p.target {
			continue
		}
		t := method.Tensor{Name: p.info.Name, Cols: p.rowLen, Rows: p.matrixRows, Matrices: p.mats}
		t.ReadBand = func(b int, dst []float32) ([]float32, error) {
			row0, rows := p.band(b)
			raw = grow(raw, rows*p.rowBytes)
			dst = grow(dst, rows*p.rowLen)
			off := f.DataOffset + int64(p.info.Offset) + int64(row0)*int64(p.rowBytes)
			if _, err := f.ReadAt(raw, off); err != nil {
				return nil, fmt.Errorf("prune: %s: tensor %s: read rows %d-%d: %w", f.Path, p.info.Name, row0, row0+rows-1, err)
			}
			if err := quantize.Decode(p.info.Type, dst, raw); err != nil {
				return nil, fmt.Errorf("prune: %s: tensor %s: %w", f.Path, p.info.Name, err)
			}
			return dst, nil
		}
		var err error
		if p.state, err = pr.Prepare(ctx, t, cfg); err != nil {
			return err
		}
	}
	return nil
}

// matrixAct returns the activation scales of the matrix that holds global
// row row0 of the tensor, or nil for |w| alone.
func (p *tensorPlan) matrixAct(row0 int) []float32 {
	if p.act == nil {
		return nil
	}
	m := row0 / p.matrixRows
	return p.act[m*p.rowLen : (m+1)*p.rowLen]
}

// loadCalibration loads the calibration file of a method that reads one,
// and refuses one given to a method that does not.
func loadCalibration(ctx context.Context, m method.Method, opts Options) (*method.Calibration, error) {
	c, ok := m.(method.Calibrated)
	needs := ok && c.NeedsCalibration()
	switch {
	case !needs && opts.Calibration != "":
		return nil, fmt.Errorf("prune: method %s reads no calibration file; drop --calibration", m.Name())
	case needs && opts.Calibration == "":
		return nil, fmt.Errorf("prune: method %s needs a calibration file with Gram matrices (--calibration, from calibrate --gram)", m.Name())
	case !needs:
		return nil, nil
	}
	return openCalibration(ctx, opts)
}

// fullFood reports whether a run of method name eats the full v2 food:
// activation-flow given a calibration file and no importance matrix.
func fullFood(name string, opts Options) bool {
	return name == method.ActivationFlow && opts.Calibration != "" && opts.Imatrix == ""
}

// withCalibrationFood returns opts with, for a run that eats the full v2
// food, the calibration file as its importance matrix (a calibration file
// is one): physarium.imatrix then names it, and a target without an
// entry is refused as with --imatrix.
func withCalibrationFood(opts Options) Options {
	name := opts.Method
	if name == "" {
		name = DefaultMethod(opts.Imatrix)
	}
	if fullFood(name, opts) {
		opts.fullFood, opts.Imatrix = true, opts.Calibration
	}
	return opts
}

// openCalibration loads opts.Calibration with the run's damping.
func openCalibration(ctx context.Context, opts Options) (*method.Calibration, error) {
	if opts.BlockSize < 0 {
		return nil, fmt.Errorf("prune: block size %d is negative", opts.BlockSize)
	}
	damp := opts.Damp
	if damp == 0 {
		damp = method.DefaultDamp
	}
	if !(damp > 0) || math.IsInf(damp, 0) {
		return nil, fmt.Errorf("prune: damping %v is not a positive number", opts.Damp)
	}
	f, err := imatrix.LoadCalibration(opts.Calibration)
	if err != nil {
		return nil, fmt.Errorf("prune: %w", err)
	}
	sum, err := fileSHA256(ctx, opts.Calibration)
	if err != nil {
		return nil, err
	}
	cal := method.NewCalibration(filepath.Base(opts.Calibration), f, damp)
	cal.SHA256 = sum
	return cal, nil
}
