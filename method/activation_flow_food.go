package method

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"

	"github.com/physarium/physarium-gguf/imatrix"
	"github.com/physarium/physarium-gguf/obs"
)

// Factors say which factors of the full v2 food (Physarium v2 as its
// research note defines it) a run multiplies, each with its exponent;
// an exponent of 0 leaves the factor out. In ggml's orientation (output
// row o, input column j), from a calibration file's moments of input j
// over its N tokens (sum |x_j|, sum x_j^2) and its Gram G:
//
//	act_j      = sqrt(sum x_j^2 / N)                       (second moment)
//	stab_j     = (sum |x_j| / N) / act_j                   (in (0, 1])
//	contrib_oj = w_oj^2 / [H^-1]_jj,  H = 2 G / N + lambda I (SparseGPT's damping)
//	seqcontrib_oj = w_oj^2 / U_jj^2,  H^-1 = U^T U (U upper triangular)
//
// and the food of weight (o, j) is
//
//	F_oj = |w_oj| * act_j^Act * stab_j^Stab * (1/[H^-1]_jj)^(Contrib/2)
//	       * (1/U_jj^2)^(SeqContrib/2),
//
// the weighted geometric mean of the weight's saliencies |w|*act_j
// (Wanda's), |w|*stab_j, sqrt(contrib_oj) and sqrt(seqcontrib_oj) (OBS
// loss increases on their square-root scale), with weights Act, Stab,
// Contrib and SeqContrib.
// Every factor but |w| depends on the column alone, so the food is
// |w_oj| * phi_j: the mould, every rank and every N:M pattern eat it
// exactly as they eat today's |w| * a_j.
//
// stab_j is the saliency's stability over the calibration tokens: the
// saliency s_t = |w_oj x_j(t)| has mean |w| m1 and second moment w^2 m2
// (m1 = sum|x_j|/N, m2 = sum x_j^2/N), so mean/rms = m1/sqrt(m2), the
// inverse of sqrt(1 + var/mean^2), which does not depend on w. It is 1
// when every token carries the same |x_j| and tends to 0 when a few
// tokens carry it all: it rewards weights whose share of the output is
// there on every token over those that matter only in rare bursts.
//
// contribution is the unsigned OBS term: the increase of the layer-wise
// reconstruction loss when w_oj alone is removed and the other weights
// of its row are optimally moved. seqcontrib is the same increase when
// the weights to the left of j are already fixed and only those to its
// right move: U_jj^2 is the diagonal entry of the inverse of H's
// trailing block from j on. It is the cost a left-to-right OBS sweep
// (SparseGPT's, the adaptive v2 full's) meets when it reaches column j,
// and SparseGPT's own saliency. The research note asks for a signed,
// first-order influence on the loss; that needs gradients, which
// llama.cpp does not provide.
type Factors struct {
	Act, Stab, Contrib, SeqContrib float64
	// NoGram records that the calibration file holds no Gram matrices,
	// so the contribution was left out of the default.
	NoGram bool
}

// DefaultFactors is the full food's default without reconstruction, and
// DefaultReconstructFactors with it (the adaptive v2 full): the factors
// and exponents that the fit/validate split of the calibration text
// chose (README, "### v2 full"; TestV2FullTable measures them).
var (
	DefaultFactors            = Factors{Act: 1, Stab: -1}
	DefaultReconstructFactors = Factors{Act: 0.5, SeqContrib: 1}
)

// None reports whether no factor is chosen: the run eats today's v2
// food |w|*a_i from an importance matrix.
func (f Factors) None() bool {
	return f.Act == 0 && f.Stab == 0 && f.Contrib == 0 && f.SeqContrib == 0
}

// needsGram reports whether a factor reads the inverse Hessian.
func (f Factors) needsGram() bool { return f.Contrib != 0 || f.SeqContrib != 0 }

// factorNames are the names --factors takes, in order.
var factorNames = [4]string{"act", "stab", "contrib", "seqcontrib"}

// exps returns the exponents in factorNames' order.
func (f Factors) exps() [4]float64 { return [4]float64{f.Act, f.Stab, f.Contrib, f.SeqContrib} }

