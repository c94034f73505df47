package gguf_test

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/physarium/physarium-gguf/gguf"
)

// Write a one-tensor file, then open it and list its header.
func Example() {
	dir, err := os.MkdirTemp("", "gguf-example")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "tiny.gguf")

	h := gguf.Header{
		KVs: []gguf.KV{
			{Key: "general.architecture", Value: gguf.String("llama")},
			{Key: "llama.block_count", Value: gguf.Uint32(1)},
		},
		Tensors: []gguf.TensorInfo{{Name: "output_norm.weight", Type: gguf.TypeF32, Shape: []uint64{4}}},
	}
	w, err := gguf.Create(path, h, gguf.CreateOptions{})
	if err != nil {
		panic(err)
	}
	if _, err := w.Write(make([]byte, 16)); err != nil { // four F32 zeros
		panic(err)
	}
	if err := w.Close(); err != nil {
		panic(err)
	}

	f, err := gguf.Open(path)
	if err != nil {
		panic(err)
	}
	defer f.Close()
	fmt.Println("version", f.Version, "alignment", f.Alignment, "data at", f.DataOffset)
	for _, kv := range f.KVs {
		fmt.Println(kv.Key, kv.Value.Type, kv.Value.Data)
	}
	for _, t := range f.Tensors {
		fmt.Println(t.Name, t.Type, t.Shape, t.Offset, t.Bytes())
	}
	// Output:
	// version 3 alignment 32 data at 160
	// general.architecture STRING llama
	// llama.block_count UINT32 1
	// output_norm.weight F32 [4] 0 16
}
