// Package gguf reads and writes GGUF, the model file format of llama.cpp.
//
// Reading: Open reads and validates a file's header; NewReader does the
// same over any io.ReaderAt. The File lists the metadata (KVs, in file
// order) and the tensor infos (Tensors); TensorReader streams one tensor's
// bytes. The rules are those of llama.cpp's parser, which accepts and
// refuses the same files (see the parity test), and every count, length,
// type, shape and offset is checked before use: memory follows the
// header's real size, strings and arrays are capped (MaxStringLen,
// MaxArrayLen), and large arrays stay in the file (ArrayRef). Errors name
// the file and the key or tensor.
//
// Writing: Create (or CreateDeferred, for a header known only at the end)
// takes a Header, computes the canonical tensor offsets and streams the
// file to a temporary file that Close renames into place; nothing partial
// is left at the target.
//
// Types: Type is a ggml tensor type with its block layout (Type.Info);
// ValueType and Value are the metadata types, with one constructor per
// type (Uint32, String, Strings, ...).
package gguf