// String is the --factors form: the chosen factors in order, each with
// "^e" when its exponent is not 1, e.g. "act,stab,contrib".
func (f Factors) String() string {
	var parts []string
	for i, e := range f.exps() {
		switch {
		case e == 0:
		case e == 1:
			parts = append(parts, factorNames[i])
		default:
			parts = append(parts, factorNames[i]+"^"+strconv.FormatFloat(e, 'g', -1, 64))
		}
	}
	return strings.Join(parts, ",")
}

// ParseFactors reads --factors: a comma-separated non-empty subset of
// act, stab, contrib and seqcontrib, each optionally with a finite
// non-zero exponent ("act^0.5", "stab^-1"); "" means the default
// (Factors{}, which ResolveFactors resolves).
func ParseFactors(s string) (Factors, error) {
	if s == "" {
		return Factors{}, nil
	}
	var e [4]float64
	for _, part := range strings.Split(s, ",") {
		name, exp, hasExp := strings.Cut(strings.TrimSpace(part), "^")
		v := 1.0
		if hasExp {
			var err error
			if v, err = strconv.ParseFloat(exp, 64); err != nil || v == 0 || math.IsNaN(v) || math.IsInf(v, 0) {
				return Factors{}, fmt.Errorf("factors %q: exponent %q of %s is not a finite non-zero number", s, exp, name)
			}
		}
		i := -1
		for k, n := range factorNames {
			if n == name {
				i = k
			}
		}
		switch {
		case i < 0:
			return Factors{}, fmt.Errorf("factors %q: unknown factor %q (want act, stab, contrib or seqcontrib)", s, name)
		case e[i] != 0:
			return Factors{}, fmt.Errorf("factors %q: %s given twice", s, name)
		}
		e[i] = v
	}
	return Factors{Act: e[0], Stab: e[1], Contrib: e[2], SeqContrib: e[3]}, nil
}

// ResolveFactors returns the factors a run of activation-flow on
// calibration file c uses when asked for asked: when asked is None,
// DefaultFactors, or DefaultReconstructFactors for a run that
// reconstructs; without Gram matrices in c the default drops the
// contribution (and says so), an explicit contrib is refused.
func ResolveFactors(asked Factors, c *Calibration, reconstruct bool) (Factors, error) {
	if c == nil || c.File == nil {
		if !asked.None() {
			return Factors{}, fmt.Errorf("--factors needs the full v2 food, which reads a calibration file (--calibration)")
		}
		return Factors{}, nil
	}
	f := asked
	if f.None() {
		f = DefaultFactors
		if reconstruct {
			f = DefaultReconstructFactors
		}
		if f.needsGram() && !c.File.Info.Gram {
			f = Factors{Act: 1, NoGram: true}
		}
		return f, nil
	}
	if f.needsGram() && !c.File.Info.Gram {
		return Factors{}, fmt.Errorf("%s has no Gram matrices, which the contrib and seqcontrib factors need: calibrate with --gram, or leave them out of --factors", c.Name)
	}
	return f, nil
}

// foodFormula is physarium.importance's statement of the full food.
func (f Factors) foodFormula(damp float64) string {
	var parts []string
	for i, e := range f.exps() {
		if e == 0 {
			continue
		}
		p := [4]string{"act_j", "stab_j", "(1/[H^-1]_jj)", "(1/U_jj^2)"}[i]
		exp := e
		if i >= 2 {
			exp = e / 2
		}
		if exp != 1 {
			p += "^" + strconv.FormatFloat(exp, 'g', -1, 64)
		}
		parts = append(parts, p)
	}
	s := "F=|w|*" + strings.Join(parts, "*") + " (v2 full food, factors " + f.String() + "; act_j=sqrt(sum x_j^2/N)"
	if f.Stab != 0 {
		s += ", stab_j=(sum|x_j|/N)/act_j"
	}
	if f.Contrib != 0 {
		s += ", contrib=w^2/[H^-1]_jj the unsigned OBS loss increase (no gradients from llama.cpp, so no signed term)"
	}
	if f.SeqContrib != 0 {
		s += ", seqcontrib=w^2/U_jj^2 with H^-1=U^T U (U upper) the unsigned OBS loss increase with the weights left of j fixed (no gradients from llama.cpp, so no signed term)"
	}
	if f.needsGram() {
		s += ", H=2G/N+lambda*I, lambda=" + strconv.FormatFloat(damp, 'g', -1, 64) + "*mean(diag H)"
	}
	s += ", N tokens, from the calibration file)"
	if f.NoGram {
		s += "; contribution not computed: the calibration file has no Gram matrices"
	}
	return s
}

