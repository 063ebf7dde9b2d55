#!/usr/bin/env bash
# The whole test suite, as CI runs it: the release build's tests, then the same tests under
# AddressSanitizer + UndefinedBehaviorSanitizer. Peer comparisons (label "peer", they need
# `npm ci` in tools/peer) are excluded; run them with tools/test-peer.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc)
cmake --preset release >/dev/null
cmake --build --preset release -j "$jobs"
ctest --preset release -LE peer -j "$jobs"
if [ "${LLAMA31_SKIP_ASAN:-0}" != 1 ]; then
  cmake --preset asan >/dev/null
  cmake --build --preset asan -j "$jobs"
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --preset asan -LE peer -j "$jobs"
fi
