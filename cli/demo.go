package cli

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"

	ucli "github.com/urfave/cli/v2"

	"github.com/physarium/physarium-gguf/gguf"
	"github.com/physarium/physarium-gguf/quantize"
	"github.com/physarium/physarium-gguf/testmodels"
)

func (a *App) demoCommand() *ucli.Command {
	return &ucli.Command{
		Name:      "demo",
		Usage:     "generate a small test model and inspect it",
		ArgsUsage: "[DIR]",
		Description: `Writes a small random llama model (F16 matrices when an F16 encoder is
available, F32 otherwise) to DIR/testmodel.gguf, replacing it if present,
and prints its inspection. Without DIR a new temporary directory is made and
its path printed on stderr. Once the prune command exists the demo will
prune the model too.`,
		Action: a.demo,
	}
}

func (a *App) demo(c *ucli.Context) error {
	var dir string
	switch c.NArg() {
	case 0:
		d, err := os.MkdirTemp("", "physarium-demo-")
		if err != nil {
			return fmt.Errorf("demo: %w", err)
		}
		dir = d
		fmt.Fprintf(a.Stderr, "demo: working in %s\n", dir)
	case 1:
		dir = c.Args().First()
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("demo: %w", err)
		}
	default:
		_, err := args(c, "[DIR]")
		return err
	}
	cfg := testmodels.DefaultConfig()
	if testmodels.SupportedType(gguf.TypeF16) && quantize.CanDecode(gguf.TypeF16) {
		cfg.Type = gguf.TypeF16
	}
	path := filepath.Join(dir, "testmodel.gguf")
	if err := testmodels.WriteContext(c.Context, path, cfg, gguf.CreateOptions{Overwrite: true}); err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	fmt.Fprintf(a.Stderr, "demo: wrote %s (%s)\n", path, cfg)
	f, err := gguf.Open(path)
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	defer f.Close()
	w := bufio.NewWriter(a.Stdout)
	if err := writeInspectText(w, f); err != nil {
		return fmt.Errorf("demo: %s: %w", path, err)
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	fmt.Fprintf(a.Stderr, "demo: next: %s dump --tensor blk.0.attn_q.weight %s > q.f32\n", Name, path)
	return nil
}