// foodState is the Prepare state of a tensor eating the full food: its
// moments, and (with contrib or seqcontrib) the factors of its input;
// phi is built per matrix on first use.
type foodState struct {
	factors Factors
	cal     *Calibration
	mo      *imatrix.Moments
	fac     *calState // nil without contrib and seqcontrib
	once    []sync.Once
	phi     [][]float32
	err     []error
}

// prepareFood finds tensor t's moments in the calibration file and, with
// contrib or seqcontrib, registers its bands with the factors of its input.
func prepareFood(t Tensor, cfg Config) (*foodState, error) {
	c := cfg.Calibration
	mo, ok := c.File.Tensors[t.Name]
	switch {
	case !ok:
		return nil, fmt.Errorf("%s: no calibration entry for target tensor %s", c.Name, t.Name)
	case mo.Width != t.Cols || mo.Mats != t.Matrices:
		return nil, fmt.Errorf("%s: moments of tensor %s are %d wide x %d matrices, the tensor %d x %d", c.Name, t.Name, mo.Width, mo.Mats, t.Cols, t.Matrices)
	}
	st := &foodState{factors: cfg.Factors, cal: c, mo: mo, once: make([]sync.Once, t.Matrices), phi: make([][]float32, t.Matrices), err: make([]error, t.Matrices)}
	if cfg.Factors.needsGram() {
		var err error
		if st.fac, err = c.prepareFactors(t); err != nil {
			return nil, err
		}
	}
	return st, nil
}

// food returns phi of the band's matrix (the food is |w_oj|*phi_j),
// building it on first use, and releases the band's hold on the factor.
func (st *foodState) food(b *Band, matrixRows int) ([]float32, error) {
	m := (b.Row0 - b.MatrixRow0) / matrixRows
	if m < 0 || m >= len(st.phi) {
		return nil, fmt.Errorf("rows %d-%d are outside the tensor's %d matrices", b.Row0, b.Row0+b.Rows-1, len(st.phi))
	}
	st.once[m].Do(func() {
		var d Diagonals
		if st.fac != nil {
			f, err := st.cal.factor(st.fac, b)
			if err == nil && f == nil {
				err = fmt.Errorf("%s: tensor %s, matrix %d: the inverse Hessian factor was released before its bands were decided (prepare every tensor that reads its input first)", st.cal.Name, st.mo.Name, m)
			}
			if err != nil {
				st.err[m] = err
				return
			}
			d = NewDiagonals(f, st.factors)
		}
		st.phi[m], st.err[m] = FoodScales(st.mo, m, d, st.factors)
		if st.err[m] != nil {
			st.err[m] = fmt.Errorf("%s: tensor %s, matrix %d: %w", st.cal.Name, st.mo.Name, m, st.err[m])
		}
	})
	if st.fac != nil {
		st.fac.release(b)
	}
	return st.phi[m], st.err[m]
}

// Diagonals are the inverse-Hessian diagonals the food's factors read:
// Inverse[j] = [H^-1]_jj (contrib), Sweep[j] = U_jj^2 (seqcontrib); a
// factor left out leaves its slice nil.
type Diagonals struct{ Inverse, Sweep []float64 }

// NewDiagonals returns the diagonals of factor f that the factors fac
// read.
func NewDiagonals(f *obs.Factor, fac Factors) Diagonals {
	var d Diagonals
	if fac.Contrib != 0 {
		d.Inverse = InverseDiagonal(f)
	}
	if fac.SeqContrib != 0 {
		d.Sweep = SweepDiagonal(f)
	}
	return d
}

// SweepDiagonal returns U_jj^2 for every column j of the factor (H^-1 =
// U^T U): the [.]_jj entry of the inverse of H's trailing block from j on.
func SweepDiagonal(f *obs.Factor) []float64 {
	n := f.N
	d := make([]float64, n)
	for j := range n {
		u := f.U[j*n+j]
		d[j] = u * u
	}
	return d
}

// InverseDiagonal returns [H^-1]_jj for every column j of the factor:
// H^-1 = U^T U, so [H^-1]_jj = sum_{k<=j} U_kj^2.
func InverseDiagonal(f *obs.Factor) []float64 {
	n := f.N
	d := make([]float64, n)
	for k := range n {
		row := f.U[k*n : (k+1)*n]
		for j := k; j < n; j++ {
			d[j] += row[j] * row[j]
		}
	}
	return d
}

