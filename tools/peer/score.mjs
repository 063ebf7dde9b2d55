// Scores a token sequence with llama.cpp and prints, like `llama31 score --json`,
//   {"tokens": [...], "positions": [{"token": next, "logprob": x, "top": [{"id": i, "logprob": y}, ...]}, ...]}
// one entry per input position (the last has no "token"). Log-probabilities are log(softmax(logits))
// over the whole vocabulary, computed by llama.cpp with a greedy sampler (no temperature, no top-k).
//
// usage: node score.mjs --model FILE.gguf (--ids 1,2,3 | --ids-file FILE) [--top 5] [--threads T]
//        [--kv-type F32|F16] [--generate N] [--stop 128001,128008,128009]
// With --generate N it also prints "greedy": the next N argmax tokens after the sequence (ending at and
// including a --stop token).
import fs from "node:fs";
import {parseArgs, parseIds, loadLlama, loadContext, fail} from "./common.mjs";

// One position of the output: the next token's log-probability and the top-k.
// node-llama-cpp normalizes with a float32 running sum over the vocabulary, which comes out low by up
// to ~5e-4 relative for 128k tokens; renormalizing the float probabilities with a double sum undoes that
// bias (each probability itself carries only float rounding, ~1e-7 relative).
function summarize(probabilities, nextToken, top) {
  let total = 0;
  for (const p of probabilities.values()) total += p;
  const logTotal = Math.log(total);
  const entry = {};
  if (nextToken != null) {
    entry.token = nextToken;
    entry.logprob = Math.log(probabilities.get(nextToken) ?? 0) - logTotal;
  }
  entry.top = [];
  for (const [id, p] of probabilities) {  // sorted by probability, highest first
    if (entry.top.length >= top) break;
    entry.top.push({id, logprob: Math.log(p) - logTotal});
  }
  return entry;
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  if (!args.model) fail("--model FILE.gguf is required");
  const idsText = args.ids ?? (args["ids-file"] ? fs.readFileSync(args["ids-file"], "utf8") : null);
  if (idsText == null) fail("--ids or --ids-file is required");
  const ids = parseIds(idsText, "--ids");
  const top = Number(args.top ?? 5);
  const generate = Number(args.generate ?? 0);
  const stop = new Set(parseIds(args.stop ?? "128001,128008,128009", "--stop"));
  const threads = args.threads ? Number(args.threads) : 0;

  const llama = await loadLlama(threads);
  // Room for the sequence and the generated tokens, in multiples of 256.
  const contextSize = Math.ceil((ids.length + generate + 1) / 256) * 256;
  const {model, context} = await loadContext(llama, args.model, {contextSize, threads, kvType: args["kv-type"] ?? "F32"});
  const sequence = context.getSequence();

  // Evaluated in chunks, each position summarized as soon as it comes back: a full probability map
  // per position would need gigabytes for long sequences.
  const positions = [];
  let lastArgmax = null;
  const chunk = 64;
  for (let start = 0; start < ids.length; start += chunk) {
    const slice = ids.slice(start, start + chunk);
    const outputs = await sequence.controlledEvaluate(slice.map((id) => [id, {generateNext: {probabilities: true}}]));
    for (let k = 0; k < slice.length; k++) {
      const i = start + k;
      const probabilities = outputs[k]?.next?.probabilities;
      if (probabilities == null) fail(`no probabilities at position ${i}`);
      outputs[k] = undefined;
      positions.push(summarize(probabilities, i + 1 < ids.length ? ids[i + 1] : null, top));
      if (i === ids.length - 1) lastArgmax = positions[i].top[0].id;
    }
  }
  const result = {tokens: ids, positions};

  if (generate > 0) {
    const greedy = [];
    let next = lastArgmax;
    while (greedy.length < generate) {
      greedy.push(next);
      if (stop.has(next) || greedy.length >= generate) break;
      const [out] = await sequence.controlledEvaluate([[next, {generateNext: {token: true, options: {temperature: 0}}}]]);
      next = out?.next?.token;
      if (next == null) fail("llama.cpp produced no next token");
    }
    result.greedy = greedy;
  }
  process.stdout.write(JSON.stringify(result) + "\n");
  await context.dispose();
  await model.dispose();
}

main().catch((e) => fail(e?.stack ?? String(e)));
