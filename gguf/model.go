package gguf

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// ErrSplit is the kind of every refusal of a split model's shards as a set:
// a missing, extra or misnamed shard, or split keys that disagree.
var ErrSplit = errors.New("gguf: inconsistent split model")

// Model is a model stored in one GGUF file or split into shards by
// llama.cpp's rule (llama-gguf-split): the shards, each an open File with
// its own header checks, and a view of the whole model as one File.
type Model struct {
	// Shards are the model's files in split.no order; one for a file that
	// is not split.
	Shards []*File
	// ShardOf gives, for every tensor of View in order, the index of the
	// shard that holds it.
	ShardOf []int
	// View is the whole model as one File: the first shard's metadata, the
	// tensors of every shard in shard order, and tensor data read from the
	// shard that holds them. Its Path is the first shard's; its offsets
	// are those of a data section that puts the shards' data sections one
	// after the other (a tensor's bytes are read through View.ReadAt or
	// View.TensorReader, or from its shard with ShardTensor). A model of
	// one file is that File itself.
	View *File
}

// ModelOptions control OpenModel.
type ModelOptions struct {
	// AnyShard lets the path name any shard of a split model; without it
	// only the first, where llama.cpp reads the metadata, is accepted.
	AnyShard bool
}

// Split reports whether the model has more than one shard.
func (m *Model) Split() bool { return len(m.Shards) > 1 }

// ShardTensor returns tensor i of View as its shard stores it: the shard
// and the tensor info with the shard's own offset.
func (m *Model) ShardTensor(i int) (*File, TensorInfo) {
	f := m.Shards[m.ShardOf[i]]
	t := m.View.Tensors[i]
	if m.Split() {
		t.Offset -= uint64(m.View.r.(*shardReader).base[m.ShardOf[i]])
	}
	return f, t
}

// Close closes every shard.
func (m *Model) Close() error {
	var first error
	for _, f := range m.Shards {
		if f == nil {
			continue
		}
		if err := f.Close(); err != nil && first == nil {
			first = err
		}
	}
	if m.View != nil && len(m.Shards) > 1 {
		m.View.closed = true
	}
	return first
}

// OpenModel opens the model at path: a GGUF file, or a shard of a model
// split by llama.cpp's rule, in which case every shard is opened and
// checked as llama.cpp's loader checks them: the names follow
// "<prefix>-NNNNN-of-MMMMM.gguf" (SplitPath), every shard has split.no
// equal to its number and the same split.count, the first shard's
// split.tensors.count is the number of tensors of all the shards, no
// tensor name is in two shards, and no other shard of the same prefix lies
// beside them. Each shard gets the header checks of Open.
func OpenModel(path string, opts ModelOptions) (*Model, error) {
	f, err := Open(path)
	if err != nil {
		return nil, err
	}
	no, count, _, has, err := splitKeys(f)
	if err != nil {
		f.Close()
		return nil, err
	}
	if !has[1] || count <= 1 {
		// llama.cpp loads a file as split only when split.count > 1.
		return &Model{Shards: []*File{f}, ShardOf: make([]int, len(f.Tensors)), View: f}, nil
	}
	if !has[0] {
		f.Close()
		return nil, splitErr("%s: split.count is %d but split.no is missing", path, count)
	}
	prefix, nameNo, nameCount, ok := SplitName(path)
	if !ok || nameNo != int(no) || nameCount != int(count) {
		f.Close()
		return nil, splitErr("%s: shard %d of %d (split.no %d, split.count %d) is not named %s, as llama.cpp's rule names it", path, int(no)+1, count, no, count, filepath.Base(SplitPath("<prefix>", int(no), int(count))))
	}
	if no != 0 && !opts.AnyShard {
		f.Close()
		return nil, splitErr("%s: shard %d of %d; give the first shard, %s (llama.cpp loads a split model from it), or --split to accept any shard", path, int(no)+1, count, SplitPath(prefix, 0, int(count)))
	}
	m := &Model{Shards: make([]*File, count)}
	m.Shards[no] = f
	fail := func(err error) (*Model, error) {
		m.Close()
		return nil, err
	}
	if err := checkNoExtraShards(prefix, int(count)); err != nil {
		return fail(err)
	}
	for i := range m.Shards {
		if m.Shards[i] != nil {
			continue
		}
		p := SplitPath(prefix, i, int(count))
		s, err := Open(p)
		if errors.Is(err, os.ErrNotExist) {
			return fail(splitErr("%s: shard %d of %d, %s, is missing", path, i+1, count, p))
		}
		if err != nil {
			return fail(err)
		}
		m.Shards[i] = s
	}
	if err := m.checkShards(int(count)); err != nil {
		return fail(err)
	}
	if err := m.buildView(); err != nil {
		return fail(err)
	}
	return m, nil
}

