#!/usr/bin/env bash
# Serving throughput of `llama31 serve` against llama.cpp (node-llama-cpp's prebuilt CPU build, N sequences in
# one context, batched as llama.cpp's server batches them) on the same weights and thread count: aggregate
# generated tokens per second and time to first token at 1, 4 and 16 concurrent clients.
# Model: Llama 3.2 1B shapes with random weights, bf16 (as tools/bench_vs_llamacpp.sh).
#
# usage: tools/bench_serve_vs_llamacpp.sh [-t THREADS] [-c 1,4,16] [-p PROMPT] [-g GEN] [-b BINARY] [-w WORKDIR]
# needs: a built llama31 (default build/release/llama31), `npm ci` in tools/peer, node.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
threads="$(nproc)"
clients="1,4,16"
prompt=128
gen=64
binary="${root}/build/release/llama31"
work=""
while getopts "t:c:p:g:b:w:h" opt; do
  case "${opt}" in
    t) threads="${OPTARG}" ;;
    c) clients="${OPTARG}" ;;
    p) prompt="${OPTARG}" ;;
    g) gen="${OPTARG}" ;;
    b) binary="${OPTARG}" ;;
    w) work="${OPTARG}" ;;
    *) sed -n '2,9p' "$0"; exit 2 ;;
  esac
done

die() { echo "bench_serve_vs_llamacpp: $*" >&2; exit 1; }
[[ -x "${binary}" ]] || die "no llama31 binary at ${binary} (build it, or pass -b)"
[[ -f "${root}/tools/peer/node_modules/node-llama-cpp/package.json" ]] ||
  die "tools/peer/node_modules is missing: run 'npm ci' in tools/peer"
server=""
temporary=""
cleanup() {
  [[ -z "${server}" ]] || kill "${server}" 2>/dev/null || true
  [[ -z "${temporary}" ]] || rm -rf "${temporary}"
}
trap cleanup EXIT
if [[ -z "${work}" ]]; then
  work="$(mktemp -d -t llama31-serve-bench-XXXXXX)"
  temporary="${work}"
fi
mkdir -p "${work}"

model="${work}/llama-3.2-1b-shape"
gguf="${work}/llama-3.2-1b-shape-bf16.gguf"
if [[ ! -f "${model}/config.json" ]]; then
  echo "== writing the 1B-shaped model" >&2
  "${binary}" make-test-model --layers 16 --hidden 2048 --heads 32 --kv-heads 8 --intermediate 8192 --tied \
    --dtype bf16 "${model}" >&2
fi
[[ -f "${gguf}" ]] || "${binary}" convert -m "${model}" --to gguf -o "${gguf}" --dtype bf16 > /dev/null 2> "${work}/convert.log"

max_clients="$(tr ',' '\n' <<< "${clients}" | sort -n | tail -n 1)"
echo "== llama31 serve (${threads} threads, --max-batch ${max_clients})" >&2
"${binary}" serve -m "${model}" --port 0 -t "${threads}" --max-batch "${max_clients}" \
  -c $(( prompt + gen + 16 )) > "${work}/serve.out" 2> "${work}/serve.err" &
server=$!
for _ in $(seq 1 600); do
  grep -q "listening on" "${work}/serve.out" 2>/dev/null && break
  kill -0 "${server}" 2>/dev/null || { cat "${work}/serve.err" >&2; die "llama31 serve exited"; }
  sleep 0.5
done
url="$(grep -o 'http://[^ ]*' "${work}/serve.out" | head -n 1)"
[[ -n "${url}" ]] || die "llama31 serve did not report its address"
ours="$(cd "${root}/tools/peer" && node serve_client_bench.mjs --url "${url}" --clients "${clients}" \
  --prompt "${prompt}" --gen "${gen}" | tail -n 1)"
kill "${server}"; wait "${server}" 2>/dev/null || true
server=""

echo "== llama.cpp (${threads} threads, one context with N sequences)" >&2
theirs="$(cd "${root}/tools/peer" && node serve_bench.mjs --model "${gguf}" --clients "${clients}" \
  --prompt "${prompt}" --gen "${gen}" --threads "${threads}" | tail -n 1)"

OURS="${ours}" THEIRS="${theirs}" THREADS="${threads}" node -e '
const ours = JSON.parse(process.env.OURS), theirs = JSON.parse(process.env.THEIRS);
const f = (x) => x.toFixed(2);
console.log(`Llama 3.2 1B shape, bf16, ${process.env.THREADS} threads; prompt ${ours.prompt_tokens} tokens, ` +
            `${ours.gen_tokens} generated per client`);
console.log("");
console.log("| clients | llama31 tokens/s | llama.cpp tokens/s | llama31 / llama.cpp | llama31 TTFT mean / max s | llama.cpp TTFT mean / max s |");
console.log("|---|---|---|---|---|---|");
for (let i = 0; i < ours.levels.length; i++) {
  const a = ours.levels[i], b = theirs.levels[i];
  console.log(`| ${a.clients} | ${f(a.tokens_per_s)} | ${f(b.tokens_per_s)} | ${f(a.tokens_per_s / b.tokens_per_s)}x | ` +
              `${f(a.ttft_mean_s)} / ${f(a.ttft_max_s)} | ${f(b.ttft_mean_s)} / ${f(b.ttft_max_s)} |`);
}
const one = ours.levels.find((l) => l.clients === 1), top = ours.levels[ours.levels.length - 1];
if (one) console.log(`\nllama31 at ${top.clients} clients: ${f(top.tokens_per_s / one.tokens_per_s)}x its single-client rate`);
'
