// Debian curl against the Text Generation Inference routes and /metrics of llama31 serve.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { startServer, parseSse } from "./common.mjs";

const run = promisify(execFile);
let server;
before(async () => { server = await startServer(); });
after(async () => { await server?.stop(); });

// curl -sS with a hard time limit; returns { status, body }.
async function curl(route, args = []) {
  const { stdout } = await run("curl", ["-sS", "--max-time", "60", "-w", "\n%{http_code}", ...args, `${server.url}${route}`],
    { timeout: 70000, maxBuffer: 16 << 20 });
  const cut = stdout.lastIndexOf("\n");
  return { status: Number(stdout.slice(cut + 1)), body: stdout.slice(0, cut) };
}
const postJson = (body) => ["-H", "Content-Type: application/json", "-d", JSON.stringify(body)];

test("GET /health and /info", async () => {
  const health = await curl("/health");
  assert.equal(health.status, 200);
  const info = await curl("/info");
  assert.equal(info.status, 200);
  const parsed = JSON.parse(info.body);
  assert.equal(typeof parsed.model_id, "string");
  assert.ok(parsed.max_total_tokens > 0 || parsed.max_input_tokens > 0 || parsed.max_input_length > 0,
    `info states a token limit: ${info.body}`);
});

test("POST /generate and /generate_stream agree on the greedy text", async () => {
  const request = { inputs: "The capital of France is", parameters: { max_new_tokens: 12, details: true } };
  const plain = await curl("/generate", postJson(request));
  assert.equal(plain.status, 200, plain.body);
  const generated = JSON.parse(plain.body);
  assert.equal(typeof generated.generated_text, "string");
  assert.ok(generated.details.generated_tokens > 0 && generated.details.generated_tokens <= 12);

  const stream = await curl("/generate_stream", ["-N", ...postJson(request)]);
  assert.equal(stream.status, 200, stream.body);
  const { events } = parseSse(stream.body);
  assert.ok(events.length >= 2, "several token events");
  const last = events[events.length - 1];
  assert.equal(last.generated_text, generated.generated_text, "the last event carries the full text");
  const joined = events.map((e) => (e.token && !e.token.special ? e.token.text : "")).join("");
  assert.equal(joined, generated.generated_text, "token texts concatenate to the full text");
  assert.ok(events.slice(0, -1).every((e) => e.generated_text === null || e.generated_text === undefined));
});

test("a bad TGI request is a 4xx with an error message", async () => {
  const bad = await curl("/generate", postJson({ parameters: { max_new_tokens: 4 } }));
  assert.ok(bad.status >= 400 && bad.status < 500, `status ${bad.status}`);
  assert.ok(JSON.parse(bad.body).error, bad.body);
});

test("GET /metrics is Prometheus text counting the requests served", async () => {
  const metrics = await curl("/metrics");
  assert.equal(metrics.status, 200);
  assert.match(metrics.body, /^# TYPE \S+ (counter|gauge|histogram)$/m);
  const samples = metrics.body.split("\n").filter((l) => l && !l.startsWith("#"));
  assert.ok(samples.length > 0);
  for (const line of samples) assert.match(line, /^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[^}]*\})? [-+0-9.eEInfa]+$/, line);
  assert.ok(samples.some((l) => /request/.test(l) && !/ 0$/.test(l)), "a request counter is above zero");
});
