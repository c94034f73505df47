package llamacpp

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// LibEnv names the environment variable that points at the directory of
// llama.cpp's shared libraries when no directory is passed explicitly.
const LibEnv = "PHYSARIUM_LLAMA_LIB"

// SupportedGGML lists the ggml versions (ggml_version()) whose llama.cpp the
// binding was written for. The struct layouts are verified independently at
// load time, so a build of the same llama.cpp with another ggml version
// string would still be refused rather than misread.
var SupportedGGML = []string{"0.23.0"}

// SupportedRelease describes the supported llama.cpp build in words, for
// error messages and documentation.
const SupportedRelease = "llama.cpp as shipped in node-llama-cpp 3.21.1 (llama.cpp release v0.4.0, source commit 80fb11ac, ggml 0.23.0)"

// WhereFrom says where suitable libraries come from; every "not found"
// error ends with it.
const WhereFrom = "pass --llama-lib DIR or set " + LibEnv + "=DIR, where DIR holds libllama.so and libggml*.so of " +
	SupportedRelease + ": for example the bins/linux-x64 directory of the npm package " +
	"@node-llama-cpp/linux-x64@3.21.1 (npm i -E @node-llama-cpp/linux-x64@3.21.1), or the lib directory " +
	"of a llama.cpp build of that source with shared libraries (scripts/llama-runtime.sh installs one)"

// ErrUnavailable is returned by Load in a binary built without cgo.
var ErrUnavailable = errors.New("llamacpp: this binary was built without cgo (CGO_ENABLED=0), so it cannot load llama.cpp; rebuild with CGO_ENABLED=1 and a C compiler")

// ErrNotFound is wrapped by Load's error when the directory lacks a library.
var ErrNotFound = errors.New("llama.cpp libraries not found")

// ErrUnsupported is wrapped by Load's error when the libraries are of a
// llama.cpp version the binding does not support.
var ErrUnsupported = errors.New("unsupported llama.cpp version")

// Files names the three libraries the binding opens, by full path.
type Files struct {
	// GGMLBase is libggml-base (tensors, logging, version).
	GGMLBase string
	// GGML is libggml (backend registry and loader).
	GGML string
	// Llama is libllama.
	Llama string
}

// LibDir returns the directory to load llama.cpp from: flag when non-empty,
// else $PHYSARIUM_LLAMA_LIB. It fails, saying what to pass, when neither is set.
func LibDir(flag string) (string, error) {
	if flag != "" {
		return flag, nil
	}
	if d := os.Getenv(LibEnv); d != "" {
		return d, nil
	}
	return "", fmt.Errorf("llamacpp: no llama.cpp libraries given: %w; %s", ErrNotFound, WhereFrom)
}

// FindFiles locates libggml-base, libggml and libllama in dir, accepting the
// plain names (libllama.so), versioned sonames (libllama.so.0) and the npm
// package's names (libllama.v0.4.0.so).
func FindFiles(dir string) (Files, error) {
	st, err := os.Stat(dir)
	if err != nil {
		return Files{}, fmt.Errorf("llamacpp: llama.cpp library directory: %w: %w; %s", err, ErrNotFound, WhereFrom)
	}
	if !st.IsDir() {
		return Files{}, fmt.Errorf("llamacpp: %s is not a directory: %w; %s", dir, ErrNotFound, WhereFrom)
	}
	var f Files
	for _, want := range []struct {
		base string
		dst  *string
	}{{"libggml-base", &f.GGMLBase}, {"libggml", &f.GGML}, {"libllama", &f.Llama}} {
		p, err := findLib(dir, want.base)
		if err != nil {
			return Files{}, err
		}
		*want.dst = p
	}
	return f, nil
}

// findLib finds base.so, base.so.N... or base.vX.so in dir.
func findLib(dir, base string) (string, error) {
	plain := filepath.Join(dir, base+".so")
	if _, err := os.Stat(plain); err == nil {
		return plain, nil
	}
	var cands []string
	for _, pat := range []string{base + ".so.*", base + ".v*.so"} {
		m, _ := filepath.Glob(filepath.Join(dir, pat))
		cands = append(cands, m...)
	}
	sort.Strings(cands)
	for _, c := range cands {
		name := filepath.Base(c)
		rest := strings.TrimPrefix(name, base)
		// libggml.v0.4.0.so, not libggml-base.so or libggml-cpu-x64.so.
		if strings.HasPrefix(rest, ".") {
			return c, nil
		}
	}
	return "", fmt.Errorf("llamacpp: %s holds no %s.so (nor %s.so.N or %s.vX.so): %w; %s", dir, base, base, base, ErrNotFound, WhereFrom)
}

// TensorFunc is llama.cpp's graph evaluation callback (cb_eval), as
// llama-imatrix uses it: called with ask=true to ask whether the tensor's
// data is wanted (return true to get it), then with ask=false once the
// tensor is computed (return false to stop the evaluation). The Tensor is
// valid only during the call.
type TensorFunc func(t Tensor, ask bool) bool

// ContextParams configures a context.
type ContextParams struct {
	// NCtx is the total number of KV cells (all sequences together).
	NCtx int
	// NBatch is the logical batch size (the most tokens one Decode takes).
	NBatch int
	// NUBatch is the physical batch size; 0 means 512, llama.cpp's default.
	NUBatch int
	// NSeq is the number of sequences evaluated side by side.
	NSeq int
	// Threads is the number of threads the forward pass uses.
	Threads int
	// OnTensor, when set, is installed as the graph evaluation callback.
	OnTensor TensorFunc
}
