package prune

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/physarium/physarium-gguf/errata"
	"github.com/physarium/physarium-gguf/gguf"
)

// Split says how the output is split into shards. The zero value keeps the
// input's tensor-to-shard assignment (one file for an input of one file),
// as llama-quantize --keep-split does.
type Split struct {
	// None writes one file whatever the input.
	None bool
	// MaxTensors, when over 0, puts at most that many tensors in a shard
	// (llama-gguf-split --split-max-tensors).
	MaxTensors int
	// MaxBytes, when over 0, starts a new shard before a tensor that would
	// take the shard's tensor data (each tensor padded to 32 bytes) over
	// MaxBytes (llama-gguf-split --split-max-size); a tensor larger than
	// MaxBytes gets a shard of its own.
	MaxBytes int64
}

// check refuses contradictory choices.
func (s Split) check() error {
	n := 0
	for _, set := range []bool{s.None, s.MaxTensors > 0, s.MaxBytes > 0} {
		if set {
			n++
		}
	}
	if n > 1 {
		return errors.New("prune: choose one of --no-split, --split-max-tensors and --split-max-size")
	}
	if s.MaxTensors < 0 || s.MaxBytes < 0 {
		return errors.New("prune: a negative split limit")
	}
	return nil
}

// assign returns the output shard of every tensor of m, in order, and the
// number of shards.
func (s Split) assign(m *gguf.Model) ([]int, int) {
	ts := m.View.Tensors
	out := make([]int, len(ts))
	switch {
	case s.None:
	case s.MaxTensors > 0:
		for i := range out {
			out[i] = i / s.MaxTensors
		}
	case s.MaxBytes > 0:
		shard, cur, in := 0, int64(0), 0
		for i, t := range ts {
			n := int64((t.Bytes() + gguf.DefaultAlignment - 1) &^ (gguf.DefaultAlignment - 1))
			if in > 0 && cur+n > s.MaxBytes {
				shard, cur, in = shard+1, 0, 0
			}
			out[i] = shard
			cur += n
			in++
		}
	default:
		copy(out, m.ShardOf)
	}
	if len(out) == 0 {
		return out, 1
	}
	return out, out[len(out)-1] + 1
}

// outputPaths returns the paths of count output shards named from out by
// llama.cpp's rule: out itself for one; for more, out's prefix (out less
// ".gguf", or less "-00001-of-NNNNN.gguf" when out is already the first
// shard's name, NNNNN then being count) followed by "-NNNNN-of-MMMMM.gguf".
func outputPaths(out string, count int) ([]string, error) {
	if count == 1 {
		return []string{out}, nil
	}
	if count > gguf.MaxShards {
		return nil, fmt.Errorf("prune: %s: %d shards, over llama.cpp's %d", out, count, gguf.MaxShards)
	}
	prefix, ok := strings.CutSuffix(out, ".gguf")
	if p, no, n, isShard := gguf.SplitName(out); isShard {
		if no != 0 || n != count {
			return nil, fmt.Errorf("prune: output %s names shard %d of %d, but the output has %d shards: name it %s or %s", out, no+1, n, count, filepath.Base(p)+".gguf", filepath.Base(gguf.SplitPath(p, 0, count)))
		}
		prefix, ok = p, true
	}
	if !ok || prefix == "" || strings.HasSuffix(prefix, string(filepath.Separator)) {
		return nil, fmt.Errorf("prune: output %s: a split output is named by llama.cpp's rule from a path ending in .gguf", out)
	}
	paths := make([]string, count)
	for i := range paths {
		paths[i] = gguf.SplitPath(prefix, i, count)
	}
	return paths, nil
}

// shardHashes computes the sha256 of every shard of a split input, one
// shard after the other, in a pass of its own beside the surgery.
func shardHashes(ctx context.Context, m *gguf.Model) <-chan shardsResult {
	ch := make(chan shardsResult, 1)
	go func() {
		var res shardsResult
		var buf []byte // one buffer for every shard
		res.err = timed(&res.cpu, func() error {
			for _, s := range m.Shards {
				ih := newInputHash(s)
				ih.buf = buf
				sum, err := ih.sum(ctx)
				buf = ih.buf
				if err != nil {
					return err
				}
				res.sums = append(res.sums, sum)
			}
			return nil
		})
		ch <- res
	}()
	return ch
}

type shardsResult struct {
	sums []string
	cpu  time.Duration // the CPU time of the pass
	err  error
}

// outputLayout is where each tensor of the input goes in the output.
type outputLayout struct {
	paths   []string // the output's shards (one path: a file of its own)
	control []string // the control twin's shards, split as the output
	shard   []int    // the output shard of every tensor
	index   []int    // its index among its shard's tensors
	tensors int      // tensors in the model
	// types, when set, is the output type of every tensor (--retype).
	types []gguf.Type
}

