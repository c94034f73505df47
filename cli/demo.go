package cli

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"

	ucli "github.com/urfave/cli/v2"

	"github.com/physarium/physarium-gguf/gguf"
	"github.com/physarium/physarium-gguf/prune"
	"github.com/physarium/physarium-gguf/quantize"
	"github.com/physarium/physarium-gguf/testmodels"
)

func (a *App) demoCommand() *ucli.Command {
	return &ucli.Command{
		Name:      "demo",
		Usage:     "generate a small test model, prune it and print the report",
		ArgsUsage: "[DIR]",
		Description: `Writes a small random llama model (F16 matrices) to DIR/testmodel.gguf,
prunes it in natural mode to DIR/testmodel.pruned.gguf (both replaced if
present) and prints the surgery report and the pruned file's physarium.*
keys, then audits the pruned file against the original (the demo fails when
any stored figure disagrees with the recount). Without DIR a new temporary directory is made and its path printed on
stderr.`,
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
	pruned := filepath.Join(dir, "testmodel.pruned.gguf")
	bar := newProgressBar(a.Stderr, "prune testmodel.gguf")
	r, err := prune.File(c.Context, path, pruned, prune.Options{Overwrite: true, Progress: bar.update})
	bar.finish(err == nil)
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	w := bufio.NewWriter(a.Stdout)
	writeSummary(w, r)
	// Audit the pruned file against the original: the demo fails when the
	// stored figures disagree with the recount.
	ar, err := runAudit(c.Context, pruned, path)
	if err != nil {
		w.Flush()
		return fmt.Errorf("demo: %w", err)
	}
	fmt.Fprintln(w)
	writeAudit(w, ar)
	if err := w.Flush(); err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	if err := auditVerdict(ar); err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	fmt.Fprintf(a.Stderr, "demo: next: %s inspect %s\n", Name, pruned)
	return nil
}
