// log_flush: linked into llama.cpp's own tools (llama-perplexity,
// llama-imatrix) when scripts/llama-runtime.sh builds them. llama.cpp's
// common logger writes from a worker thread and is deliberately never
// destroyed, so what a tool logs just before it exits can be lost: under
// load, llama-perplexity's "Final estimate" line often was. This registers
// an exit handler that stops the worker once it has written every queued
// line.

#include <cstdlib>

#include "log.h"

namespace {

struct drain_log_at_exit {
    drain_log_at_exit() {
        common_log_main(); // create the logger first, so it outlives the handler
        std::atexit([] { common_log_pause(common_log_main()); });
    }
} drain;

} // namespace
