#!/usr/bin/env bash
# The whole test suite, as CI runs it: the release build's tests, then the same tests under
# AddressSanitizer + UndefinedBehaviorSanitizer. The real-client tests of the server (label "clients":
# the openai and Hugging Face npm clients, curl, headless Chromium) run in the release pass, after
# `npm ci` in tools/server-clients. Peer comparisons (label "peer", they need `npm ci` in tools/peer,
# ~700 MB) are excluded; run them with tools/test-peer.sh. The label filters live in CMakePresets.json (a
# -LE on the command line does not override a test preset's filter).
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc)
if [ ! -d tools/server-clients/node_modules ] || [ tools/server-clients/package-lock.json -nt tools/server-clients/node_modules ]; then
  npm ci --prefix tools/server-clients --no-audit --no-fund
fi
cmake --preset release >/dev/null
cmake --build --preset release -j "$jobs"
ctest --preset release -j "$jobs"
if [ "${LLAMA31_SKIP_ASAN:-0}" != 1 ]; then
  cmake --preset asan >/dev/null
  cmake --build --preset asan -j "$jobs"
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --preset asan -j "$jobs"
fi
