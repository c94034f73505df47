package ggmlref

// Verdict is what llama.cpp makes of a GGUF file.
type Verdict struct {
	Accepted   bool
	Reason     string // the first error line ggml logged, or the loader's bounds rule
	Tensors    int64  // tensor count, when accepted
	DataOffset uint64 // gguf_get_data_offset, when accepted
}
