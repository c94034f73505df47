package method

import "github.com/physarium/physarium-gguf/kernel"

// MagnitudeFlow is the name of Physarium v1: the mould eats F = |w|.
const MagnitudeFlow = "magnitude-flow"

func init() { register(magnitudeFlow{}) }

// magnitudeFlow is Physarium v1: per 256x256 tile, the kernel fed |w|
// decides (natural mode: where the flow starves; sparsity mode: the
// round(s*n) smallest D_T).
type magnitudeFlow struct{}

func (magnitudeFlow) Name() string                    { return MagnitudeFlow }
func (magnitudeFlow) Version() int                    { return 1 }
func (magnitudeFlow) ActivationAware() bool           { return false }
func (magnitudeFlow) NeedsImatrix() bool              { return false }
func (magnitudeFlow) Ranks(kernel.Mode) []Rank        { return nil }
func (magnitudeFlow) Validate(Config) error           { return nil }
func (magnitudeFlow) Importance(Config) string        { return "|w|" }
func (magnitudeFlow) Replay(bool) Replay              { return ReplayKernel }
func (magnitudeFlow) NotReplayed(bool, string) string { return "" }

func (magnitudeFlow) Rule(cfg Config) Rule { return sparsityOnly(cfg, TileRule{}) }

func (magnitudeFlow) NewDecider(cfg Config) (Decider, error) { return newKernelDecider(cfg) }
