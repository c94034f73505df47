// Package llamacpp runs the real llama.cpp on GGUF files from Go tests.
//
// The runtime (the prebuilt libllama/libggml of the npm package
// @node-llama-cpp/linux-x64, their exact llama.cpp source, and llama.cpp's
// own llama-imatrix and llama-perplexity compiled against them) is installed
// by scripts/llama-runtime.sh, which prints
// PHYSARIUM_LLAMA=<dir> as its last line. This package finds that directory
// only through the PHYSARIUM_LLAMA environment variable:
//
//	export "$(scripts/llama-runtime.sh | tail -n1)"
//	go test ./testmodels/llamacpp/
//
// Tests call Require, which skips when the variable is unset and fails when it
// is set but the runtime is incomplete. The package depends on the standard
// library and the project's llama.cpp binding (package llamacpp at the
// repository root, which computes the perplexity in process), so any test in
// the project can import it.
package llamacpp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/physarium/physarium-gguf/llamacpp"
)

// EnvVar names the environment variable that holds the runtime directory
// created by scripts/llama-runtime.sh.
const EnvVar = "PHYSARIUM_LLAMA"

// RefereeTool is the file name, under <runtime>/bin, of llama.cpp's own
// llama-perplexity, built from the bundled source: the referee for the
// perplexity the project computes.
const RefereeTool = "llama-perplexity"

// ImatrixTool is the file name, under <runtime>/bin, of llama.cpp's own
// llama-imatrix, which scripts/llama-runtime.sh builds from the bundled source
// against the shipped libllama-common.
const ImatrixTool = "llama-imatrix"

// libllama is the shipped library every tool links against; its presence
// under <runtime>/lib marks a usable runtime.
const libllama = "libllama.v0.4.0.so"

// Dir returns the runtime directory named by PHYSARIUM_LLAMA, made absolute,
// and ok=false when the variable is unset or empty. It does not check the
// directory's contents; Check does.
func Dir() (string, bool) {
	d := os.Getenv(EnvVar)
	if d == "" {
		return "", false
	}
	if abs, err := filepath.Abs(d); err == nil {
		d = abs
	}
	return d, true
}

// LibDir returns the directory of the shipped libraries in the runtime dir,
// the one to pass to llamacpp.Load (eval's --llama-lib).
func LibDir(dir string) string { return filepath.Join(dir, "lib") }

// Check reports whether dir holds a complete runtime: the shipped libllama
// under lib/ and the referee llama-perplexity, executable, under bin/.
func Check(dir string) error {
	lib := filepath.Join(dir, "lib", libllama)
	if _, err := os.Stat(lib); err != nil {
		return fmt.Errorf("llamacpp: runtime %s (from $%s) is incomplete: %w; run scripts/llama-runtime.sh", dir, EnvVar, err)
	}
	bin := filepath.Join(dir, "bin", RefereeTool)
	st, err := os.Stat(bin)
	if err != nil {
		return fmt.Errorf("llamacpp: runtime %s (from $%s) is incomplete: %w; run scripts/llama-runtime.sh", dir, EnvVar, err)
	}
	if !st.Mode().IsRegular() || st.Mode().Perm()&0o111 == 0 {
		return fmt.Errorf("llamacpp: runtime %s (from $%s): %s is not an executable file; run scripts/llama-runtime.sh", dir, EnvVar, bin)
	}
	return nil
}

// Require returns the runtime directory for a test that needs the real
// llama.cpp. It skips the test when PHYSARIUM_LLAMA is unset and fails it when
// the variable is set but the runtime or its tools are missing.
func Require(t testing.TB) string {
	t.Helper()
	dir, ok := Dir()
	if !ok {
		t.Skipf("%s is not set; run `export \"$(scripts/llama-runtime.sh | tail -n1)\"` to test against the real llama.cpp", EnvVar)
	}
	if err := Check(dir); err != nil {
		t.Fatal(err)
	}
	return dir
}

// Result is one perplexity measurement, as computed by llama.cpp's
// llama-perplexity: PPL = exp(mean negative log-likelihood) over the second
// half of every NCTX-token chunk.
type Result struct {
	// PPL is the perplexity.
	PPL float64
	// StdErr is llama-perplexity's "+/-" figure: PPL times the standard error
	// of the mean negative log-likelihood.
	StdErr float64
	// Chunks is the number of NCTX-token chunks evaluated.
	Chunks int
	// Tokens is the number of tokens the whole text tokenized to, BOS included.
	Tokens int
	// Scored is the number of tokens whose likelihood entered PPL.
	Scored int
}

// stderrTail bounds how much of a tool's stderr an error message carries.
const stderrTail = 2048

