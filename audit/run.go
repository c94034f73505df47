package audit

import (
	"context"
	"fmt"
	"math"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"

	"github.com/physarium/physarium-gguf/errata"
	"github.com/physarium/physarium-gguf/gguf"
	"github.com/physarium/physarium-gguf/imatrix"
	"github.com/physarium/physarium-gguf/kernel"
	"github.com/physarium/physarium-gguf/method"
	"github.com/physarium/physarium-gguf/quantize"
)

// auditor carries one audit's state.
type auditor struct {
	ctx              context.Context
	file, orig, twin *gguf.File // the file, the original (--against), a control's pruned twin (--pruned)
	// origShards are the original's files: one, or the shards of a split
	// original (orig views them as one).
	origShards []*gguf.File
	// twinShards are the pruned twin's files, likewise.
	twinShards []*gguf.File
	chunk      int
	r          *Report
	// storedKilled holds physarium.tensors.killed by tensor name.
	storedKilled map[string]uint64

	control  bool           // the file is a control twin
	noReplay bool           // Options.NoReplay
	k        *kernel.Kernel // the replay's kernel, nil when not replaying
	// magReplay replays the magnitude baseline (no kernel).
	magReplay bool
	// calibration is Options.Calibration, loaded; food replays the full
	// v2 food from it.
	calibration *method.Calibration
	food        *foodReplay
	// imat is the importance matrix prune's re-encoding read
	// (Options.Imatrix), or nil.
	imat *imatrix.Matrix
	// paramsErr says why physarium.params is unusable; params holds it
	// parsed when paramsErr is nil and hasParams.
	paramsErr error
	params    kernel.Params
	hasParams bool
	// nonfinite counts the NaN and infinite values of the tensors that
	// are not targets (countNonfinite).
	nonfinite uint64
	// labels is what the stored method labels say (checkMethod).
	labels methodInfo
	bufs   passBuffers
	// reconstructed is physarium.reconstructed: the method also changed
	// survivors, so changed weights and blocks without a kill are allowed.
	reconstructed bool
	// retype is physarium.retype when retyped: every target was written in
	// that type (prune --retype).
	retype  gguf.Type
	retyped bool
	// moved sums, over F32/F16/BF16 targets, the survivors whose value
	// changed (against the original).
	moved uint64
	// calPath is Options.Calibration; cal replays a reconstructed file
	// from it, nil when not replaying.
	calPath string
	cal     *calReplay
}

var projection = regexp.MustCompile(errata.DefaultTargetPattern)

func (a *auditor) basis() string {
	if a.orig != nil {
		return BasisAgainst
	}
	return BasisFile
}

// run audits the file: what kind of file it is, every target tensor, the
// non-targets and the structure against the original, and, for a pruned
// file, every stored figure.
func (a *auditor) run() error {
	r := a.r
	for _, t := range a.file.Tensors {
		r.Weights.Model += t.Elements()
	}
	if err := a.classify(); err != nil {
		return err
	}
	if a.calPath != "" && !r.Pruned {
		return fmt.Errorf("audit: %s carries no physarium.* keys: --calibration replays a pruned file whose survivors moved", a.file.Path)
	}
	if r.Pruned {
		if err := a.prepareReplay(); err != nil {
			return err
		}
		defer a.cal.close()
	}
	names := a.targetList()
	if r.Pruned {
		a.readRetype()
	}
	if a.orig != nil {
		a.compareStructure()
		a.compareKVs()
	}
	targets := map[string]bool{}
	for _, name := range names {
		t, ok := a.file.Tensor(name)
		if !ok || targets[name] {
			continue // reported by storedNames
		}
		targets[name] = true
		ta, err := a.auditTarget(t)
		if err != nil {
			return err
		}
		r.Tensors = append(r.Tensors, ta)
	}
	if a.orig != nil {
		if err := a.compareNonTargets(targets); err != nil {
			return err
		}
	}
	a.totals()
	if !r.Pruned {
		return nil
	}
	if err := a.countNonfinite(targets); err != nil {
		return err
	}
	a.checkKeys()
	if a.twin != nil {
		a.checkPrunedTwin()
	}
	if a.orig != nil {
		return a.checkSource()
	}
	return nil
}

