//go:build !cgo

package llamacpp

// Library is llama.cpp loaded into the process; without cgo it cannot exist.
type Library struct {
	// Dir is the directory the libraries were loaded from.
	Dir string
	// Files are the libraries opened.
	Files Files
	// GGMLVersion is ggml_version() of the loaded libggml-base.
	GGMLVersion string
	// GGMLCommit is ggml_commit() of the loaded libggml-base.
	GGMLCommit string
}

// Load always fails without cgo, with ErrUnavailable.
func Load(dir string) (*Library, error) { return nil, ErrUnavailable }

// String names the build.
func (l *Library) String() string { return "llama.cpp (unavailable without cgo)" }

// SystemInfo returns "" without cgo.
func (l *Library) SystemInfo() string { return "" }

// Model is a GGUF model loaded by llama.cpp; without cgo it cannot exist.
type Model struct {
	// Path is the file the model was loaded from.
	Path string
	// NVocab is the number of tokens in the vocabulary.
	NVocab int
	// AddBOS and AddEOS say whether tokenizing with special tokens adds them.
	AddBOS, AddEOS bool
	// BOS is the beginning-of-sequence token.
	BOS int32
	// NCtxTrain is the context length the model was trained with.
	NCtxTrain int
	// Desc is llama.cpp's one-line description.
	Desc string
}

// LoadModel fails without cgo.
func (l *Library) LoadModel(path string) (*Model, error) { return nil, ErrUnavailable }

// Close does nothing without cgo.
func (m *Model) Close() {}

// Tokenize fails without cgo.
func (m *Model) Tokenize(text []byte, addSpecial, parseSpecial bool) ([]int32, error) {
	return nil, ErrUnavailable
}

// Tensor is a node of the graph being evaluated; without cgo it cannot exist.
type Tensor struct{}

// Context is an evaluation context; without cgo it cannot exist.
type Context struct{}

// NewContext fails without cgo.
func (m *Model) NewContext(p ContextParams) (*Context, error) { return nil, ErrUnavailable }

// Close does nothing without cgo.
func (c *Context) Close() {}

// Clear does nothing without cgo.
func (c *Context) Clear() {}

// Decode fails without cgo.
func (c *Context) Decode(b *Batch) error { return ErrUnavailable }

// Rows fails without cgo.
func (c *Context) Rows(i, n int) ([]float32, error) { return nil, ErrUnavailable }

// Batch is a llama_batch; without cgo it cannot exist.
type Batch struct{}

// NewBatch fails without cgo.
func NewBatch(n int) (*Batch, error) { return nil, ErrUnavailable }

// Reset does nothing without cgo.
func (b *Batch) Reset() {}

// Len is 0 without cgo.
func (b *Batch) Len() int { return 0 }

// Add fails without cgo.
func (b *Batch) Add(tokens []int32, pos0, seq, outFrom int) (int, error) { return 0, ErrUnavailable }

// Close does nothing without cgo.
func (b *Batch) Close() {}
