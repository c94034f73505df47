package cli

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	ucli "github.com/urfave/cli/v2"

	"github.com/physarium/physarium-gguf/prune"
)

// targetListing is the JSON form of prune --list-targets.
type targetListing struct {
	Model         string               `json:"model"`
	Targets       []string             `json:"targets"` // physarium.targets of a run with these flags
	TargetTensors int                  `json:"target_tensors"`
	TargetWeights uint64               `json:"target_weights"`
	ModelWeights  uint64               `json:"model_weights"`
	Tensors       []prune.TensorTarget `json:"tensors"`
}

// listTargets prints each tensor of the one model argument with its role,
// whether the selection flags make it a target, and why not.
func (a *App) listTargets(c *ucli.Context) error {
	pos, err := args(c, "MODEL")
	if err != nil {
		return err
	}
	sel := prune.Selection{Include: c.StringSlice("include"), Exclude: c.StringSlice("exclude"), Layers: c.String("layers")}
	if sel.Layers != "" {
		if err := prune.CheckLayers(sel.Layers); err != nil {
			return usageErrorf("%v", err)
		}
	}
	list, err := prune.ListTargets(pos[0], sel)
	if err != nil {
		return err
	}
	l := targetListing{Model: pos[0], Targets: sel.Patterns(), Tensors: list}
	for _, t := range list {
		l.ModelWeights += t.Weights
		if t.Target {
			l.TargetTensors++
			l.TargetWeights += t.Weights
		}
	}
	if c.Bool("json") {
		return writeJSONReport(a.Stdout, "-", l)
	}
	tw := tabwriter.NewWriter(a.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TENSOR\tROLE\tTYPE\tSHAPE\tWEIGHTS\tTARGET")
	for _, t := range list {
		verdict := "target"
		if !t.Target {
			verdict = "no: " + t.Reason
		}
		dims := make([]string, len(t.Shape))
		for i, n := range t.Shape {
			dims[i] = fmt.Sprint(n)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\n", t.Name, t.Role, t.Type, strings.Join(dims, "x"), t.Weights, verdict)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err = fmt.Fprintf(a.Stdout, "%d of %d tensors are targets: %d of %d weights\n", l.TargetTensors, len(list), l.TargetWeights, l.ModelWeights)
	return err
}

// writeNonTargets prints the report's tensors that are not targets, by role,
// with their weights: what the model denominator holds beside the targets.
func writeNonTargets(w io.Writer, roles []prune.NonTargetRole) {
	var weights uint64
	tensors := 0
	for _, n := range roles {
		weights += n.Weights
		tensors += n.Tensors
	}
	fmt.Fprintf(w, "not targets:      %d weights of %d tensors, by role:\n", weights, tensors)
	for _, n := range roles {
		fmt.Fprintf(w, "  %-16s %3d tensors %12d weights  %s\n", n.Role, n.Tensors, n.Weights, n.Reason)
	}
}