// classify says whether the file is a pruned file (it carries physarium.*
// keys) and a control twin, and hashes the pruned twin of a control.
func (a *auditor) classify() error {
	r, f := a.r, a.file
	_, r.Pruned = f.KV(errata.KeyPrefix + errata.KeyVersion)
	if !r.Pruned {
		for _, kv := range f.KVs {
			if strings.HasPrefix(kv.Key, errata.KeyPrefix) {
				r.Pruned = true // some keys but no version: audited (and refuted) as a pruned file
				break
			}
		}
	}
	if kv, ok := f.KV(errata.KeyPrefix + errata.KeyControl); ok {
		v, isBool := kv.Value.AsBool()
		a.control = isBool && v
		r.Control = a.control
		if !a.control {
			r.disagree(errata.KeyPrefix+errata.KeyControl, "", valueText(kv.Value), "BOOL true (prune writes the key only into control twins)", BasisFile)
		}
	}
	if a.twin == nil {
		return nil
	}
	if !a.control {
		return fmt.Errorf("audit: %s is no control twin (no physarium.control = true): a pruned twin (--pruned) belongs to a control twin", f.Path)
	}
	sums, err := shardSHA256s(a.ctx, a.twinShards)
	if err != nil {
		return err
	}
	r.PrunedTwinSHA256 = strings.Join(sums, errata.SourceSeparator)
	return nil
}

// targetList returns the names of the tensors to audit as targets: those
// physarium.tensors.name lists in a pruned file, else every projection the
// default pattern matches.
func (a *auditor) targetList() []string {
	if a.r.Pruned {
		return a.storedNames()
	}
	var names []string
	for _, t := range a.file.Tensors {
		if len(t.Shape) >= 2 && projection.MatchString(t.Name) {
			names = append(names, t.Name)
		}
	}
	return names
}

// sameTensor returns the tensor of g named like t when it has t's type and
// shape.
func sameTensor(g *gguf.File, t gguf.TensorInfo) (*gguf.TensorInfo, bool) {
	x, ok := g.Tensor(t.Name)
	if !ok || x.Type != t.Type || !reflect.DeepEqual(x.Shape, t.Shape) {
		return nil, false
	}
	return &x, true
}

// auditTarget scans one target tensor and, with the original, walks it
// band by band (the replay, a control's blocks).
func (a *auditor) auditTarget(t gguf.TensorInfo) (TensorAudit, error) {
	var orig *gguf.TensorInfo
	if a.orig != nil {
		orig, _ = sameTensor(a.orig, t)
	}
	if ot := a.retypedOriginal(t); ot != nil {
		return a.auditRetyped(t, *ot)
	}
	s, err := scanTarget(a.ctx, a.file, a.orig, t, orig, a.chunk)
	if err != nil {
		return TensorAudit{}, err
	}
	ta := a.tensorAudit(t, s)
	if orig == nil || a.k == nil && !a.magReplay && a.cal == nil && a.food == nil && !a.control {
		return ta, nil
	}
	if a.food != nil {
		if err := a.food.startTensor(a, t); err != nil {
			return TensorAudit{}, err
		}
	}
	var twin *gguf.TensorInfo
	if a.twin != nil {
		var ok bool
		if twin, ok = sameTensor(a.twin, t); !ok {
			a.r.disagree(errata.KeyPrefix+errata.KeyControlOf, t.Name, "a target of the control twin", "missing from the pruned twin, or of another type or shape", BasisAgainst)
		}
	}
	walked, err := a.walkTarget(t, *orig, twin, a.k)
	if err != nil {
		return TensorAudit{}, err
	}
	ta.pass, ta.Replay, ta.Control = walked, walked.replay, walked.control
	return ta, nil
}