// Perplexity measures model's perplexity over textFile with chunks of nctx
// tokens (batch 2048, one thread) with the project's binding, llamacpp.Evaluate,
// loading the runtime's shipped libraries. A model that llama.cpp refuses, a
// missing file or a text too short for two chunks yields an error naming the
// files and carrying llama.cpp's own message.
func Perplexity(ctx context.Context, model, textFile string, nctx int) (Result, error) {
	if nctx < 2 {
		return Result{}, fmt.Errorf("llamacpp: perplexity of %s: context size %d, want >= 2", model, nctx)
	}
	dir, ok := Dir()
	if !ok {
		return Result{}, fmt.Errorf("llamacpp: %s is not set; run scripts/llama-runtime.sh", EnvVar)
	}
	if err := Check(dir); err != nil {
		return Result{}, err
	}
	if err := ctx.Err(); err != nil {
		return Result{}, fmt.Errorf("llamacpp: perplexity of %s on %s: %w", model, textFile, err)
	}
	text, err := os.ReadFile(textFile)
	if err != nil {
		return Result{}, fmt.Errorf("llamacpp: perplexity: text %w", err)
	}
	lib, err := llamacpp.Load(LibDir(dir))
	if err != nil {
		return Result{}, err
	}
	res, err := llamacpp.Evaluate(ctx, lib, llamacpp.Options{Models: []string{model}, Text: text, TextName: textFile, CtxSize: nctx, Threads: 1})
	if err != nil {
		return Result{}, fmt.Errorf("llamacpp: perplexity of %s on %s: %w", model, textFile, err)
	}
	m := res.Models[0]
	return Result{PPL: m.PPL, StdErr: m.PPLErr, Chunks: res.Chunks, Tokens: res.Tokens, Scored: res.Scored}, nil
}

// finalRe matches llama-perplexity's closing line.
var finalRe = regexp.MustCompile(`Final estimate: PPL = ([0-9.]+) \+/- ([0-9.]+)`)

// Referee runs llama.cpp's own llama-perplexity (<runtime>/bin) on model and
// textFile with chunks of nctx tokens, the given threads and, when chunks >
// 0, at most that many chunks, and returns its final estimate (PPL and
// "+/-"; the counts are left zero) and its wall time.
func Referee(ctx context.Context, model, textFile string, nctx, threads, chunks int) (Result, time.Duration, error) {
	args := []string{"-m", model, "-f", textFile, "-c", strconv.Itoa(nctx), "-t", strconv.Itoa(threads), "-tb", strconv.Itoa(threads)}
	if chunks > 0 {
		args = append(args, "--chunks", strconv.Itoa(chunks))
	}
	t0 := time.Now()
	out, err := RunTool(ctx, RefereeTool, args...)
	took := time.Since(t0)
	if err != nil {
		return Result{}, took, err
	}
	m := finalRe.FindStringSubmatch(out)
	if m == nil {
		return Result{}, took, fmt.Errorf("llamacpp: %s on %s printed no final estimate: %s", RefereeTool, model, lastLines(out, 4))
	}
	var r Result
	r.PPL, _ = strconv.ParseFloat(m[1], 64)
	r.StdErr, _ = strconv.ParseFloat(m[2], 64)
	if math.IsNaN(r.PPL) || r.PPL <= 0 {
		return Result{}, took, errors.New("llamacpp: " + RefereeTool + " printed a non-positive perplexity")
	}
	return r, took, nil
}

// RunTool runs <runtime>/bin/name with args and returns what it printed
// (stdout and stderr together), collected in a temporary file. (llama.cpp's
// logger writes from a thread that nothing drains at exit; the tools
// scripts/llama-runtime.sh builds link tools/llamacpp/shim/log_flush.cpp,
// which does, so their last lines are not lost.) A failure carries the
// tool's last lines.
func RunTool(ctx context.Context, name string, args ...string) (string, error) {
	dir, ok := Dir()
	if !ok {
		return "", fmt.Errorf("llamacpp: %s is not set; run scripts/llama-runtime.sh", EnvVar)
	}
	logf, err := os.CreateTemp("", name+"-*.log")
	if err != nil {
		return "", err
	}
	defer os.Remove(logf.Name())
	defer logf.Close()
	cmd := exec.CommandContext(ctx, filepath.Join(dir, "bin", name), args...)
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.WaitDelay = 5 * time.Second
	err = cmd.Run()
	b, rerr := os.ReadFile(logf.Name())
	if rerr != nil {
		return "", rerr
	}
	if err != nil {
		return string(b), fmt.Errorf("llamacpp: %s: %w: %s", name, err, lastLines(string(b), 4))
	}
	return string(b), nil
}

