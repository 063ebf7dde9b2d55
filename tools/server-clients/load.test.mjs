// A load test on loopback: 32 concurrent streaming clients against `llama31 serve --max-batch 16`; every answer
// complete and well-formed, each equal to the same request run alone, no KV block left in use, and memory flat
// once warm.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startServer, withTimeout, parseSse, rssKiB } from "./common.mjs";

const CLIENTS = 32;
const MAX_TOKENS = 16;
const T = 90000;
// Memory is measured after WARM_WAVES waves (glibc's arenas and free lists fill up while the HTTP threads first
// see work) and again after LEAK_WAVES more: a request that leaked its logits or buffers (at least 0.5 MiB each
// here) would add 32 * 0.5 * LEAK_WAVES MiB; allocator noise stays well below the slack.
const WARM_WAVES = 3;
const LEAK_WAVES = 3;
const RSS_SLACK_KIB = 24 * 1024;
// glibc makes up to 8 arenas per core; a fixed number keeps the measurement the same on any CI machine.
const SERVER_ENV = { MALLOC_ARENA_MAX: "4" };

let server;
before(async () => { server = await startServer(["--max-batch", "16", "--max-queue", "64"], SERVER_ENV); });
after(async () => { await server?.stop(); });

const prompt = (i) => `Request ${i}: count from ${i} to ${i + 5} in words.`;

async function streamChat(i) {
  const response = await fetch(`${server.url}/v1/chat/completions`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ messages: [{ role: "user", content: prompt(i) }], temperature: 0, max_tokens: MAX_TOKENS,
      stream: true, stream_options: { include_usage: true } }),
    signal: AbortSignal.timeout(T),
  });
  assert.equal(response.status, 200, `client ${i}: ${response.status}`);
  assert.match(response.headers.get("content-type"), /text\/event-stream/);
  const { events, done } = parseSse(await response.text());
  assert.ok(done, `client ${i}: the stream ends with [DONE]`);
  let text = "";
  let finish = null;
  let usage = null;
  const ids = new Set();
  for (const e of events) {
    assert.equal(e.object, "chat.completion.chunk", `client ${i}`);
    ids.add(e.id);
    if (e.usage) usage = e.usage;
    for (const c of e.choices) {
      text += c.delta?.content ?? "";
      if (c.finish_reason) { assert.equal(finish, null, `client ${i}: one finish_reason`); finish = c.finish_reason; }
    }
  }
  assert.equal(ids.size, 1, `client ${i}: one completion id across chunks`);
  assert.ok(["stop", "length"].includes(finish), `client ${i}: finish_reason ${finish}`);
  assert.ok(usage && usage.completion_tokens > 0 && usage.completion_tokens <= MAX_TOKENS, `client ${i}: usage`);
  return { text, finish, tokens: usage.completion_tokens };
}

const wave = () => withTimeout(Promise.all(Array.from({ length: CLIENTS }, (_, i) => streamChat(i))), T, "a wave");

const gauge = (metrics, name) => {
  const match = metrics.match(new RegExp(`^${name} (\\S+)$`, "m"));
  assert.ok(match, `metric ${name}`);
  return Number(match[1]);
};

test("32 concurrent greedy streams equal their solo runs; memory flat", async () => {
  const first = await wave();
  for (let w = 1; w < WARM_WAVES; ++w) assert.deepEqual(await wave(), first, `wave ${w + 1} repeats the first`);
  const rssWarm = rssKiB(server.child.pid);
  for (let w = 0; w < LEAK_WAVES; ++w) assert.deepEqual(await wave(), first, "every wave repeats the first");
  const rssAfter = rssKiB(server.child.pid);
  for (let i = 0; i < CLIENTS; ++i) {
    const alone = await withTimeout(streamChat(i), T, `solo request ${i}`);
    assert.deepEqual(alone, first[i], `client ${i}: batched answer equals the answer run alone`);
  }
  assert.ok(rssAfter <= rssWarm + RSS_SLACK_KIB,
    `memory flat: VmRSS ${rssWarm} KiB after ${WARM_WAVES} waves, ${rssAfter} KiB after ${LEAK_WAVES} more ` +
    `(slack ${RSS_SLACK_KIB} KiB)`);
  const metrics = await (await fetch(`${server.url}/metrics`, { signal: AbortSignal.timeout(T) })).text();
  assert.equal(gauge(metrics, "llama31_running_sequences"), 0, "no sequence left running");
  assert.equal(gauge(metrics, "llama31_kv_cache_blocks_used"), 0, "every KV block returned");
  assert.ok(gauge(metrics, "llama31_kv_cache_blocks_total") > 0);
});