// totals adds the targets' figures up: the denominators, the coverage and
// the zeros.
func (a *auditor) totals() {
	r := a.r
	r.TargetTensors = len(r.Tensors)
	var zeros, zeroBefore, zeroed uint64
	for _, t := range r.Tensors {
		r.Weights.Target += t.Weights
		r.Weights.Processed += t.Coverage.Numerator
		zeros += t.Zeros.Numerator
		zeroBefore += t.scan.zeroBefore
		zeroed += t.scan.zeroed
	}
	r.Coverage = errata.NewRate(r.Weights.Processed, r.Weights.Target, errata.OfTarget)
	r.Zeros = errata.NewRate(zeros, r.Weights.Target, errata.OfTarget)
	r.ZerosOfModel = errata.NewRate(zeros, r.Weights.Model, errata.OfModel)
	if a.orig != nil {
		zb, zd := errata.NewRate(zeroBefore, r.Weights.Target, errata.OfTarget), errata.NewRate(zeroed, r.Weights.Target, errata.OfTarget)
		r.ZeroBefore, r.Zeroed = &zb, &zd
	}
}

// zeroCode names the zero behaviour of a type.
func zeroCode(t gguf.Type) string {
	z, ok := quantize.Zero(t)
	switch {
	case !ok:
		return "unknown"
	case z == quantize.ZeroExact:
		return "exact"
	case z == quantize.ZeroPreserving:
		return "preserving"
	}
	return "none"
}

// singleWeight reports whether every weight of t is its own block (F32,
// F16, BF16): re-encoding a kill then touches no other weight.
func singleWeight(t gguf.Type) bool {
	ti, ok := t.Info()
	return ok && ti.BlockSize == 1
}

func (a *auditor) tensorAudit(t gguf.TensorInfo, s scan) TensorAudit {
	n := t.Elements()
	ta := TensorAudit{
		Name: t.Name, Type: t.Type.String(), Shape: t.Shape, ZeroCode: zeroCode(t.Type),
		Weights: n, Coverage: errata.NewRate(errata.Tiled(t.Shape), n, "tensor"),
		Zeros: errata.NewRate(s.zeros, n, "tensor"), Decoded: s.decoded, scan: s,
	}
	if s.against {
		zb := errata.NewRate(s.zeroBefore, n, "tensor")
		zd := errata.NewRate(s.zeroed, n, "tensor")
		cw := errata.NewRate(s.changedWeights, n, "tensor")
		cb := errata.NewRate(s.changedBlocks, s.blocks, "tensor block")
		ta.ZeroBefore, ta.Zeroed, ta.ChangedWeights, ta.ChangedBlocks = &zb, &zd, &cw, &cb
	}
	return ta
}

// compareStructure checks that the file has the original's tensors, in the
// same order, with the same types and shapes.
func (a *auditor) compareStructure() {
	f, o := a.file, a.orig
	before := len(a.r.Disagreements)
	for _, ot := range o.Tensors {
		t, ok := f.Tensor(ot.Name)
		switch {
		case !ok:
			a.r.disagree("tensor", ot.Name, "missing from the file", fmt.Sprintf("present in the original (%s %s)", ot.Type, shape(ot.Shape)), BasisAgainst)
		case t.Type != ot.Type && !a.retypedTarget(t):
			a.r.disagree("tensor.type", ot.Name, t.Type.String(), ot.Type.String()+" in the original", BasisAgainst)
		case !reflect.DeepEqual(t.Shape, ot.Shape):
			a.r.disagree("tensor.shape", ot.Name, shape(t.Shape), shape(ot.Shape)+" in the original", BasisAgainst)
		}
	}
	for _, t := range f.Tensors {
		if _, ok := o.Tensor(t.Name); !ok {
			a.r.disagree("tensor", t.Name, fmt.Sprintf("present in the file (%s %s)", t.Type, shape(t.Shape)), "not in the original", BasisAgainst)
		}
	}
	if len(f.Tensors) == len(o.Tensors) {
		for i := range f.Tensors {
			if f.Tensors[i].Name != o.Tensors[i].Name {
				a.r.disagree("tensor.order", f.Tensors[i].Name, fmt.Sprintf("tensor %d", i), fmt.Sprintf("tensor %d of the original is %s", i, o.Tensors[i].Name), BasisAgainst)
				break
			}
		}
	}
	a.r.check(Check{Key: "tensors", Stored: fmt.Sprintf("%d tensors", len(f.Tensors)), Recounted: fmt.Sprintf("%d in the original", len(o.Tensors)), Status: statusOf(len(a.r.Disagreements) == before), Basis: BasisAgainst, Note: "names, order, types and shapes"})
}

