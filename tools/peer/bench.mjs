// Benchmarks llama.cpp (through node-llama-cpp, CPU) the way `llama31 bench` measures itself:
//   prompt processing: N random tokens into an empty context, tokens per second;
//   generation: M tokens one at a time from an empty context (greedy), tokens per second.
// Prints a JSON line {"prefill_tokens_per_s", "decode_tokens_per_s", ...} (means over the repetitions).
//
// usage: node bench.mjs --model FILE.gguf [--prompt 512] [--gen 128] [--threads T] [--repetitions 3]
//        [--batch 512]
import {parseArgs, loadLlama, loadContext, fail} from "./common.mjs";
import {randomTokens} from "./random_tokens.mjs";

function mean(values) {
  return values.reduce((a, b) => a + b, 0) / values.length;
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  if (!args.model) fail("--model FILE.gguf is required");
  const nPrompt = Number(args.prompt ?? 512);
  const nGen = Number(args.gen ?? 128);
  const threads = Number(args.threads ?? 0);
  const repetitions = Number(args.repetitions ?? 3);

  const llama = await loadLlama(threads);
  const contextSize = Math.ceil((Math.max(nPrompt, nGen) + 2) / 256) * 256;
  const {model, context} = await loadContext(llama, args.model, {
    contextSize, threads, batchSize: Number(args.batch ?? 512), kvType: "F16",
  });
  const sequence = context.getSequence();
  const prompt = randomTokens(nPrompt, 128000, 42);  // ordinary (non-special) Llama 3 tokens
  const bos = model.tokens.bos ?? 128000;

  // Warm-up: fault the weights in.
  await sequence.evaluateWithoutGeneratingNewTokens([bos]);
  await sequence.clearHistory();

  const prefill = [];
  const decode = [];
  for (let r = 0; r < repetitions; r++) {
    if (nPrompt > 0) {
      await sequence.clearHistory();
      const t0 = performance.now();
      await sequence.evaluateWithoutGeneratingNewTokens(prompt);
      prefill.push(nPrompt / ((performance.now() - t0) / 1000));
    }
    if (nGen > 0) {
      await sequence.clearHistory();
      let generated = 0;
      const t0 = performance.now();
      // The first step evaluates BOS and samples; each later step evaluates one token: nGen evaluations.
      for await (const token of sequence.evaluate([bos], {temperature: 0})) {
        void token;
        if (++generated >= nGen) break;
      }
      decode.push(nGen / ((performance.now() - t0) / 1000));
    }
    process.stderr.write(`llama.cpp bench repetition ${r + 1}/${repetitions} done\n`);
  }
  const result = {
    prefill_tokens_per_s: prefill.length ? mean(prefill) : 0,
    decode_tokens_per_s: decode.length ? mean(decode) : 0,
    prompt_tokens: nPrompt,
    gen_tokens: nGen,
    repetitions,
    threads: context.currentThreads ?? threads,
    llama_cpp_release: llama.llamaCppRelease?.release ?? null,
    backend: llama.gpu === false ? "cpu" : String(llama.gpu),
  };
  process.stdout.write(JSON.stringify(result) + "\n");
  await context.dispose();
  await model.dispose();
}

main().catch((e) => fail(e?.stack ?? String(e)));
