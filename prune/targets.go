package prune

import (
	"errors"
	"fmt"
	"regexp"

	"github.com/physarium/physarium-gguf/errata"
	"github.com/physarium/physarium-gguf/gguf"
)

// neverTarget matches tensors that are never pruned, whatever --include says:
// norms, embeddings, the output head, positional tables.
var neverTarget = regexp.MustCompile(`(^|\.)(token_embd|output|output_norm|rope_freqs|pos_embd|token_types)(\.|$)|norm`)

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
type compiledSelection struct{ targets *errata.Targets }

// compile checks every pattern, naming the flag at fault, and parses the
// selection as physarium.targets states it.
func (s Selection) compile() (*compiledSelection, error) {
	for _, p := range s.Include {
		if _, err := regexp.Compile(p); err != nil {
			return nil, fmt.Errorf("prune: --include %q: %w", p, err)
		}
	}
	for _, p := range s.Exclude {
		if _, err := regexp.Compile(p); err != nil {
			return nil, fmt.Errorf("prune: --exclude %q: %w", p, err)
		}
	}
	if s.Layers != "" {
		if err := CheckLayers(s.Layers); err != nil {
			return nil, err
		}
	}
	t, _, err := errata.ParseTargets(s.Patterns())
	if err != nil {
		return nil, fmt.Errorf("prune: %w", err)
	}
	return &compiledSelection{t}, nil
}

// CheckLayers checks a --layers list of block indices and ranges such as
// "0-3,7".
func CheckLayers(s string) error {
	_, err := errata.ParseLayers(s)
	var le *errata.LayerError
	if errors.As(err, &le) {
		return fmt.Errorf("prune: --layers %q: %s", s, le.Detail())
	}
	return err
}

// Patterns returns the patterns that chose the targets, in the form stored in
// physarium.targets: the default pattern, then "include RE", "exclude RE" and
// "layers L" entries.
func (s Selection) Patterns() []string {
	return errata.TargetEntries(s.Include, s.Exclude, s.Layers)
}

func (c *compiledSelection) match(t gguf.TensorInfo) bool {
	return len(t.Shape) >= 2 && !neverTarget.MatchString(t.Name) && c.targets.Match(t.Name)
}
