package prune

import (
	"errors"
	"fmt"
	"regexp"

	"github.com/physarium/physarium-gguf/errata"
	"github.com/physarium/physarium-gguf/gguf"
)

// Selection chooses the target tensors: the default projection pattern,
// widened by Include, narrowed by Exclude and Layers. What errata.Classify
// marks Never (biases, tensors of fewer than two dimensions, norms,
// embeddings, routers, output heads, convolutions, lerp and decay vectors)
// is never a target.
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
	return c.verdict(t).Target
}

// reasonLeftOut is the reason of a tensor of a target role that --exclude or
// --layers leaves out.
const reasonLeftOut = "a target role left out by --exclude or --layers"

// verdict is errata.Classify with the flags applied: --include may add what
// is not Never, --exclude and --layers take away.
func (c *compiledSelection) verdict(t gguf.TensorInfo) errata.Verdict {
	v := errata.Classify(t.Name, len(t.Shape))
	chosen := !v.Never && c.targets.Match(t.Name)
	switch {
	case chosen && !v.Target:
		v.Target, v.Reason = true, "" // chosen by --include
	case !chosen && v.Target:
		v.Target, v.Reason = false, reasonLeftOut
	}
	return v
}

// TensorTarget is one tensor of a file and what the selection does with it.
type TensorTarget struct {
	Name    string   `json:"name"`
	Type    string   `json:"type"`
	Shape   []uint64 `json:"shape"`
	Weights uint64   `json:"weights"`
	errata.Verdict
}

// ListTargets returns every tensor of the GGUF file at path, in file order,
// with its role and whether sel makes it a target, and why not.
func ListTargets(path string, sel Selection) ([]TensorTarget, error) {
	cs, err := sel.compile()
	if err != nil {
		return nil, err
	}
	f, err := gguf.Open(path)
	if err != nil {
		return nil, fmt.Errorf("prune: %w", err)
	}
	defer f.Close()
	out := make([]TensorTarget, len(f.Tensors))
	for i, t := range f.Tensors {
		out[i] = TensorTarget{Name: t.Name, Type: t.Type.String(), Shape: t.Shape, Weights: t.Elements(), Verdict: cs.verdict(t)}
	}
	return out, nil
}
