// @huggingface/inference's chat completion pointed at llama31 serve: plain and streamed.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { InferenceClient } from "@huggingface/inference";
import { startServer, withTimeout } from "./common.mjs";

let server;
let model;
const T = 60000;
before(async () => {
  server = await startServer();
  // The served model's id: with endpointUrl alone the client would send the URL itself as "model".
  const list = await (await fetch(`${server.url}/v1/models`, { signal: AbortSignal.timeout(T) })).json();
  model = list.data[0].id;
});
after(async () => { await server?.stop(); });

const request = () => ({
  endpointUrl: server.url,
  model,
  messages: [{ role: "user", content: "Say hello." }],
  max_tokens: 16, temperature: 0, seed: 3,
});

test("chatCompletion and chatCompletionStream give the same greedy answer", async () => {
  const client = new InferenceClient();
  const plain = await withTimeout(client.chatCompletion(request()), T, "chatCompletion");
  const text = plain.choices[0].message.content;
  assert.ok(typeof text === "string" && text.length > 0, "the answer has text");
  assert.ok(plain.usage.completion_tokens > 0);

  let streamed = "";
  let finish = null;
  await withTimeout((async () => {
    for await (const chunk of client.chatCompletionStream(request())) {
      if (chunk.choices?.length) {
        streamed += chunk.choices[0].delta?.content ?? "";
        finish = chunk.choices[0].finish_reason ?? finish;
      }
    }
  })(), T, "chatCompletionStream");
  assert.equal(streamed, text);
  assert.equal(finish, plain.choices[0].finish_reason);
});
