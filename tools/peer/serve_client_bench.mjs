// Serving throughput of a running `llama31 serve`, measured as serve_bench.mjs measures llama.cpp: N clients
// start together, each streams /v1/completions with its own prompt of P pseudo-random token ids (the same ids
// serve_bench.mjs feeds llama.cpp), G tokens, greedy, end tokens ignored. Prints a JSON line per run with
// aggregate generated tokens per second and time to first token (first streamed chunk) per concurrency level.
//
// usage: node serve_client_bench.mjs --url http://127.0.0.1:PORT [--clients 1,4,16] [--prompt 128] [--gen 64]
import {parseArgs, fail} from "./common.mjs";
import {randomTokens} from "./random_tokens.mjs";

async function streamOne(url, prompt, nGen, t0) {
  const response = await fetch(`${url}/v1/completions`, {
    method: "POST",
    headers: {"Content-Type": "application/json"},
    body: JSON.stringify({prompt, max_tokens: nGen, temperature: 0, ignore_eos: true, stream: true,
                          stream_options: {include_usage: true}}),
  });
  if (!response.ok) throw new Error(`HTTP ${response.status}: ${await response.text()}`);
  let firstChunk = null;
  let completionTokens = 0;
  let buffer = "";
  const decoder = new TextDecoder();
  for await (const bytes of response.body) {
    buffer += decoder.decode(bytes, {stream: true});
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const event = buffer.slice(0, end).trim();
      buffer = buffer.slice(end + 2);
      if (!event.startsWith("data:")) continue;
      const data = event.slice(5).trim();
      if (data === "[DONE]") continue;
      const chunk = JSON.parse(data);
      if (firstChunk === null && chunk.choices?.length) firstChunk = (performance.now() - t0) / 1000;
      if (chunk.usage) completionTokens = chunk.usage.completion_tokens;
    }
  }
  return {ttft: firstChunk, tokens: completionTokens};
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  if (!args.url) fail("--url is required");
  const levels = String(args.clients ?? "1,4,16").split(",").map(Number);
  const nPrompt = Number(args.prompt ?? 128);
  const nGen = Number(args.gen ?? 64);
  await streamOne(args.url, randomTokens(8, 128000, 7), 2, performance.now());  // warm-up
  const results = [];
  for (const clients of levels) {
    const t0 = performance.now();
    const runs = await Promise.all(Array.from({length: clients}, (_, i) =>
      streamOne(args.url, randomTokens(nPrompt, 128000, 1000 + i), nGen, t0)));
    const seconds = (performance.now() - t0) / 1000;
    const generated = runs.reduce((a, r) => a + r.tokens, 0);
    results.push({clients, generated_tokens: generated, seconds, tokens_per_s: generated / seconds,
                  ttft_mean_s: runs.reduce((a, r) => a + r.ttft, 0) / clients,
                  ttft_max_s: Math.max(...runs.map((r) => r.ttft))});
    process.stderr.write(`llama31 serving bench: ${clients} clients done\n`);
  }
  process.stdout.write(JSON.stringify({engine: "llama31", prompt_tokens: nPrompt, gen_tokens: nGen, levels: results}) + "\n");
}

main().catch((e) => fail(e.stack ?? String(e)));
