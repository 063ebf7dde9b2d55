// A load test on loopback: 32 concurrent streaming clients against `llama31 serve --max-batch 16`; every answer
// complete and well-formed, each equal to the same request run alone, and memory flat over a second wave.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startServer, withTimeout, parseSse, rssKiB } from "./common.mjs";

const CLIENTS = 32;
const MAX_TOKENS = 16;
const T = 90000;
// After the second wave, resident memory may exceed the first wave's by at most this much: a leak of a request's
// KV blocks or buffers would grow it wave over wave; allocator noise stays well below.
const RSS_SLACK_KIB = 16 * 1024;

let server;
before(async () => { server = await startServer(["--max-batch", "16", "--max-queue", "64"]); });
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

test("32 concurrent greedy streams equal their solo runs; memory flat", async () => {
  const first = await wave();
  const rssFirst = rssKiB(server.child.pid);
  const second = await wave();
  const rssSecond = rssKiB(server.child.pid);
  assert.deepEqual(second, first, "the second wave repeats the first");
  for (let i = 0; i < CLIENTS; ++i) {
    const alone = await withTimeout(streamChat(i), T, `solo request ${i}`);
    assert.deepEqual(alone, first[i], `client ${i}: batched answer equals the answer run alone`);
  }
  assert.ok(rssSecond <= rssFirst + RSS_SLACK_KIB,
    `memory flat: VmRSS ${rssFirst} KiB after wave 1, ${rssSecond} KiB after wave 2 (slack ${RSS_SLACK_KIB} KiB)`);
  const metrics = await (await fetch(`${server.url}/metrics`, { signal: AbortSignal.timeout(T) })).text();
  assert.ok(metrics.length > 0);
});
