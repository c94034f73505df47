package gguf

import "errors"

// The kinds of refusal of a GGUF file: every error of Open and NewReader
// about the file's content matches one of them with errors.Is, and its
// message names the file and, where there is one, the key or the tensor.
var (
	// ErrFormat: not GGUF, an unsupported version, or a field whose value
	// the format forbids (unknown type, bad shape, duplicate name, ...).
	ErrFormat = errors.New("gguf: invalid file")
	// ErrTruncated: the file ends before a count or a length says it should.
	ErrTruncated = errors.New("gguf: truncated file")
	// ErrOffset: a tensor offset that is misaligned, out of order or
	// overlapping, or tensor data past the end of the file.
	ErrOffset = errors.New("gguf: bad tensor offset")
	// ErrLimit: a string longer than MaxStringLen or an array of more than
	// MaxArrayLen elements, the caps llama.cpp also enforces.
	ErrLimit = errors.New("gguf: over a limit")
)

// fileError is a refusal of one file: the reader's words, and their kind.
type fileError struct {
	kind error
	err  error
}

func (e *fileError) Error() string   { return e.err.Error() }
func (e *fileError) Unwrap() []error { return []error{e.kind, e.err} }
