// Package cli is the physarium-gguf command line: one file per command,
// built on github.com/urfave/cli/v2 (no other package imports it). Commands
// write data to stdout and messages to stderr, and return errors that carry
// their exit code (see ExitCode); they never call os.Exit.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	ucli "github.com/urfave/cli/v2"

	"github.com/physarium/physarium-gguf/gguf"
)

// Exit codes returned by ExitCode.
const (
	ExitOK      = 0   // success
	ExitFailure = 1   // the command ran and failed
	ExitUsage   = 2   // bad command line: nothing was done
	ExitSignal  = 130 // interrupted (SIGINT/SIGTERM cancelled the context)
)

// ExitError is an error with the process exit code it should end with.
type ExitError struct {
	Code int
	Err  error
}

func (e *ExitError) Error() string { return e.Err.Error() }

// Unwrap returns the underlying error.
func (e *ExitError) Unwrap() error { return e.Err }

// ExitCode returns the exit code err carries: ExitOK for nil, the Code of an
// ExitError in its chain, ExitSignal for a cancelled context, ExitFailure
// otherwise.
func ExitCode(err error) int {
	if err == nil {
		return ExitOK
	}
	var e *ExitError
	if errors.As(err, &e) {
		return e.Code
	}
	if errors.Is(err, context.Canceled) {
		return ExitSignal
	}
	return ExitFailure
}

// usageErrorf returns a usage error (exit code 2).
func usageErrorf(format string, args ...any) error {
	return &ExitError{Code: ExitUsage, Err: fmt.Errorf(format, args...)}
}

// App is the physarium-gguf command line.
type App struct {
	Version string
	Stdout  io.Writer // data; os.Stdout by default
	Stderr  io.Writer // messages; os.Stderr by default
}

// New returns the command line of the given version ("dev" when empty),
// writing to os.Stdout and os.Stderr.
func New(version string) *App {
	if version == "" {
		version = "dev"
	}
	return &App{Version: version, Stdout: os.Stdout, Stderr: os.Stderr}
}

// Name is the binary's name.
const Name = "physarium-gguf"

const rootDescription = `physarium-gguf reads and writes GGUF models (llama.cpp's format). It
memory-maps a model, picks the attention and MLP projection tensors,
dequantizes them, lets the Physarium tile kernel decide which weights die,
zeroes them, requantizes each tensor to its own type and writes a new GGUF
that llama.cpp loads, recording what it did in physarium.* metadata keys.

The two errata rules it enforces:
  1. Surgery figures (what was killed) and evaluation figures (perplexity,
     benchmarks) are two experiments and are never mixed in one number.
  2. Every kill percentage states its denominator: the count it divides by
     and the name of that count.

Examples:
  physarium-gguf prune model.gguf model.pruned.gguf
  physarium-gguf testmodel --type f16 --layers 2 model.gguf
  physarium-gguf inspect model.gguf
  physarium-gguf inspect --json model.gguf | jq '.tensors[].name'
  physarium-gguf dump --tensor blk.0.attn_q.weight model.gguf > q.f32
  physarium-gguf demo`

// build returns the urfave application for one run.
func (a *App) build() *ucli.App {
	app := &ucli.App{
		Name:                 Name,
		Usage:                "prune GGUF models with the Physarium kernel, and inspect what was done",
		UsageText:            Name + " [--help] [--version] COMMAND [flags] ARGS...",
		Description:          rootDescription,
		Version:              a.Version,
		Writer:               a.Stdout,
		ErrWriter:            a.Stderr,
		HideHelpCommand:      true,
		EnableBashCompletion: false,
		// Errors are returned to main, which prints them and exits: never
		// let urfave/cli call os.Exit.
		ExitErrHandler: func(*ucli.Context, error) {},
		OnUsageError:   onUsageError,
		Action: func(c *ucli.Context) error {
			if c.Args().Present() {
				return usageErrorf("unknown command %q (run '%s --help')", c.Args().First(), Name)
			}
			c.App.Writer = a.Stderr // help as the message of a usage error
			ucli.ShowAppHelp(c)
			return usageErrorf("no command given")
		},
		Commands: []*ucli.Command{
			a.pruneCommand(),
			a.testmodelCommand(),
			a.inspectCommand(),
			a.auditCommand(),
			a.dumpCommand(),
			a.demoCommand(),
			a.evalCommand(),
			a.calibrateCommand(),
		},
	}
	for _, cmd := range app.Commands {
		cmd.OnUsageError = onUsageError
	}
	return app
}

// onUsageError turns a flag parsing error into a usage error.
func onUsageError(c *ucli.Context, err error, isSubcommand bool) error {
	if isSubcommand && c.Command != nil {
		return usageErrorf("%s: %v (run '%s %s --help')", c.Command.Name, err, Name, c.Command.Name)
	}
	return usageErrorf("%v (run '%s --help')", err, Name)
}

// RunContext runs the command line args (args[0] is the program name).
// The returned error carries the exit code (see ExitCode).
func (a *App) RunContext(ctx context.Context, args []string) error {
	if a.Stdout == nil {
		a.Stdout = os.Stdout
	}
	if a.Stderr == nil {
		a.Stderr = os.Stderr
	}
	return a.build().RunContext(ctx, args)
}

// args checks that c got exactly the positional arguments named in names
// (flags must come before them) and returns them.
func args(c *ucli.Context, names ...string) ([]string, error) {
	got := c.Args().Slice()
	if len(got) == len(names) {
		return got, nil
	}
	cmd := c.Command.Name
	for _, g := range got {
		if strings.HasPrefix(g, "-") && len(g) > 1 {
			return nil, usageErrorf("%s: flag %s after the arguments: flags must come before %s (run '%s %s --help')", cmd, g, strings.Join(names, " "), Name, cmd)
		}
	}
	if len(got) < len(names) {
		return nil, usageErrorf("%s: missing %s (run '%s %s --help')", cmd, strings.Join(names[len(got):], " "), Name, cmd)
	}
	return nil, usageErrorf("%s: too many arguments: %q (run '%s %s --help')", cmd, got[len(names):], Name, cmd)
}

// removeStale removes the temporary files that runs killed before they
// could clean up left beside the given outputs ("" is skipped), and says so
// on stderr.
func (a *App) removeStale(cmd string, outs ...string) error {
	for _, out := range outs {
		if out == "" {
			continue
		}
		removed, err := gguf.RemoveStale(out)
		for _, p := range removed {
			fmt.Fprintf(a.Stderr, "%s: removed %s, left by an earlier run whose process is gone\n", cmd, p)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", cmd, err)
		}
	}
	return nil
}
