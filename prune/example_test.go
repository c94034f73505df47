package prune_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/physarium/physarium-gguf/gguf"
	"github.com/physarium/physarium-gguf/kernel"
	"github.com/physarium/physarium-gguf/prune"
	"github.com/physarium/physarium-gguf/testmodels"
)

// Pruning a small generated llama model at 30 % sparsity: every rate of the
// report names its denominator, and the output carries the same figures in
// its physarium.* keys.
func Example() {
	dir, err := os.MkdirTemp("", "prune-example")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.RemoveAll(dir)
	in, out := filepath.Join(dir, "model.gguf"), filepath.Join(dir, "model.pruned.gguf")
	cfg := testmodels.DefaultConfig()
	cfg.Layers = 1
	if err := testmodels.Write(in, cfg, gguf.CreateOptions{}); err != nil {
		fmt.Println(err)
		return
	}
	params := kernel.DefaultParams()
	params.Mode, params.Sparsity = kernel.Sparsity, 0.3
	r, err := prune.File(context.Background(), in, out, prune.Options{Params: &params, Threads: 1})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("Physarium-v%d %s, %s mode\n", r.Version, r.Method, r.Mode)
	fmt.Printf("killed over target: %s\n", r.OverTarget)
	fmt.Printf("coverage:           %s\n", r.Coverage)

	f, err := gguf.Open(out)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer f.Close()
	kv, _ := f.KV("physarium.killed")
	killed, _ := kv.Value.AsUint64()
	fmt.Println("physarium.killed:", killed)
	// Output:
	// Physarium-v1 magnitude-flow, sparsity mode
	// killed over target: 30.0003 % (196610 of 655360 target weights)
	// coverage:           100.0000 % (655360 of 655360 target weights)
	// physarium.killed: 196610
}