// compareKVs checks that every key outside physarium.* is the original's,
// in the same order, with the same type and value.
func (a *auditor) compareKVs() {
	plain := func(kvs []gguf.KV) []gguf.KV {
		var out []gguf.KV
		for _, kv := range kvs {
			// The split keys describe the files, not the model: a split
			// original and its pruned twin of one piece hold the same model.
			if !strings.HasPrefix(kv.Key, errata.KeyPrefix) && !strings.HasPrefix(kv.Key, gguf.SplitPrefix) {
				out = append(out, kv)
			}
		}
		return out
	}
	fk, ok := plain(a.file.KVs), plain(a.orig.KVs)
	before := len(a.r.Disagreements)
	for _, kv := range ok {
		got, present := a.file.KV(kv.Key)
		switch {
		case !present:
			a.r.disagree(kv.Key, "", "missing", valueText(kv.Value)+" in the original", BasisAgainst)
		case !valueEqual(got.Value, kv.Value):
			a.r.disagree(kv.Key, "", valueText(got.Value), valueText(kv.Value)+" in the original", BasisAgainst)
		}
	}
	for _, kv := range fk {
		if _, present := a.orig.KV(kv.Key); !present {
			a.r.disagree(kv.Key, "", valueText(kv.Value), "not in the original", BasisAgainst)
		}
	}
	if len(a.r.Disagreements) == before && len(fk) == len(ok) {
		for i := range fk {
			if fk[i].Key != ok[i].Key {
				a.r.disagree(fk[i].Key, "", fmt.Sprintf("key %d (not counting physarium.*)", i), fmt.Sprintf("key %d of the original is %s", i, ok[i].Key), BasisAgainst)
				break
			}
		}
	}
	a.r.check(Check{Key: "metadata", Stored: fmt.Sprintf("%d keys outside physarium.*", len(fk)), Recounted: fmt.Sprintf("%d in the original", len(ok)), Status: statusOf(len(a.r.Disagreements) == before), Basis: BasisAgainst, Note: "order, type and value of every key outside physarium.* and split.*"})
}

// compareNonTargets checks every tensor that is not a target byte for byte.
func (a *auditor) compareNonTargets(targets map[string]bool) error {
	same, n := true, 0
	for _, t := range a.file.Tensors {
		ot, ok := a.orig.Tensor(t.Name)
		if targets[t.Name] || !ok || ot.Type != t.Type || !reflect.DeepEqual(ot.Shape, t.Shape) {
			continue
		}
		n++
		off, err := sameBytes(a.ctx, a.file, a.orig, t, ot)
		if err != nil {
			return err
		}
		if off >= 0 {
			same = false
			a.r.disagree("tensor.data", t.Name, fmt.Sprintf("byte %d differs", off), "not a target: must equal the original byte for byte", BasisAgainst)
		}
	}
	a.r.check(Check{Key: "tensor.data", Stored: fmt.Sprintf("%d non-target tensors", n), Recounted: "compared byte for byte with the original", Status: statusOf(same), Basis: BasisAgainst})
	return nil
}

func statusOf(ok bool) string {
	if ok {
		return StatusExact
	}
	return StatusDisagrees
}

func shape(s []uint64) string {
	p := make([]string, len(s))
	for i, n := range s {
		p[i] = fmt.Sprint(n)
	}
	return "[" + strings.Join(p, " ") + "]"
}

