// Package llamacpp runs the real llama.cpp on GGUF files from Go tests.
//
// The runtime (the prebuilt libllama/libggml of the npm package
// @node-llama-cpp/linux-x64, their exact llama.cpp source, and our C tools
// compiled against them) is installed by scripts/llama-runtime.sh, which prints
// PHYSARIUM_LLAMA=<dir> as its last line. This package finds that directory
// only through the PHYSARIUM_LLAMA environment variable:
//
//	export "$(scripts/llama-runtime.sh | tail -n1)"
//	go test ./testmodels/llamacpp/
//
// Tests call Require, which skips when the variable is unset and fails when it
// is set but the runtime is incomplete. The package depends on the standard
// library only, so any test in the project can import it.
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
	"strconv"
	"strings"
	"testing"
	"time"
)

// EnvVar names the environment variable that holds the runtime directory
// created by scripts/llama-runtime.sh.
const EnvVar = "PHYSARIUM_LLAMA"

// PerplexityTool is the file name, under <runtime>/bin, of the program built
// from tools/llamacpp/perplexity.c.
const PerplexityTool = "perplexity"

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

// Check reports whether dir holds a complete runtime: the shipped libllama
// under lib/ and every tool this package runs, executable, under bin/.
func Check(dir string) error {
	lib := filepath.Join(dir, "lib", libllama)
	if _, err := os.Stat(lib); err != nil {
		return fmt.Errorf("llamacpp: runtime %s (from $%s) is incomplete: %w; run scripts/llama-runtime.sh", dir, EnvVar, err)
	}
	bin := filepath.Join(dir, "bin", PerplexityTool)
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

// stderrTail bounds how much of the tool's stderr an error message carries.
const stderrTail = 2048

// Perplexity loads model with the shipped libllama (CPU, one thread) and
// measures its perplexity over textFile with chunks of nctx tokens, by running
// <runtime>/bin/perplexity. A model that llama.cpp refuses, a missing file, a
// text too short for two chunks, or a tool that crashes yields an error naming
// the files and carrying llama.cpp's own message. Cancelling ctx kills the tool.
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
	for _, f := range []struct{ what, path string }{{"model", model}, {"text", textFile}} {
		st, err := os.Stat(f.path)
		if err != nil {
			return Result{}, fmt.Errorf("llamacpp: perplexity: %s %s: %w", f.what, f.path, err)
		}
		if !st.Mode().IsRegular() {
			return Result{}, fmt.Errorf("llamacpp: perplexity: %s %s is not a regular file", f.what, f.path)
		}
	}

	cmd := exec.CommandContext(ctx, filepath.Join(dir, "bin", PerplexityTool),
		"-m", model, "-f", textFile, "-c", strconv.Itoa(nctx))
	var stdout bytes.Buffer
	stderr := &tailBuffer{max: stderrTail}
	cmd.Stdout = &stdout
	cmd.Stderr = stderr
	cmd.WaitDelay = 5 * time.Second
	runErr := cmd.Run()
	if runErr != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return Result{}, fmt.Errorf("llamacpp: perplexity of %s on %s: %w", model, textFile, ctxErr)
		}
		return Result{}, fmt.Errorf("llamacpp: perplexity of %s on %s: %w: %s", model, textFile, runErr, lastLines(stderr.String(), 4))
	}
	r, err := parseResult(stdout.String())
	if err != nil {
		return Result{}, fmt.Errorf("llamacpp: perplexity of %s on %s: %w", model, textFile, err)
	}
	return r, nil
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

// parseResult reads the tool's final stdout line,
// "ppl=X stderr=X chunks=N tokens=N scored=N".
func parseResult(out string) (Result, error) {
	out = strings.TrimSpace(out)
	if out == "" {
		return Result{}, errors.New("no result line on stdout")
	}
	line := out[strings.LastIndexByte(out, '\n')+1:]
	var r Result
	seen := map[string]bool{}
	for _, field := range strings.Fields(line) {
		k, v, ok := strings.Cut(field, "=")
		if !ok {
			return Result{}, fmt.Errorf("malformed result line %q", line)
		}
		var err error
		switch k {
		case "ppl":
			r.PPL, err = strconv.ParseFloat(v, 64)
		case "stderr":
			r.StdErr, err = strconv.ParseFloat(v, 64)
		case "chunks":
			r.Chunks, err = strconv.Atoi(v)
		case "tokens":
			r.Tokens, err = strconv.Atoi(v)
		case "scored":
			r.Scored, err = strconv.Atoi(v)
		default:
			continue
		}
		if err != nil {
			return Result{}, fmt.Errorf("malformed %s in result line %q: %w", k, line, err)
		}
		seen[k] = true
	}
	for _, k := range []string{"ppl", "stderr", "chunks", "tokens", "scored"} {
		if !seen[k] {
			return Result{}, fmt.Errorf("result line %q lacks %s", line, k)
		}
	}
	if math.IsNaN(r.PPL) || math.IsInf(r.PPL, 0) || r.PPL <= 0 {
		return Result{}, fmt.Errorf("perplexity %v is not a positive finite number", r.PPL)
	}
	return r, nil
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
