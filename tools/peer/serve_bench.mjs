// Serving throughput of llama.cpp (through node-llama-cpp, CPU) with N concurrent sequences in one context,
// which llama.cpp batches into one decode step as its server does. Each sequence gets its own prompt of P
// pseudo-random tokens and generates G tokens greedily (end tokens ignored), all started together.
// Prints a JSON line: aggregate generated tokens per second over the wall time, mean and max time to first
// token (seconds), per concurrency level.
//
// usage: node serve_bench.mjs --model FILE.gguf [--clients 1,4,16] [--prompt 128] [--gen 64] [--threads T]
import {parseArgs, loadLlama, loadContext, fail} from "./common.mjs";
import {randomTokens} from "./random_tokens.mjs";

async function runLevel(llama, modelPath, clients, nPrompt, nGen, threads) {
  const contextSize = Math.ceil((clients * (nPrompt + nGen + 8)) / 256) * 256;
  const {model, context} = await loadContext(llama, modelPath, {
    contextSize, threads, batchSize: 512, kvType: "F16", sequences: clients,
  });
  const sequences = Array.from({length: clients}, () => context.getSequence());
  // Warm-up: fault the weights in.
  await sequences[0].evaluateWithoutGeneratingNewTokens([model.tokens.bos ?? 128000]);
  await sequences[0].clearHistory();

  const t0 = performance.now();
  const firstTokenSeconds = [];
  let generated = 0;
  await Promise.all(sequences.map(async (sequence, i) => {
    const prompt = randomTokens(nPrompt, 128000, 1000 + i);
    let count = 0;
    for await (const token of sequence.evaluate(prompt, {temperature: 0})) {
      void token;
      if (count === 0) firstTokenSeconds.push((performance.now() - t0) / 1000);
      if (++count >= nGen) break;
    }
    generated += count;
  }));
  const seconds = (performance.now() - t0) / 1000;
  await context.dispose();
  await model.dispose();
  return {
    clients,
    generated_tokens: generated,
    seconds,
    tokens_per_s: generated / seconds,
    ttft_mean_s: firstTokenSeconds.reduce((a, b) => a + b, 0) / firstTokenSeconds.length,
    ttft_max_s: Math.max(...firstTokenSeconds),
  };
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  if (!args.model) fail("--model FILE.gguf is required");
  const levels = String(args.clients ?? "1,4,16").split(",").map(Number);
  const nPrompt = Number(args.prompt ?? 128);
  const nGen = Number(args.gen ?? 64);
  const threads = Number(args.threads ?? 0);
  const llama = await loadLlama(threads);
  const results = [];
  for (const clients of levels) {
    results.push(await runLevel(llama, args.model, clients, nPrompt, nGen, threads));
    process.stderr.write(`llama.cpp serving bench: ${clients} clients done\n`);
  }
  process.stdout.write(JSON.stringify({engine: "llama.cpp", llama_cpp_release: llama.llamaCppRelease?.release ?? null,
                                       threads, prompt_tokens: nPrompt, gen_tokens: nGen, levels: results}) + "\n");
}

main().catch((e) => fail(e.stack ?? String(e)));