// Imatrix computes an importance matrix for model over textFile with chunks of
// nctx tokens by running <runtime>/bin/llama-imatrix (CPU, one thread), and
// writes it to out in llama.cpp's GGUF imatrix format (general.type
// "imatrix"; per tensor "<name>.in_sum2" and "<name>.counts"). Errors name the
// files and carry llama-imatrix's last messages.
func Imatrix(ctx context.Context, model, textFile string, nctx int, out string) error {
	if nctx < 2 {
		return fmt.Errorf("llamacpp: imatrix of %s: context size %d, want >= 2", model, nctx)
	}
	dir, ok := Dir()
	if !ok {
		return fmt.Errorf("llamacpp: %s is not set; run scripts/llama-runtime.sh", EnvVar)
	}
	bin := filepath.Join(dir, "bin", ImatrixTool)
	if _, err := os.Stat(bin); err != nil {
		return fmt.Errorf("llamacpp: runtime %s (from $%s) lacks %s: %w; run scripts/llama-runtime.sh", dir, EnvVar, ImatrixTool, err)
	}
	for _, f := range []struct{ what, path string }{{"model", model}, {"text", textFile}} {
		st, err := os.Stat(f.path)
		if err != nil {
			return fmt.Errorf("llamacpp: imatrix: %s %s: %w", f.what, f.path, err)
		}
		if !st.Mode().IsRegular() {
			return fmt.Errorf("llamacpp: imatrix: %s %s is not a regular file", f.what, f.path)
		}
	}
	cmd := exec.CommandContext(ctx, bin, "-m", model, "-f", textFile, "-c", strconv.Itoa(nctx),
		"-t", "1", "-tb", "1", "--output-format", "gguf", "-o", out)
	stderr := &tailBuffer{max: stderrTail}
	cmd.Stdout = stderr
	cmd.Stderr = stderr
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Run(); err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return fmt.Errorf("llamacpp: imatrix of %s on %s: %w", model, textFile, ctxErr)
		}
		return fmt.Errorf("llamacpp: imatrix of %s on %s: %w: %s", model, textFile, err, lastLines(stderr.String(), 4))
	}
	if st, err := os.Stat(out); err != nil || st.Size() == 0 {
		return fmt.Errorf("llamacpp: imatrix of %s on %s: no output in %s: %s", model, textFile, out, lastLines(stderr.String(), 4))
	}
	return nil
}

// lastLines returns the last n non-empty lines of s joined by " | ".
func lastLines(s string, n int) string {
	var keep []string
	lines := strings.Split(s, "\n")
	for i := len(lines) - 1; i >= 0 && len(keep) < n; i-- {
		if l := strings.TrimSpace(lines[i]); l != "" {
			keep = append(keep, l)
		}
	}
	for i, j := 0, len(keep)-1; i < j; i, j = i+1, j-1 {
		keep[i], keep[j] = keep[j], keep[i]
	}
	if len(keep) == 0 {
		return "(no output on stderr)"
	}
	return strings.Join(keep, " | ")
}

// tailBuffer is an io.Writer that keeps only the last max bytes written.
type tailBuffer struct {
	max int
	buf []byte
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	n := len(p)
	if len(p) >= b.max {
		b.buf = append(b.buf[:0], p[len(p)-b.max:]...)
		return n, nil
	}
	if over := len(b.buf) + len(p) - b.max; over > 0 {
		b.buf = append(b.buf[:0], b.buf[over:]...)
	}
	b.buf = append(b.buf, p...)
	return n, nil
}

func (b *tailBuffer) String() string { return string(b.buf) }

// Load loads the runtime's llama.cpp libraries through the project's
// binding for a test, skipping it when PHYSARIUM_LLAMA is unset.
func Load(t testing.TB) *llamacpp.Library {
	t.Helper()
	lib, err := llamacpp.Load(LibDir(Require(t)))
	if err != nil {
		t.Fatal(err)
	}
	return lib
}

// TextPrefix writes the first n bytes of textFile, cut back to the last
// line end, to a file in t's temporary directory and returns its path and
// its bytes: a shorter text for a quick check that llama.cpp's tools and
// the project's binding read like the whole one.
func TextPrefix(t testing.TB, textFile string, n int) (string, []byte) {
	t.Helper()
	b, err := os.ReadFile(textFile)
	if err != nil {
		t.Fatal(err)
	}
	b = b[:bytes.LastIndexByte(b[:min(len(b), n)], '\n')+1]
	p := filepath.Join(t.TempDir(), strings.TrimSuffix(filepath.Base(textFile), ".txt")+"_prefix.txt")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p, b
}
