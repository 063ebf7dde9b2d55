#!/usr/bin/env bash
# Speed of llama31 against llama.cpp (node-llama-cpp's prebuilt CPU build) on a Llama 3.2 1B-shaped model
# with random weights (hidden 2048, 16 layers, 32 heads, 8 KV heads, intermediate 8192, tied 128256
# vocabulary, bf16): prompt processing of 512 tokens and generation of 128, same thread count, plus decode
# speed as a fraction of the memory-bandwidth limit (each engine's weight bytes per token over the read
# bandwidth measured beside it: llama31 bench sweeps its own weights once after each decode step, timed
# apart; the probe (tools/peer/bandwidth_probe.cpp) reads memory right before and after llama.cpp's run,
# which cannot be interleaved with its steps).
# -q q8_0|q4_0|q4_k_m runs both engines on the same GGUF file, written by `llama31 convert --type` with
# llama-quantize's per-tensor types and rounding (llama31 runs Q8_0 and Q4_0 tensors as they are and
# re-stores the K types as Q8_0); bf16 runs llama31 on the folder and llama.cpp on its bf16 GGUF.
# -q int4-g128|fp8 runs llama31 on the folder `llama31 quantize --type` writes in the published layout
# (AWQ INT4, Meta's FP8) and llama.cpp on the GGUF type of the same width (q4_0, q8_0): it has neither.
#
# usage: tools/bench_vs_llamacpp.sh [-t THREADS] [-r REPETITIONS] [-q bf16|q8_0|q4_0|q4_k_m|int4-g128|fp8]
#                                   [-b LLAMA31_BINARY] [-w WORKDIR]
# needs: a built llama31 (default build/release/llama31), `npm ci` in tools/peer, node, g++ with OpenMP.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
threads="$(nproc)"
repetitions=3
quant=bf16
binary="${root}/build/release/llama31"
work=""
while getopts "t:r:q:b:w:h" opt; do
  case "${opt}" in
    t) threads="${OPTARG}" ;;
    q) quant="${OPTARG}" ;;
    r) repetitions="${OPTARG}" ;;
    b) binary="${OPTARG}" ;;
    w) work="${OPTARG}" ;;
    *) sed -n '2,16p' "$0"; exit 2 ;;
  esac
done

die() { echo "bench_vs_llamacpp: $*" >&2; exit 1; }
[[ "${quant}" =~ ^(bf16|q8_0|q4_0|q4_k_m|int4-g128|fp8)$ ]] ||
  die "-q ${quant}: expected bf16, q8_0, q4_0, q4_k_m, int4-g128 or fp8"
peer_type="${quant}"  # the GGUF type llama.cpp runs
[[ "${quant}" == int4-g128 ]] && peer_type=q4_0
[[ "${quant}" == fp8 ]] && peer_type=q8_0
[[ -x "${binary}" ]] || die "no llama31 binary at ${binary} (build it, or pass -b)"
[[ -f "${root}/tools/peer/node_modules/node-llama-cpp/package.json" ]] ||
  die "tools/peer/node_modules is missing: run 'npm ci' in tools/peer"
command -v node > /dev/null || die "node is not on PATH"
if [[ -z "${work}" ]]; then
  work="$(mktemp -d -t llama31-bench-XXXXXX)"
  trap 'rm -rf "${work}"' EXIT
fi
mkdir -p "${work}"

