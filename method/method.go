package method

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/physarium/physarium-gguf/kernel"
)

// Method is one way of deciding which weights of a target tensor die.
type Method interface {
	// Name is the value of physarium.method and of --method.
	Name() string
	// Version is physarium.version: 1 and 2 are the mould's versions, 0
	// marks a plain baseline that runs no Physarium kernel.
	Version() int
	// ActivationAware is physarium.activation_aware: whether the method
	// reads activation statistics.
	ActivationAware() bool
	// NeedsImatrix reports whether the method reads an importance matrix.
	NeedsImatrix() bool
	// Ranks lists the ranks the method chooses between in mode, the
	// default first; nil when it has none (Config.Rank is then ignored).
	Ranks(mode kernel.Mode) []Rank
	// Validate refuses a configuration the method cannot run, e.g. a
	// fixed-rate baseline in natural mode.
	Validate(cfg Config) error
	// Importance is the formula physarium.importance states.
	Importance(cfg Config) string
	// Rule is how the method fixes the number of kills from the
	// original's zeros alone, which the audit recounts; nil when nothing
	// fixes it (natural mode).
	Rule(cfg Config) Rule
	// Replay is how the audit can recompute the method's kills from the
	// original alone, for a pruned file or (control) a control twin.
	Replay(control bool) Replay
	// NotReplayed says why a file of the method is not replayed, given
	// its stored importance, or "" for the general reason.
	NotReplayed(control bool, importance string) string
	// NewDecider returns the decider of one worker.
	NewDecider(cfg Config) (Decider, error)
}

// Config is what a run tells a method.
type Config struct {
	Params kernel.Params // the mode, the sparsity and the kernel constants
	Impl   kernel.Impl   // the kernel implementation the deciders run
	Rank   Rank          // one of Ranks(Params.Mode); "" means the first
	// Calibration is the calibration file of a method that reads one
	// (a Calibrated method), else nil.
	Calibration *Calibration
	// BlockSize is the OBS column block of a reconstructing method
	// (obs.DefaultBlockSize when 0).
	BlockSize int
	// Pattern, when not None, asks for an N:M pattern (a Patterned
	// method, or SparseGPT's own groups).
	Pattern Pattern
	// Factors, when not None, make activation-flow eat the full v2 food
	// from Calibration (ResolveFactors).
	Factors Factors
}

// Band is one band of a target tensor: up to errata.TileSize rows of one
// matrix, decoded.
type Band struct {
	Values     []float32 // Rows x Cols, row-major, as stored
	Rows, Cols int
	Row0       int       // the first row within the tensor (matrix after matrix), for messages
	MatrixRow0 int       // the first row within its matrix
	Index      int       // the band's index within the tensor (errata.Bands order, matrix after matrix)
	Act        []float32 // the activation scales a_i of the band's matrix; nil means |w| (v1 food)
	State      any       // what Prepare returned for the tensor, or nil
}

// Counts are the figures a decision adds to its tensor's row.
type Counts struct {
	Processed  uint64 // weights the decision covered (errata's processed)
	ZeroBefore uint64 // of those, the weights that were already zero
	// OutputError and OutputEnergy, for a method that rewrites
	// survivors: the change of the band's layer output on the
	// calibration inputs, sum_o (w_o-v_o)^T G (w_o-v_o), and the dense
	// output's energy sum_o w_o^T G w_o (G the undamped Gram).
	OutputError, OutputEnergy float64
}

// Decider decides bands; each worker has its own, which keeps its
// kernels and scratch.
type Decider interface {
	// Decide sets mask[i] (len Rows*Cols) non-zero for every weight of
	// the band that dies and zero for the others. It never marks a
	// weight that is already zero, and refuses NaN and infinities with an
	// error naming the element.
	Decide(b *Band, mask []byte) (Counts, error)
}

// Tensor is a target tensor as Prepare sees it.
type Tensor struct {
	Name                 string
	Cols, Rows, Matrices int // ne[0], ne[1] and ne[2]*ne[3]
	// ReadBand returns the values of band b (Band.Index), decoded into
	// dst (grown as needed).
	ReadBand func(b int, dst []float32) ([]float32, error)
}

// Preparer is a Method that reads every target tensor whole before its
// bands are decided, e.g. for a threshold over the whole matrix; what it
// returns reaches every Band of the tensor as State.
type Preparer interface {
	Prepare(ctx context.Context, t Tensor, cfg Config) (any, error)
}

// Replay is how the audit recomputes a method's kills.
type Replay int

const (
	// ReplayNone: the kills cannot be recomputed from the original alone.
	ReplayNone Replay = iota
	// ReplayKernel: the kernel run on the original with physarium.params
	// gives the mask.
	ReplayKernel
	// ReplayMagnitude: the per-matrix magnitude threshold at the stored
	// sparsity gives the mask.
	ReplayMagnitude
)

// registry holds every method by name.
var registry = map[string]Method{}

// register adds a method to the registry; each method's file calls it.
func register(m Method) {
	if _, dup := registry[m.Name()]; dup {
		panic("method: " + m.Name() + " registered twice")
	}
	registry[m.Name()] = m
}

// All returns every method: the mould's versions in order, then the
// baselines by name.
func All() []Method {
	ms := make([]Method, 0, len(registry))
	for _, m := range registry {
		ms = append(ms, m)
	}
	slices.SortFunc(ms, func(a, b Method) int {
		ka, kb := a.Version(), b.Version()
		if ka == 0 {
			ka = 1 << 30
		}
		if kb == 0 {
			kb = 1 << 30
		}
		if ka != kb {
			return ka - kb
		}
		return strings.Compare(a.Name(), b.Name())
	})
	return ms
}

// Lookup returns the method of a name.
func Lookup(name string) (Method, bool) {
	m, ok := registry[name]
	return m, ok
}

// Names lists, as "a, b or c", the names of the methods for which keep
// returns true (every method when keep is nil).
func Names(keep func(Method) bool) string {
	var names []string
	for _, m := range All() {
		if keep == nil || keep(m) {
			names = append(names, m.Name())
		}
	}
	return orList(names)
}

// orList joins words as "a, b or c".
func orList(words []string) string {
	if len(words) < 2 {
		return strings.Join(words, "")
	}
	return strings.Join(words[:len(words)-1], ", ") + " or " + words[len(words)-1]
}

// UnknownError is the refusal of a method name that is not registered.
type UnknownError struct{ Name string }

// Error names the method and the registered ones.
func (e *UnknownError) Error() string {
	return fmt.Sprintf("unknown method %q (want %s)", e.Name, Names(nil))
}

// Parse returns the method of a name, or an *UnknownError.
func Parse(name string) (Method, error) {
	if m, ok := Lookup(name); ok {
		return m, nil
	}
	return nil, &UnknownError{name}
}

// RankOf returns the rank cfg chooses for m: Config.Rank, or the first of
// m's ranks in cfg's mode; "" when m has none.
func RankOf(m Method, cfg Config) Rank {
	ranks := m.Ranks(cfg.Params.Mode)
	if len(ranks) == 0 {
		return ""
	}
	if cfg.Rank != "" {
		return cfg.Rank
	}
	return ranks[0]
}