// FoodScales returns phi_j = act_j^Act * stab_j^Stab *
// (1/[H^-1]_jj)^(Contrib/2) * (1/U_jj^2)^(SeqContrib/2) of matrix m of a
// tensor's moments (d holds the diagonals, needed only with contrib and
// seqcontrib). A matrix that saw no
// token, or a channel that was never active, gets act_j = 1 and
// stab_j = 1 (as a_i = 1 for count 0 in today's v2); phi must be finite
// and fit float32.
func FoodScales(mo *imatrix.Moments, m int, d Diagonals, f Factors) ([]float32, error) {
	n := mo.Width
	if f.Contrib != 0 && len(d.Inverse) != n {
		return nil, fmt.Errorf("the contribution needs the %d diagonal entries of H^-1, got %d", n, len(d.Inverse))
	}
	if f.SeqContrib != 0 && len(d.Sweep) != n {
		return nil, fmt.Errorf("the sequential contribution needs the %d diagonal entries U_jj^2, got %d", n, len(d.Sweep))
	}
	count := mo.Count[m]
	sq, abs := mo.Sq[m*n:(m+1)*n], mo.Abs[m*n:(m+1)*n]
	phi := make([]float32, n)
	for j := range n {
		act, stab := 1.0, 1.0
		if count > 0 && sq[j] > 0 {
			act = math.Sqrt(sq[j] / count)
			stab = abs[j] / count / act
		}
		v := 1.0
		if f.Act != 0 {
			v *= math.Pow(act, f.Act)
		}
		if f.Stab != 0 {
			v *= math.Pow(stab, f.Stab)
		}
		if f.Contrib != 0 {
			v *= math.Pow(d.Inverse[j], -f.Contrib/2)
		}
		if f.SeqContrib != 0 {
			v *= math.Pow(d.Sweep[j], -f.SeqContrib/2)
		}
		if !(v >= 0 && v <= math.MaxFloat32) {
			return nil, fmt.Errorf("food scale of column %d is %v (act %v, stab %v): not a finite float32", j, v, act, stab)
		}
		phi[j] = float32(v)
	}
	return phi, nil
}

// Prepare implements Preparer: with the full food (cfg.Factors chosen),
// the tensor's moments and factors; else nothing.
func (activationFlow) Prepare(_ context.Context, t Tensor, cfg Config) (any, error) {
	if cfg.Factors.None() {
		return nil, nil
	}
	st, err := prepareFood(t, cfg)
	if err != nil {
		return nil, err
	}
	return &fullFoodState{food: st, matrixRows: t.Rows}, nil
}

// fullFoodState is what Prepare returns for a tensor eating the full food.
type fullFoodState struct {
	food       *foodState
	matrixRows int
}

// fedBand returns b with its Act replaced by the full food's phi of its
// matrix when the tensor eats the full food, else b.
func fedBand(b *Band) (*Band, error) {
	st, ok := b.State.(*fullFoodState)
	if !ok {
		return b, nil
	}
	phi, err := st.food.food(b, st.matrixRows)
	if err != nil {
		return nil, err
	}
	fed := *b
	fed.Act, fed.State = phi, nil
	return &fed, nil
}

// foodDecider feeds each band the full food, then decides it as today's
// v2 does.
type foodDecider struct{ inner Decider }

// Decide implements Decider.
func (d foodDecider) Decide(b *Band, mask []byte) (Counts, error) {
	fed, err := fedBand(b)
	if err != nil {
		return Counts{}, err
	}
	return d.inner.Decide(fed, mask)
}

// Score implements Scorer with the inner decider's score of the fed band.
func (d foodDecider) Score(b *Band, score []float32) error {
	sc, ok := d.inner.(Scorer)
	if !ok {
		return fmt.Errorf("an N:M pattern ranks v2 by %s only", RankFlowShare)
	}
	fed, err := fedBand(b)
	if err != nil {
		return err
	}
	return sc.Score(fed, score)
}

// calibrationDamp is the relative damping of cfg's calibration file
// (DefaultDamp without one).
func calibrationDamp(cfg Config) float64 {
	if cfg.Calibration == nil || cfg.Calibration.Damp == 0 {
		return DefaultDamp
	}
	return cfg.Calibration.Damp
}