model="${work}/llama-3.2-1b-shape"
gguf="${work}/llama-3.2-1b-shape-${peer_type}.gguf"
shape_flags=(--layers 16 --hidden 2048 --heads 32 --kv-heads 8 --intermediate 8192 --tied --dtype bf16)
if [[ ! -f "${model}/config.json" ]]; then  # a -w folder from an earlier run is reused
  help="$("${binary}" make-test-model --help)"
  missing=()
  for flag in --heads --kv-heads --intermediate --tied; do
    grep -q -- "${flag}" <<< "${help}" || missing+=("${flag}")
  done
  [[ ${#missing[@]} -eq 0 ]] || die "llama31 make-test-model lacks ${missing[*]}: cannot build the 1B-shaped model"
  echo "== writing the 1B-shaped model (${shape_flags[*]})" >&2
  "${binary}" make-test-model "${shape_flags[@]}" "${model}" >&2
fi
echo "== converting to GGUF ${peer_type}" >&2
[[ -f "${gguf}" ]] || "${binary}" convert -m "${model}" -o "${gguf}" --type "${peer_type}" > /dev/null 2> "${work}/convert.log"
ours_model="${gguf}"
[[ "${quant}" == bf16 ]] && ours_model="${model}"
if [[ "${quant}" == int4-g128 || "${quant}" == fp8 ]]; then
  ours_model="${work}/llama-3.2-1b-shape-${quant}"
  echo "== quantizing to ${quant}" >&2
  [[ -f "${ours_model}/config.json" ]] ||
    "${binary}" quantize -m "${model}" -o "${ours_model}" --type "${quant}" > /dev/null 2> "${work}/quantize.log"
fi

echo "== llama31 bench (${threads} threads)" >&2
ours="$("${binary}" bench -m "${ours_model}" -p 512 -n 128 -r "${repetitions}" -t "${threads}" --json | tail -n 1)"
# llama.cpp does not measure bandwidth itself: the probe reads memory right before and after its run.
g++ -O3 -march=native -fopenmp "${root}/tools/peer/bandwidth_probe.cpp" -o "${work}/bandwidth_probe"
bandwidth_before="$("${work}/bandwidth_probe" "${threads}" 1024)"
echo "== llama.cpp bench (${threads} threads)" >&2
theirs="$(cd "${root}/tools/peer" && node bench.mjs --model "${gguf}" --prompt 512 --gen 128 \
  --threads "${threads}" --repetitions "${repetitions}" | tail -n 1)"
bandwidth_after="$("${work}/bandwidth_probe" "${threads}" 1024)"

# llama.cpp reads its GGUF file's tensors per token (the model is tied: the embedding is the head); the
# file's size stands for them (its metadata is ~5 MB). llama31's own figure is what it holds in memory.
gguf_bytes="$(stat -c %s "${gguf}")"
OURS="${ours}" THEIRS="${theirs}" BEFORE="${bandwidth_before}" AFTER="${bandwidth_after}" THREADS="${threads}" QUANT="${quant}" PEER_TYPE="${peer_type}" \
  GGUF_BYTES="${gguf_bytes}" node -e '
const ours = JSON.parse(process.env.OURS), theirs = JSON.parse(process.env.THEIRS);
// llama31 measures its read bandwidth itself, a sweep after each decode step (llama31 bench: read_gb_per_s);
// for llama.cpp the mean of the probe before and after its run.
const peerGbps = (JSON.parse(process.env.BEFORE).read_gb_per_s + JSON.parse(process.env.AFTER).read_gb_per_s) / 2;
// Decode reads every matrix once per token (the output head included, the embedding table not).
const weightBytes = ours.bytes_read_per_token ?? ours.weight_bytes;
const theirBytes = Number(process.env.GGUF_BYTES);
const f = (x) => x.toFixed(2);
const pct = (x, bytes, gbps) => (100 * x * bytes / (gbps * 1e9)).toFixed(0) + "%";
console.log(`Llama 3.2 1B shape, ${process.env.QUANT}, ${process.env.THREADS} threads; bytes per token: llama31 ${(weightBytes / 1e9).toFixed(2)} GB, ` +
            `llama.cpp ${(theirBytes / 1e9).toFixed(2)} GB (its GGUF file); read bandwidth beside each decode run: ` +
            `llama31 ${f(ours.read_gb_per_s)} GB/s (its own sweep of the weights), llama.cpp ${f(peerGbps)} GB/s (probe)`);
console.log("");
console.log("| engine | pp512 tokens/s | tg128 tokens/s | decode / bandwidth limit |");
console.log("|---|---|---|---|");
console.log(`| llama31 (${ours.isa}) | ${f(ours.prefill_tokens_per_s)} | ${f(ours.decode_tokens_per_s)} | ${(100 * ours.decode_fraction_of_bandwidth).toFixed(0)}% of ${f(ours.read_gb_per_s)} GB/s |`);
const peerType = process.env.PEER_TYPE === process.env.QUANT ? "" : `, ${process.env.PEER_TYPE} GGUF`;
console.log(`| llama.cpp ${theirs.llama_cpp_release ?? ""} (node-llama-cpp 3.21.1, CPU${peerType}) | ${f(theirs.prefill_tokens_per_s)} | ` +
            `${f(theirs.decode_tokens_per_s)} | ${pct(theirs.decode_tokens_per_s, theirBytes, peerGbps)} of ${f(peerGbps)} GB/s |`);
console.log(`| llama31 / llama.cpp | ${f(ours.prefill_tokens_per_s / theirs.prefill_tokens_per_s)}x | ` +
            `${f(ours.decode_tokens_per_s / theirs.decode_tokens_per_s)}x | |`);'
