// Shared helpers of the llama.cpp peer scripts: argument parsing and loading llama.cpp (CPU, prebuilt
// binaries from the node-llama-cpp npm package, never built or downloaded at run time).
import {getLlama, LlamaLogLevel} from "node-llama-cpp";

// Parses "--name value" pairs into an object; flags given in `booleans` take no value.
export function parseArgs(argv, booleans = []) {
  const args = {};
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (!arg.startsWith("--")) throw new Error(`unexpected argument ${arg}`);
    const name = arg.slice(2);
    if (booleans.includes(name)) {
      args[name] = true;
    } else {
      if (i + 1 >= argv.length) throw new Error(`${arg} needs a value`);
      args[name] = argv[++i];
    }
  }
  return args;
}

export function parseIds(text, what) {
  const ids = text.split(",").filter((s) => s.trim() !== "").map((s) => {
    const id = Number(s);
    if (!Number.isInteger(id) || id < 0) throw new Error(`${what}: "${s}" is not a token id`);
    return id;
  });
  if (ids.length === 0) throw new Error(`${what}: no token ids`);
  return ids;
}

export async function loadLlama(threads) {
  return getLlama({
    gpu: false,
    build: "never",
    logLevel: LlamaLogLevel.error,
    maxThreads: threads ?? 0,
  });
}

// Loads a GGUF and creates a CPU context with `sequences` parallel sequences (default 1). kvType "F32" keeps the KV cache in float32
// (llama.cpp's default is F16, which rounds keys and values).
export async function loadContext(llama, modelPath, {contextSize, batchSize, threads, kvType, flashAttention, sequences}) {
  const model = await llama.loadModel({modelPath, gpuLayers: 0});
  const context = await model.createContext({
    contextSize,
    batchSize: batchSize ?? Math.min(contextSize, 512),
    sequences: sequences ?? 1,
    threads: threads ?? 0,
    flashAttention: flashAttention ?? false,
    experimentalKvCacheKeyType: kvType ?? "F16",
    experimentalKvCacheValueType: kvType ?? "F16",
  });
  return {model, context};
}

export function fail(message) {
  process.stderr.write(`error: ${message}\n`);
  process.exit(1);
}
