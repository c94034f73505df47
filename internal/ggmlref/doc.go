// Package ggmlref is the bit-exactness oracle for package quantize: it loads
// the real ggml (libggml-base.so of the llama.cpp installation named by the
// environment variable PHYSARIUM_LLAMA) at run time with dlopen and calls its
// reference quantizers (ggml_quantize_chunk without an importance matrix) and
// its per-type to_float and from_float_ref functions.
//
// The package has no link-time dependency on ggml, so it builds anywhere; it
// needs cgo (and not the purego tag) to do anything. Without cgo, Load returns
// ErrNoCgo. Tests that use it call Load and t.Skip only when PHYSARIUM_LLAMA is
// unset (ErrNoLlama) or the build has no cgo (ErrNoCgo).
package ggmlref

import (
	"errors"
	"os"
	"path/filepath"
)

// EnvVar names the environment variable that points at the llama.cpp
// installation (with lib/libggml-base.so and src/ beneath it).
const EnvVar = "PHYSARIUM_LLAMA"

// ErrNoLlama is returned by Load when PHYSARIUM_LLAMA is unset or empty.
var ErrNoLlama = errors.New("ggmlref: " + EnvVar + " is not set")

// ErrNoCgo is returned by Load in a build without cgo (CGO_ENABLED=0 or
// -tags purego), where the oracle cannot run; tests skip on it as on
// ErrNoLlama, since such a build cannot check anything against ggml.
var ErrNoCgo = errors.New("ggmlref: the ggml oracle needs cgo (this build has CGO_ENABLED=0 or -tags purego)")

// LibraryPath returns the path of libggml-base.so under PHYSARIUM_LLAMA, or
// ErrNoLlama.
func LibraryPath() (string, error) {
	root := os.Getenv(EnvVar)
	if root == "" {
		return "", ErrNoLlama
	}
	return filepath.Join(root, "lib", "libggml-base.so"), nil
}
