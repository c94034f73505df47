package cli

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/physarium/physarium-gguf/gguf"
)

// fixtureDir holds the models the package's tests share; TestMain removes
// it.
var fixtureDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "physarium-cli-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fixtureDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

var typeModelsOnce = struct {
	sync.Once
	paths map[gguf.Type]string
	err   error
}{}

// typeModels returns a one-layer model of every type testmodel accepts,
// written once per test binary by the testmodel command: n_embd 64 and
// n_ff 96 for the types of 32-value (or smaller) blocks, 256 and 256 for
// the others, 2 heads, 260 tokens. TestTestmodelTypes checks them and
// TestDumpEqualsGGML dumps them, so each type's encoding (slow for the
// i-quants under -race) is paid once.
func typeModels(t *testing.T) map[gguf.Type]string {
	t.Helper()
	o := &typeModelsOnce
	o.Do(func() {
		o.paths = map[gguf.Type]string{}
		for _, name := range supportedTypeNames() {
			typ, _ := gguf.ParseType(name)
			ti, _ := typ.Info()
			embd, ff := "64", "96"
			if ti.BlockSize > 32 {
				embd, ff = "256", "256"
			}
			p := filepath.Join(fixtureDir, "type-"+name+".gguf")
			var stdout, stderr bytes.Buffer
			a := New("test")
			a.Stdout, a.Stderr = &stdout, &stderr
			args := []string{Name, "testmodel", "--layers", "1", "--embd", embd, "--ff", ff, "--heads", "2", "--vocab", "260", "--type", name, p}
			if err := a.RunContext(context.Background(), args); err != nil {
				o.err = fmt.Errorf("%q: %w (stderr %q)", args, err, stderr.String())
				return
			}
			o.paths[typ] = p
		}
	})
	if o.err != nil {
		t.Fatal(o.err)
	}
	return o.paths
}
