//go:build cgo

package llamacpp_test

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/physarium/physarium-gguf/llamacpp"
	rt "github.com/physarium/physarium-gguf/testmodels/llamacpp"
)

// helperEnv makes TestLoadHelper load the directory it names and print the
// outcome: Load is once per process, so each refusal runs in a child.
const helperEnv = "PHYSARIUM_TEST_LOAD_DIR"

func TestLoadHelper(t *testing.T) {
	dir := os.Getenv(helperEnv)
	if dir == "" {
		t.Skip("helper for TestLoadRefusesOtherVersions")
	}
	lib, err := llamacpp.Load(dir)
	switch {
	case errors.Is(err, llamacpp.ErrUnsupported):
		fmt.Printf("UNSUPPORTED %v\n", err)
	case err != nil:
		fmt.Printf("ERROR %v\n", err)
	default:
		fmt.Printf("LOADED %s\n", lib)
	}
}

// fakeSource builds stand-ins for llama.cpp's libraries: every symbol the
// binding resolves, with parameter defaults of the supported layout, and a
// ggml_version of VERSION. GROW appends a field to llama_context_params, as
// a newer llama.cpp would.
const fakeSource = `
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#define STUB(name) void name(void) {}
#ifdef BASE
const char *ggml_version(void) { return VERSION; }
const char *ggml_commit(void) { return "fake"; }
STUB(ggml_get_name) STUB(ggml_op_desc) STUB(ggml_type_name) STUB(ggml_nbytes) STUB(ggml_backend_tensor_get)
#endif
#ifdef GGML
void ggml_backend_load_all_from_path(const char *dir) { (void)dir; }
size_t ggml_backend_dev_count(void) { return 1; }
#endif
#ifdef LLAMA
struct mp { void *a, *b; int32_t ngl, split, load, lazy, main_gpu; void *ts, *pcb, *pcbu, *kvo; bool vo, ct, ueb, nh, na, mtp; };
struct cp { uint32_t u[7]; int32_t nt, ntb, e[5]; float f[6]; uint32_t yoc; float dt; void *cb, *cbu; int32_t tk, tv; void *ab, *abd;
            bool emb, okqv, np, oo, swa, kvu; void *s; size_t ns; void *other;
#ifdef GROW
            int64_t added;
#endif
};
struct mp llama_model_default_params(void) { struct mp m; memset(&m, 0, sizeof m); m.ngl = -1; m.split = 1; m.ueb = true; return m; }
struct cp llama_context_default_params(void) {
    struct cp c; memset(&c, 0, sizeof c);
    uint32_t u[7] = {512, 2048, 512, 1, 0, 0, 1}; memcpy(c.u, u, sizeof u);
    c.nt = c.ntb = 4; c.e[4] = -1; c.f[2] = c.f[3] = c.f[4] = c.f[5] = -1; c.dt = -1; c.tk = c.tv = 1;
    c.okqv = c.np = c.oo = c.swa = true;
    return c;
}
STUB(llama_backend_init) STUB(llama_log_set) STUB(llama_model_load_from_file) STUB(llama_model_free)
STUB(llama_init_from_model) STUB(llama_free) STUB(llama_model_get_vocab) STUB(llama_model_n_ctx_train)
STUB(llama_model_desc) STUB(llama_vocab_n_tokens) STUB(llama_vocab_get_add_bos) STUB(llama_vocab_get_add_eos)
STUB(llama_vocab_bos) STUB(llama_tokenize) STUB(llama_batch_init) STUB(llama_batch_free) STUB(llama_decode)
STUB(llama_get_logits_ith) STUB(llama_get_memory) STUB(llama_memory_clear) STUB(llama_n_ctx) STUB(llama_synchronize)
#ifndef MISSING
STUB(llama_print_system_info)
#endif
#endif
`

