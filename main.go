// Command physarium-gguf prunes GGUF models with the Physarium tile kernel
// and inspects what was done. Run it with --help for the commands.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"

	"github.com/physarium/physarium-gguf/cli"
)

// version is set at build time with -ldflags "-X main.version=v1.2.3".
var version = "dev"

// stopSignals end a run as Ctrl-C does: the context is cancelled, the
// writers remove their temporary files, and the exit code is 128 plus the
// signal's number (SIGHUP 129, SIGINT 130, SIGQUIT 131, SIGTERM 143).
var stopSignals = []os.Signal{syscall.SIGHUP, os.Interrupt, syscall.SIGQUIT, syscall.SIGTERM}

// sigName names the stopSignals as a shell user knows them.
var sigName = map[syscall.Signal]string{syscall.SIGHUP: "SIGHUP", syscall.SIGINT: "SIGINT", syscall.SIGQUIT: "SIGQUIT", syscall.SIGTERM: "SIGTERM"}

func main() {
	ctx, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, stopSignals...)
	var caught atomic.Value
	go func() {
		caught.Store(<-sigs)
		cancel()
	}()
	err := cli.New(version).RunContext(ctx, os.Args)
	if err != nil {
		code := cli.ExitCode(err)
		msg := err.Error()
		if s, ok := caught.Load().(syscall.Signal); ok {
			code = 128 + int(s)
			msg = strings.Replace(msg, context.Canceled.Error(), "interrupted by "+sigName[s], 1)
		}
		fmt.Fprintf(os.Stderr, "%s: %s\n", cli.Name, msg)
		os.Exit(code)
	}
}