// planOutput lays the output out as opts.Split says, names its shards
// from out and checks them against every shard of the input.
func planOutput(m *gguf.Model, out string, opts Options) (*outputLayout, error) {
	shard, count := opts.Split.assign(m)
	l := &outputLayout{shard: shard, index: make([]int, len(shard)), tensors: len(shard), paths: []string{out}}
	seen := make([]int, count)
	for i, s := range shard {
		l.index[i] = seen[s]
		seen[s]++
	}
	if opts.DryRun {
		return l, nil
	}
	var err error
	if l.paths, err = outputPaths(out, count); err != nil {
		return nil, err
	}
	if opts.Control != "" {
		// The control twin is split the same way, named from its own path.
		if l.control, err = outputPaths(opts.Control, count); err != nil {
			return nil, err
		}
		for _, c := range l.control {
			for _, p := range l.paths {
				if samePath(c, p) {
					return nil, fmt.Errorf("prune: the control twin's shard %s is a shard of the output", c)
				}
			}
		}
	}
	if !m.Split() && count == 1 {
		return l, nil // checkOutputs checked out and the control against the input
	}
	outs := append(slices.Clone(l.paths), l.control...)
	for _, s := range m.Shards {
		for _, p := range outs {
			if err := checkPaths(s.Path, p, opts.Overwrite); err != nil {
				return nil, err
			}
		}
	}
	return l, nil
}

// header is the header of output shard no: for the first (or only) shard
// the input's KVs less any physarium.* keys of an earlier run (which keys
// replace) and less the input's split keys, then the output's split keys
// when it has more than one shard, then keys; for a later shard the split
// keys alone (and the input's alignment), as llama-gguf-split writes them.
func (l *outputLayout) header(f *gguf.File, keys []gguf.KV, no int) gguf.Header {
	h := gguf.Header{Version: f.Version}
	count := len(l.paths)
	for _, kv := range f.KVs {
		switch {
		case strings.HasPrefix(kv.Key, errata.KeyPrefix), strings.HasPrefix(kv.Key, gguf.SplitPrefix):
		case no == 0, kv.Key == gguf.AlignmentKey:
			h.KVs = append(h.KVs, kv)
		}
	}
	if count > 1 {
		h.KVs = append(h.KVs, gguf.ShardKeys(no, count, l.tensors)...)
	}
	h.KVs = append(h.KVs, keys...)
	for i, t := range f.Tensors {
		if l.types != nil {
			t.Type = l.types[i]
		}
		if l.shard[i] == no {
			h.Tensors = append(h.Tensors, t)
		}
	}
	return h
}

// sinks are the writers of a run: the output's shards, and the control
// twin's.
type sinks struct {
	layout *outputLayout
	sets   [][]*gguf.Writer // [0]: the output's shards, [1]: the control twin
	cur    int              // the output shard being written (see reach)
}

// writer returns the writer of tensor ti in set i.
func (s *sinks) writer(i, ti int) *gguf.Writer {
	if len(s.sets[i]) == 1 {
		return s.sets[i][0]
	}
	return s.sets[i][s.layout.shard[ti]]
}

// count is the number of outputs: 0 for a dry run, 2 with a control twin.
func (s *sinks) count() int {
	if s == nil {
		return 0
	}
	return len(s.sets)
}

// reach is called with each tensor in order before its data are written:
// it completes the output shard before the tensor's (all its tensors are
// written), and the control twin's, so that a finished shard holds no
// buffer while the others are written. The first shard, whose header comes
// last, stays open.
func (s *sinks) reach(ti int) error {
	if s == nil {
		return nil
	}
	sh := s.layout.shard[ti]
	if sh == s.cur {
		return nil
	}
	if s.cur > 0 {
		for _, set := range s.sets {
			if err := set[s.cur].Close(); err != nil {
				return fmt.Errorf("prune: %w", err)
			}
		}
	}
	s.cur = sh
	return nil
}

// abort removes the outputs that were not committed.
func (s *sinks) abort() {
	if s == nil {
		return
	}
	for _, set := range s.sets {
		for _, w := range set {
			w.Abort()
		}
	}
}

// closeAll completes the shards of set: the first with the header of
// keys, the others (if not done yet) as they are.
func (s *sinks) closeAll(f *gguf.File, set []*gguf.Writer, keys []gguf.KV) error {
	for no, w := range set {
		var err error
		if no == 0 {
			err = w.CloseHeader(s.layout.header(f, keys, 0))
		} else {
			err = w.Close()
		}
		if err != nil {
			return fmt.Errorf("prune: %w", err)
		}
	}
	return nil
}

// controlTwin names the control twin of the committed output: its first
// shard (and every shard when split), and the output's files with their
// sha256, every shard's for a split output.
func (l *outputLayout) controlTwin(ctx context.Context) (*ControlTwin, error) {
	sums := make([]string, len(l.paths))
	for i, p := range l.paths {
		var err error
		if sums[i], err = fileSHA256(ctx, p); err != nil {
			return nil, err
		}
	}
	return l.newControlTwin(sums), nil
}

// newControlTwin names the control twin of the output whose files have
// the given sha256s.
func (l *outputLayout) newControlTwin(sums []string) *ControlTwin {
	c := &ControlTwin{Path: l.control[0]}
	if len(l.control) > 1 {
		c.Paths = l.control
	}
	names := make([]string, len(l.paths))
	for i, p := range l.paths {
		names[i] = filepath.Base(p)
		c.OfShards = append(c.OfShards, InputShard{Name: names[i], SHA256: sums[i]})
	}
	c.Of, c.OfSHA256 = strings.Join(names, errata.SourceSeparator), strings.Join(sums, errata.SourceSeparator)
	return c
}

// commitAll renames the complete shards into place; when one cannot be,
// it removes those already renamed, so that the output is whole or absent.
func commitAll(set []*gguf.Writer, paths []string) error {
	for i, w := range set {
		if err := w.Commit(); err != nil {
			for _, p := range paths[:i] {
				os.Remove(p)
			}
			return fmt.Errorf("prune: %w", err)
		}
	}
	return nil
}