// valueEqual compares two metadata values by type and value (floats by
// their bits, so NaN equals itself and -0 differs from +0).
func valueEqual(x, y gguf.Value) bool {
	if x.Type != y.Type || x.Elem != y.Elem {
		return false
	}
	switch a := x.Data.(type) {
	case float32:
		b, ok := y.Data.(float32)
		return ok && math.Float32bits(a) == math.Float32bits(b)
	case float64:
		b, ok := y.Data.(float64)
		return ok && math.Float64bits(a) == math.Float64bits(b)
	case []float32:
		b, ok := y.Data.([]float32)
		if !ok || len(a) != len(b) {
			return false
		}
		for i := range a {
			if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
				return false
			}
		}
		return true
	case []float64:
		b, ok := y.Data.([]float64)
		if !ok || len(a) != len(b) {
			return false
		}
		for i := range a {
			if math.Float64bits(a[i]) != math.Float64bits(b[i]) {
				return false
			}
		}
		return true
	}
	return reflect.DeepEqual(x.Data, y.Data)
}

// valueText is a short description of a value for messages.
func valueText(v gguf.Value) string {
	var s string
	if v.Type == gguf.TypeArray {
		s = fmt.Sprintf("ARRAY of %s[%d] %v", v.Elem, v.Len(), v.Data)
	} else if str, ok := v.AsString(); ok {
		s = fmt.Sprintf("STRING %q", str)
	} else {
		s = fmt.Sprintf("%s %v", v.Type, v.Data)
	}
	if len(s) > 120 {
		s = s[:117] + "..."
	}
	return s
}

// checkSource checks that physarium.source names the original's sha256
// (of every shard of a split original).
func (a *auditor) checkSource() error {
	sums, err := shardSHA256s(a.ctx, a.origShards)
	if err != nil {
		return err
	}
	names := shardNames(a.origShards)
	a.r.AgainstSHA256 = strings.Join(sums, errata.SourceSeparator)
	key := errata.KeyPrefix + "source"
	kv, ok := a.file.KV(key)
	if !ok {
		return nil // reported as a missing key
	}
	s, _ := kv.Value.AsString()
	want := errata.Source(names, sums)
	// The stored names and hashes, shard by shard.
	parts := strings.Split(s, errata.SourceSeparator)
	sameSums, sameNames := len(parts) == len(sums), true
	for i := 0; sameSums && i < len(parts); i++ {
		name, hash, found := strings.Cut(parts[i], " sha256:")
		sameSums = found && hash == sums[i]
		sameNames = sameNames && name == names[i]
	}
	switch {
	case !sameSums:
		a.r.disagree(key, "", s, want, BasisAgainst)
	case !sameNames:
		a.r.check(Check{Key: key, Stored: s, Recounted: want, Status: StatusExact, Basis: BasisAgainst, Note: "the sha256 matches; the original has been renamed since"})
	default:
		a.r.check(Check{Key: key, Stored: s, Recounted: want, Status: StatusExact, Basis: BasisAgainst})
	}
	return nil
}

