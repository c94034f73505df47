package cli

import (
	ucli "github.com/urfave/cli/v2"

	"github.com/physarium/physarium-gguf/gguf"
	"github.com/physarium/physarium-gguf/prune"
	"github.com/physarium/physarium-gguf/quantize"
)

// retypeFlag is prune's --retype.
var retypeFlag = &ucli.StringFlag{Name: "retype", Usage: "write every pruned tensor in this type (e.g. Q4_K, Q8_0: types that hold an exact zero), every block re-encoded; its rows must be whole blocks of it"}

// pruneRetype reads --retype into o.
func pruneRetype(c *ucli.Context, o *prune.Options) error {
	name := c.String("retype")
	if name == "" {
		return nil
	}
	t, ok := gguf.ParseType(name)
	if !ok || !quantize.CanEncode(t) {
		return usageErrorf("prune: --retype %q: not a type prune can encode", name)
	}
	o.Retype = &t
	return nil
}
