package method

import (
	"fmt"

	"github.com/physarium/physarium-gguf/kernel"
)

// Wanda is the name of the plain baseline of Sun et al. 2023: the weights
// with the smallest |w| * a_i of each output row die (sparsity mode only;
// needs an importance matrix).
const Wanda = "wanda"

func init() { register(wanda{}) }

// wanda ranks |w|*a_i within each output row; no kernel runs.
type wanda struct{}

func (wanda) Name() string              { return Wanda }
func (wanda) Version() int              { return 0 }
func (wanda) ActivationAware() bool     { return true }
func (wanda) NeedsImatrix() bool        { return true }
func (wanda) Ranks(kernel.Mode) []Rank  { return nil }
func (wanda) Validate(cfg Config) error { return needSparsity(Wanda, cfg) }
func (wanda) Importance(Config) string  { return "|w|*" + activation + " ranked within each output row" }
func (wanda) Rule(cfg Config) Rule      { return sparsityOnly(cfg, RowRule{}) }
func (wanda) Replay(bool) Replay        { return ReplayNone }

func (wanda) NotReplayed(bool, string) string {
	return "the baseline ranks |w|*a_i per output row with a_i from an importance matrix (imatrix) that the audit is not given, and prune exposes no function to recompute its mask; the kill counts are checked against the per-row quotas instead"
}

func (wanda) NewDecider(cfg Config) (Decider, error) {
	return &rowDecider{sparsity: cfg.Params.Sparsity}, nil
}

// activation is the formula of the activation scales a_i.
const activation = "a_i=sqrt(in_sum2_i/count_i) (count 0 -> 1)"

// needSparsity refuses a fixed-rate baseline outside sparsity mode.
func needSparsity(name string, cfg Config) error {
	if cfg.Params.Mode != kernel.Sparsity {
		return fmt.Errorf("the %s baseline needs sparsity mode (--mode sparsity --sparsity S)", name)
	}
	return nil
}

// rowDecider kills, in each output row, the weights with the smallest
// |w|*a_i down to the row's quota.
type rowDecider struct {
	sparsity float64
	score    []float32
	idx      []int32
}

// Decide implements Decider.
func (d *rowDecider) Decide(b *Band, mask []byte) (Counts, error) {
	c, err := startRanked(b, mask)
	if err != nil {
		return c, err
	}
	n := b.Rows * b.Cols
	d.score = grow(d.score, n)
	magnitudes(d.score, b.Values[:n], b.Act, b.Cols)
	d.idx = selectRows(b, d.score, mask, d.sparsity, d.idx)
	return c, nil
}
