package prune

import (
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/physarium/physarium-gguf/gguf"
)

// DefaultTargetPattern matches every attention and MLP projection weight of
// every block, dense and MoE forms alike.
const DefaultTargetPattern = `^blk\.[0-9]+\.(attn_(q|k|v|qkv|output)|ffn_(gate|up|down)(_exps|_shexp)?)\.weight$`

var (
	defaultTarget = regexp.MustCompile(DefaultTargetPattern)
	blockIndex    = regexp.MustCompile(`^blk\.([0-9]+)\.`)
	// neverTarget matches tensors that are never pruned, whatever --include says:
	// norms, embeddings, the output head, positional tables.
	neverTarget = regexp.MustCompile(`(^|\.)(token_embd|output|output_norm|rope_freqs|pos_embd|token_types)(\.|$)|norm`)
)

// Selection chooses the target tensors: the default projection pattern,
// widened by Include, narrowed by Exclude and Layers. Tensors with fewer
// than two dimensions, norms, embeddings and the output head are never
// targets.
type Selection struct {
	Include []string // extra name patterns (regular expressions)
	Exclude []string // name patterns to leave out (regular expressions)
	Layers  string   // block indices, e.g. "0-3,7"; empty means every block
}

// compiledSelection is a Selection ready to match names.
type compiledSelection struct {
	include, exclude []*regexp.Regexp
	layers           map[int]bool // nil: every layer
}

func (s Selection) compile() (*compiledSelection, error) {
	c := &compiledSelection{}
	for _, p := range s.Include {
		re, err := regexp.Compile(p)
		if err != nil {
			return nil, fmt.Errorf("prune: --include %q: %w", p, err)
		}
		c.include = append(c.include, re)
	}
	for _, p := range s.Exclude {
		re, err := regexp.Compile(p)
		if err != nil {
			return nil, fmt.Errorf("prune: --exclude %q: %w", p, err)
		}
		c.exclude = append(c.exclude, re)
	}
	if s.Layers != "" {
		layers, err := ParseLayers(s.Layers)
		if err != nil {
			return nil, err
		}
		c.layers = layers
	}
	return c, nil
}

// Patterns returns the patterns that chose the targets, in the form stored in
// physarium.targets: the default pattern, then "include RE", "exclude RE" and
// "layers L" entries.
func (s Selection) Patterns() []string {
	ps := []string{DefaultTargetPattern}
	for _, p := range s.Include {
		ps = append(ps, "include "+p)
	}
	for _, p := range s.Exclude {
		ps = append(ps, "exclude "+p)
	}
	if s.Layers != "" {
		ps = append(ps, "layers "+s.Layers)
	}
	return ps
}

func (c *compiledSelection) match(t gguf.TensorInfo) bool {
	if len(t.Shape) < 2 || neverTarget.MatchString(t.Name) {
		return false
	}
	ok := defaultTarget.MatchString(t.Name)
	for _, re := range c.include {
		ok = ok || re.MatchString(t.Name)
	}
	for _, re := range c.exclude {
		ok = ok && !re.MatchString(t.Name)
	}
	if ok && c.layers != nil {
		layer, has := Layer(t.Name)
		ok = has && c.layers[layer]
	}
	return ok
}

// Layer returns the block index of a tensor named "blk.N....".
func Layer(name string) (int, bool) {
	m := blockIndex.FindStringSubmatch(name)
	if m == nil {
		return 0, false
	}
	n, err := strconv.Atoi(m[1])
	return n, err == nil
}

// Kind returns the projection kind of a tensor name: "attn_q", "ffn_down_exps",
// ... (the part between the block index and ".weight"), or the whole name for
// tensors outside blocks.
func Kind(name string) string {
	k := blockIndex.ReplaceAllString(name, "")
	return strings.TrimSuffix(k, ".weight")
}

// ParseLayers parses a list of block indices and ranges such as "0-3,7".
func ParseLayers(s string) (map[int]bool, error) {
	layers := map[int]bool{}
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		if err != nil || a < 0 {
			return nil, fmt.Errorf("prune: --layers %q: %q is not a block index or range", s, part)
		}
		b := a
		if isRange {
			b, err = strconv.Atoi(hi)
			if err != nil || b < a {
				return nil, fmt.Errorf("prune: --layers %q: %q is not a block index or range", s, part)
			}
		}
		if b-a > 1<<20 {
			return nil, fmt.Errorf("prune: --layers %q: range %q too large", s, part)
		}
		for i := a; i <= b; i++ {
			layers[i] = true
		}
	}
	return layers, nil
}

// sortedLayers returns the keys of a layer set in order (for messages).
func sortedLayers(m map[int]bool) []int {
	var ls []int
	for l := range m {
		ls = append(ls, l)
	}
	sort.Ints(ls)
	return ls
}
