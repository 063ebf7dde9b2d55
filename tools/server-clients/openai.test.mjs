// The official `openai` npm client against llama31 serve: chat (plain and streamed), usage, forced tool call,
// errors, model listing.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import OpenAI from "openai";
import { startServer, withTimeout } from "./common.mjs";

let server;
let client;
const T = 60000;

before(async () => {
  server = await startServer();
  client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: "unused", maxRetries: 0, timeout: T });
});
after(async () => { await server?.stop(); });

const messages = [{ role: "user", content: "Name three colours." }];

test("non-streaming and streaming greedy chat agree, with usage", async () => {
  const plain = await withTimeout(client.chat.completions.create({
    model: "tiny", messages, temperature: 0, seed: 7, max_tokens: 24 }), T, "chat");
  assert.equal(plain.object, "chat.completion");
  assert.equal(plain.choices.length, 1);
  const text = plain.choices[0].message.content;
  assert.equal(typeof text, "string");
  assert.ok(text.length > 0, "the answer has text");
  assert.ok(["stop", "length"].includes(plain.choices[0].finish_reason));
  assert.ok(plain.usage.prompt_tokens > 0);
  assert.ok(plain.usage.completion_tokens > 0 && plain.usage.completion_tokens <= 24);
  assert.equal(plain.usage.total_tokens, plain.usage.prompt_tokens + plain.usage.completion_tokens);

  const stream = await client.chat.completions.create({
    model: "tiny", messages, temperature: 0, seed: 7, max_tokens: 24, stream: true,
    stream_options: { include_usage: true } });
  let streamed = "";
  let finish = null;
  let usage = null;
  await withTimeout((async () => {
    for await (const chunk of stream) {
      assert.equal(chunk.object, "chat.completion.chunk");
      if (chunk.usage) usage = chunk.usage;
      for (const choice of chunk.choices) {
        streamed += choice.delta?.content ?? "";
        if (choice.finish_reason) finish = choice.finish_reason;
      }
    }
  })(), T, "streamed chat");
  assert.equal(streamed, text, "streamed deltas concatenate to the non-streamed greedy answer");
  assert.equal(finish, plain.choices[0].finish_reason);
  assert.ok(usage, "include_usage adds a usage chunk");
  assert.deepEqual(
    [usage.prompt_tokens, usage.completion_tokens],
    [plain.usage.prompt_tokens, plain.usage.completion_tokens]);
});

test("a forced tool call returns that function with arguments matching its schema", async () => {
  const tools = [{
    type: "function",
    function: {
      name: "get_weather",
      description: "Current weather in a city",
      parameters: {
        type: "object",
        properties: { city: { type: "string" }, unit: { type: "string", enum: ["celsius", "fahrenheit"] } },
        required: ["city", "unit"],
      },
    },
  }];
  const reply = await withTimeout(client.chat.completions.create({
    model: "tiny", temperature: 0, max_tokens: 64, tools,
    tool_choice: { type: "function", function: { name: "get_weather" } },
    messages: [{ role: "user", content: "What is the weather in Paris?" }] }), T, "tool call");
  const choice = reply.choices[0];
  assert.equal(choice.finish_reason, "tool_calls");
  assert.equal(choice.message.tool_calls.length, 1);
  const call = choice.message.tool_calls[0];
  assert.equal(call.type, "function");
  assert.equal(call.function.name, "get_weather");
  assert.ok(call.id, "the call has an id");
  const args = JSON.parse(call.function.arguments);
  assert.equal(typeof args.city, "string");
  assert.ok(["celsius", "fahrenheit"].includes(args.unit), `unit ${args.unit} is in the enum`);
});

test("a bad request is a 400 APIError with a message", async () => {
  await assert.rejects(
    withTimeout(client.chat.completions.create({ model: "tiny", messages, temperature: -1 }), T, "bad request"),
    (err) => {
      assert.ok(err instanceof OpenAI.APIError, `APIError, got ${err}`);
      assert.equal(err.status, 400);
      assert.ok(err.message && err.message.length > 5, "the error says what is wrong");
      return true;
    });
});

test("/v1/models lists the served model", async () => {
  const ids = [];
  for await (const model of await withTimeout(client.models.list(), T, "models")) ids.push(model.id);
  assert.equal(ids.length, 1);
  assert.ok(ids[0].length > 0);
});
