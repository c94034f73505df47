package main

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// rssLauncherEnv, when set in the environment of this test binary, makes
// it a launcher instead of a test run: it runs os.Args[1:] as a command,
// writes the command's peak RSS in bytes to the file the variable names,
// and exits with the command's status.
//
// Why: Go starts a child with vfork, so the child shares this process's
// memory until it execs, and Linux then records this process's own
// high-water RSS as the child's starting peak. A child of a test process
// that has itself used 170 MB reports at least 170 MB, whatever it used:
// two runs compared that way can look flat while both are only the
// parent's peak. The launcher is a fresh process of a few MB, so what it
// measures is the command's own peak.
const rssLauncherEnv = "PHYSARIUM_TEST_RSS_LAUNCHER"

func TestMain(m *testing.M) {
	if out := os.Getenv(rssLauncherEnv); out != "" {
		os.Exit(launch(out, os.Args[1:]))
	}
	os.Exit(m.Run())
}

// launch runs args with this process's standard streams, writes its peak
// RSS to out and returns its exit status.
func launch(out string, args []string) int {
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, "rss launcher: no command")
		return 2
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = withoutLauncher(os.Environ())
	err := cmd.Run()
	if cmd.ProcessState == nil {
		fmt.Fprintln(os.Stderr, "rss launcher:", err)
		return 2
	}
	peak := cmd.ProcessState.SysUsage().(*syscall.Rusage).Maxrss << 10
	if werr := os.WriteFile(out, []byte(strconv.FormatInt(peak, 10)), 0o644); werr != nil {
		fmt.Fprintln(os.Stderr, "rss launcher:", werr)
		return 2
	}
	if cmd.ProcessState.Exited() {
		return cmd.ProcessState.ExitCode()
	}
	return 1
}

func withoutLauncher(env []string) []string {
	kept := env[:0:0]
	for _, e := range env {
		if !strings.HasPrefix(e, rssLauncherEnv+"=") {
			kept = append(kept, e)
		}
	}
	return kept
}

// measured rewrites cmd to run under the launcher and returns a function
// that, after cmd has run, gives its peak RSS in bytes.
func measured(t *testing.T, cmd *exec.Cmd) func() int64 {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.CreateTemp(t.TempDir(), "rss")
	if err != nil {
		t.Fatal(err)
	}
	out := f.Name()
	f.Close()
	env := cmd.Env
	if env == nil {
		env = os.Environ()
	}
	cmd.Env = append(withoutLauncher(env), rssLauncherEnv+"="+out)
	cmd.Args = append([]string{self, cmd.Path}, cmd.Args[1:]...)
	cmd.Path = self
	return func() int64 {
		t.Helper()
		b, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
		if err != nil {
			t.Fatalf("rss launcher wrote %q: %v", b, err)
		}
		return n
	}
}

// TestMeasuredIsTheChildsOwnPeak checks the launcher against this process:
// after this test process has held 256 MB, a small child measured through
// the launcher still reports a small peak (and a direct child does not).
func TestMeasuredIsTheChildsOwnPeak(t *testing.T) {
	if testing.Short() {
		t.Skip("holds 256 MB")
	}
	ballast := make([]byte, 256<<20)
	for i := range ballast {
		ballast[i] = byte(i)
	}
	direct := exec.Command("true")
	if err := direct.Run(); err != nil {
		t.Skip("no true command:", err)
	}
	directPeak := direct.ProcessState.SysUsage().(*syscall.Rusage).Maxrss << 10
	cmd := exec.Command("true")
	peak := measured(t, cmd)
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	got := peak()
	t.Logf("peak RSS of true: %d MB through the launcher, %d MB started directly by a process holding 256 MB", got>>20, directPeak>>20)
	if got > 64<<20 {
		t.Errorf("through the launcher, true peaked at %d MB", got>>20)
	}
	ballast[len(ballast)-1]++ // keep the ballast alive until here
}
