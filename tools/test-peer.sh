#!/usr/bin/env bash
# Peer comparisons against llama.cpp (node-llama-cpp 3.21.1, ~700 MB from npm): the tests labeled
# "peer", which the default suite (tools/test.sh) skips.
set -euo pipefail
cd "$(dirname "$0")/.."
(cd tools/peer && npm ci --no-audit --no-fund)
cmake --preset release >/dev/null
cmake --build --preset release -j "$(nproc)"
ctest --test-dir build/release -L peer --output-on-failure --no-tests=error