// prepareReplay parses physarium.params and sets up the kernel for the
// replay of a version-1 file, or the method for the replay of a
// reconstructed file from its calibration file, when it can run, or says
// why it cannot.
func (a *auditor) prepareReplay() error {
	ri := &a.r.Replay
	version, _ := a.u64("version")
	name, _ := a.str("method")
	imp, _ := a.str("importance")
	params, hasParams := a.str("params")
	mode, _ := a.str("mode")
	replay := a.replayKind(version, name, imp, mode)
	a.reconstructed = a.flag(errata.KeyReconstructed)
	if hasParams {
		p, err := ParseParams(params, mode)
		switch {
		case err != nil:
			a.paramsErr = err
		case p.String() != params:
			a.paramsErr = fmt.Errorf("not in the canonical form %q", p.String())
		default:
			a.params, a.hasParams = p, true
		}
	}
	foodWhy, food := "", false
	if !a.noReplay && !a.hasKey(errata.KeyPattern) && !a.reconstructed && hasParams && a.paramsErr == nil {
		foodWhy, food = a.prepareFoodReplay(name, imp)
	}
	if a.calPath != "" && !a.reconstructed && !food {
		return fmt.Errorf("audit: %s: --calibration replays a file whose survivors moved (physarium.reconstructed = true) or an activation-flow file that ate the full v2 food; this file is neither", a.file.Path)
	}
	switch {
	case a.noReplay:
		ri.Reason = "skipped (--no-replay)"
	case a.calPath != "" && a.reconstructed:
		why, err := a.prepareCalReplay(a.calPath, name)
		if err != nil {
			return err
		}
		if why != "" {
			ri.Reason = fmt.Sprintf("not replayed from the calibration file: physarium.version %d, method %q: %s", version, name, why)
			return nil
		}
		ri.Ran, ri.Params = true, params
		ri.Kernel = fmt.Sprintf("method %s replayed band by band with the Gram matrices of %s (%s)", a.cal.m.Name(), filepath.Base(a.calPath), a.cal.cfg.Calibration.Parameters(method.BlockSizeOf(a.cal.cfg)))
	case a.hasKey(errata.KeyPattern):
		ri.Reason = fmt.Sprintf("not verifiable by replay: physarium.version %d, method %q: the N:M pattern (physarium.pattern) chose the kills within each group, which the replay does not recompute; every group's zeros and the counts are checked instead", version, name)
	case a.reconstructed:
		ri.Reason = calibrationReason(version, name)
	case food && foodWhy != "":
		ri.Reason = foodWhy
	case food && a.orig == nil:
		a.food, ri.Reason = nil, "needs the original (--against)"
	case food:
		ri.Ran, ri.Kernel, ri.Params = true, "activation-flow's own deciders, the full v2 food from --calibration "+a.calibration.Name, params
	case replay == method.ReplayNone:
		ri.Reason = notReplayable(version, name, imp, a.control)
	case !hasParams:
		ri.Reason = "physarium.params missing"
	case a.paramsErr != nil:
		ri.Reason = "physarium.params unusable: " + a.paramsErr.Error()
	case a.orig == nil:
		ri.Reason = "needs the original (--against)"
	case replay == method.ReplayMagnitude:
		a.magReplay = true
		ri.Ran, ri.Kernel, ri.Params = true, "none (magnitude baseline: per matrix, the round(s*n) smallest |w|, zeros first, ties by index)", params
	default:
		k, err := kernel.New(kernel.Auto, a.params)
		if err != nil {
			ri.Reason = err.Error()
			return nil
		}
		a.k = k
		ri.Ran, ri.Kernel, ri.Params = true, k.Impl().String(), params
	}
	return nil
}

// replayKind is how the file's kills can be replayed: the stored method's
// Replay, when the stored version, importance and mode are what prune
// writes for it.
func (a *auditor) replayKind(version uint64, name, imp, mode string) method.Replay {
	m, ok := method.Lookup(name)
	if !ok {
		return method.ReplayNone
	}
	cfg := method.Config{}
	if mode == "sparsity" {
		cfg.Params.Mode = kernel.Sparsity
	}
	if version != uint64(m.Version()) || imp != m.Importance(cfg) || m.Validate(cfg) != nil {
		return method.ReplayNone
	}
	return m.Replay(a.control)
}

// notReplayable says why a file is not verifiable by replay.
func notReplayable(version uint64, name, imp string, control bool) string {
	if m, ok := method.Lookup(name); ok {
		if why := m.NotReplayed(control, imp); why != "" {
			return fmt.Sprintf("not verifiable by replay: physarium.version %d, method %q: ", version, name) + why
		}
	}
	return fmt.Sprintf("not verifiable by replay: physarium.version %d, method %q, importance %q: only version 1 magnitude-flow (|w|) is replayed; other methods need inputs the audit is not given (an imatrix)", version, name, imp)
}

// hasKey reports whether the file has physarium.<name>.
func (a *auditor) hasKey(name string) bool {
	_, ok := a.file.KV(errata.KeyPrefix + name)
	return ok
}

// shardSHA256s returns the sha256 of every file of a model, in order.
func shardSHA256s(ctx context.Context, shards []*gguf.File) ([]string, error) {
	sums := make([]string, len(shards))
	for i, s := range shards {
		var err error
		if sums[i], err = fileSHA256(ctx, s); err != nil {
			return nil, err
		}
	}
	return sums, nil
}

// shardNames returns the base name of every file of a model, in order.
func shardNames(shards []*gguf.File) []string {
	names := make([]string, len(shards))
	for i, s := range shards {
		names[i] = filepath.Base(s.Path)
	}
	return names
}
