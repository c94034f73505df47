// Package llamacpp binds llama.cpp, loaded at run time from the user's own
// build, for the commands that evaluate models with it (eval, and the
// planned calibrate).
//
// # Loading
//
// Load(dir) opens libggml-base, libggml and libllama from dir with dlopen
// (plain, soname-versioned and the npm package's libllama.v0.4.0.so names
// are all found), then lets ggml load the backends it finds there
// (ggml_backend_load_all_from_path: the CPU backend of a release or of the
// npm package @node-llama-cpp/linux-x64 is a separate libggml-cpu-<arch>.so,
// of which it picks the best for this CPU). Nothing links against llama.cpp:
// the binary builds and every other command runs without it, and a build
// with CGO_ENABLED=0 still compiles (Load then returns ErrUnavailable).
//
// # Supported versions and the ABI check
//
// The binding supports one llama.cpp: SupportedRelease (the libraries of
// node-llama-cpp 3.21.1, built from llama.cpp source commit 80fb11ac with
// ggml 0.23.0). A library of another version is refused by Load, before any
// struct is passed, by three checks: every symbol the binding calls must
// resolve; ggml_version() must be one of SupportedGGML; and the two structs
// passed by value (llama_model_params, llama_context_params), which the C
// shim mirrors, are probed: the library's default-params functions are
// called into canary-filled buffers larger than the mirrors, must write
// exactly the mirrored size (on x86-64) and must read back llama.cpp's
// documented defaults at the mirrored offsets. A field added, removed or
// moved fails the probe instead of being misread.
//
// # Why a cgo shim of our own
//
// The alternative was github.com/hybridgroup/yzma (purego). Its module brings
// about fifty indirect dependencies into go.sum (hashicorp/go-getter with the
// AWS and Google Cloud SDKs, for downloading llama.cpp), calls through
// jupiterrider/ffi, which needs libffi at run time, and mirrors the structs
// of the llama.cpp release it tracks, not this one. A few hundred lines of C
// (shim.c) that dlopen the libraries keep go.sum unchanged, pass the structs
// with the C compiler's own ABI, and put the version check where the structs
// are. The cost is that eval needs cgo; without it the command says so.
//
// # Evaluation
//
// Evaluate computes perplexity exactly as llama.cpp's llama-perplexity does
// (the same figure to its 4 printed decimals, which the tests check by
// running llama-perplexity) and, against a base model, the statistics of
// llama-perplexity --kl-divergence. All models are evaluated chunk by chunk
// in lockstep, so the base model's distributions are held in memory for one
// chunk group only and no logits file is written unless asked for.
//
// # Graph access
//
// ContextParams.OnTensor installs llama.cpp's graph evaluation callback
// (cb_eval, as llama-imatrix uses it); the Tensor it receives gives the
// node's name, operation, type, shape and data.
package llamacpp