// fakeLibs compiles the three stand-ins into a new directory.
func fakeLibs(t *testing.T, version string, defs ...string) string {
	t.Helper()
	if _, err := exec.LookPath("gcc"); err != nil {
		t.Skip("gcc not found")
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "fake.c")
	if err := os.WriteFile(src, []byte(fakeSource), 0o644); err != nil {
		t.Fatal(err)
	}
	for lib, def := range map[string]string{"libggml-base.so": "BASE", "libggml.so": "GGML", "libllama.so": "LLAMA"} {
		args := []string{"-shared", "-fPIC", "-o", filepath.Join(dir, lib), "-D" + def, `-DVERSION="` + version + `"`}
		for _, d := range defs {
			args = append(args, "-D"+d)
		}
		if out, err := exec.Command("gcc", append(args, src)...).CombinedOutput(); err != nil {
			t.Fatalf("gcc: %v: %s", err, out)
		}
	}
	return dir
}

func loadInChild(t *testing.T, dir string) string {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestLoadHelper$", "-test.count=1")
	cmd.Env = append(os.Environ(), helperEnv+"="+dir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v: %s", err, out)
	}
	return string(out)
}

// TestLoadRefusesOtherVersions: a library set of another version (another
// ggml version, a missing symbol, or a grown llama_context_params) is
// refused at load time with ErrUnsupported and the supported version named,
// before anything is called with a mirrored struct; the stand-ins of the
// supported layout and version load.
func TestLoadRefusesOtherVersions(t *testing.T) {
	for _, tc := range []struct {
		name, version string
		defs          []string
		want          string
	}{
		{"supported layout", llamacpp.SupportedGGML[0], nil, "LOADED"},
		{"other ggml version", "0.99.0", nil, "UNSUPPORTED llamacpp: refusing llama.cpp in"},
		{"missing symbol", llamacpp.SupportedGGML[0], []string{"MISSING"}, "lacks the symbol llama_print_system_info"},
		{"grown context params", llamacpp.SupportedGGML[0], []string{"GROW"}, "differs from the layout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := loadInChild(t, fakeLibs(t, tc.version, tc.defs...))
			t.Log(strings.TrimSpace(strings.Split(out, "\n")[0]))
			if !strings.Contains(out, tc.want) {
				t.Errorf("child printed %q, want %q", out, tc.want)
			}
			if tc.want != "LOADED" && (!strings.Contains(out, "UNSUPPORTED") || !strings.Contains(out, "node-llama-cpp 3.21.1")) {
				t.Errorf("child printed %q, want an ErrUnsupported naming the supported version", out)
			}
		})
	}
}

// TestLoadNotFound: a directory without the libraries, or none at all, is
// refused with ErrNotFound and what to pass.
func TestLoadNotFound(t *testing.T) {
	for _, dir := range []string{t.TempDir(), filepath.Join(t.TempDir(), "nope")} {
		_, err := llamacpp.Load(dir)
		if !errors.Is(err, llamacpp.ErrNotFound) || !strings.Contains(err.Error(), "--llama-lib") || !strings.Contains(err.Error(), "@node-llama-cpp/linux-x64") {
			t.Errorf("Load(%s) = %v, want ErrNotFound saying what to pass", dir, err)
		}
	}
	t.Setenv(llamacpp.LibEnv, "")
	if _, err := llamacpp.LibDir(""); !errors.Is(err, llamacpp.ErrNotFound) || !strings.Contains(err.Error(), llamacpp.LibEnv) {
		t.Errorf("LibDir with nothing set: %v", err)
	}
}

// TestFindFilesNames: the npm package's versioned names are found, and
// libggml-base or libggml-cpu are never taken for libggml.
func TestFindFilesNames(t *testing.T) {
	dir := rt.Require(t)
	f, err := llamacpp.FindFiles(rt.LibDir(dir))
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Base(f.Llama) != "libllama.v0.4.0.so" || filepath.Base(f.GGML) != "libggml.v0.4.0.so" || filepath.Base(f.GGMLBase) != "libggml-base.so" {
		t.Errorf("FindFiles = %+v", f)
	}
}