// checkNoExtraShards refuses a shard beside the model's shards that has
// the same prefix but another count: which set was meant is not clear.
func checkNoExtraShards(prefix string, count int) error {
	matches, err := filepath.Glob(escapeGlob(prefix) + "-*-of-*.gguf")
	if err != nil {
		return fmt.Errorf("gguf: %s: %w", prefix, err)
	}
	sort.Strings(matches)
	for _, p := range matches {
		pre, _, c, ok := SplitName(p)
		if ok && pre == prefix && c != count {
			return splitErr("%s: extra shard beside the %d shards of %s: it belongs to a split into %d; remove it or the other set", p, count, SplitPath(prefix, 0, count), c)
		}
	}
	return nil
}

// escapeGlob escapes the pattern characters of filepath.Match in s.
func escapeGlob(s string) string {
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune(`*?[\`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// checkShards checks the split keys of every shard against the first's.
func (m *Model) checkShards(count int) error {
	total := 0
	var want int32
	for i, s := range m.Shards {
		no, c, tensors, has, err := splitKeys(s)
		if err != nil {
			return err
		}
		switch {
		case !has[0]:
			return splitErr("%s: shard %d of %d has no split.no", s.Path, i+1, count)
		case int(no) != i:
			return splitErr("%s: shard %d of %d says split.no %d (shard %d): wrong numbering", s.Path, i+1, count, no, int(no)+1)
		case !has[1]:
			return splitErr("%s: shard %d of %d has no split.count", s.Path, i+1, count)
		case int(c) != count:
			return splitErr("%s: shard %d says split.count %d, the first shard %d", s.Path, i+1, c, count)
		}
		if i == 0 {
			if !has[2] {
				return splitErr("%s: the first shard has no split.tensors.count", s.Path)
			}
			want = tensors
		} else if has[2] && tensors != want {
			return splitErr("%s: shard %d says split.tensors.count %d, the first shard %d", s.Path, i+1, tensors, want)
		}
		total += len(s.Tensors)
	}
	if int64(total) != int64(want) {
		return splitErr("%s: split.tensors.count is %d but the %d shards hold %d tensors", m.Shards[0].Path, want, count, total)
	}
	return nil
}

// buildView makes the File that views the shards as one model.
func (m *Model) buildView() error {
	first := m.Shards[0]
	sr := &shardReader{shards: m.Shards}
	v := &File{Path: first.Path, Version: first.Version, Alignment: first.Alignment, KVs: first.KVs, kvIndex: first.kvIndex, r: sr}
	var base int64
	for i, s := range m.Shards {
		sr.base = append(sr.base, base)
		for _, t := range s.Tensors {
			t.Offset += uint64(base)
			v.Tensors = append(v.Tensors, t)
			m.ShardOf = append(m.ShardOf, i)
		}
		base += s.Size - s.DataOffset
	}
	sr.size, v.Size = base, base
	var dup int
	v.tIndex, dup = sortedIndex(len(v.Tensors), func(i int) string { return nameKey(v.Tensors[i].Name) })
	if dup >= 0 {
		name := v.Tensors[dup].Name
		return splitErr("%s: tensor %q is in more than one shard (the second: %s)", first.Path, name, m.Shards[m.ShardOf[dup]].Path)
	}
	m.View = v
	return nil
}

// shardReader reads the data sections of the shards as one: shard i's
// starts at base[i].
type shardReader struct {
	shards []*File
	base   []int64
	size   int64
}

// ReadAt reads the concatenated data sections, across shards if need be.
func (r *shardReader) ReadAt(p []byte, off int64) (int, error) {
	n := 0
	for len(p) > 0 {
		if off >= r.size {
			return n, io.EOF
		}
		i := sort.Search(len(r.base), func(i int) bool { return r.base[i] > off }) - 1
		s := r.shards[i]
		local := off - r.base[i]
		m := min(int64(len(p)), s.Size-s.DataOffset-local)
		k, err := s.ReadAt(p[:m], s.DataOffset+local)
		n += k
		if err != nil && !(errors.Is(err, io.EOF) && int64(k) == m) {
			return n, err
		}
		p, off = p[m:], off+m
	}
	return n, nil
}

func splitErr(format string, args ...any) error {
	return &fileError{kind: ErrSplit, err: fmt.Errorf("gguf: "+format, args...)}
}
