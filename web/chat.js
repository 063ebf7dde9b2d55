// llama31's chat page: streams answers from /v1/chat/completions; the conversation lives in localStorage.
"use strict";
(() => {
  const STORE_KEY = "llama31-chat";
  const $ = (id) => document.getElementById(id);
  const fields = { system: $("system-prompt"), temperature: $("temperature"), top_p: $("top-p"),
    max_tokens: $("max-tokens"), seed: $("seed"), api_key: $("api-key") };
  let state = { messages: [], settings: {} };
  let controller = null;

  function load() {
    try {
      const saved = JSON.parse(localStorage.getItem(STORE_KEY) || "null");
      if (saved && Array.isArray(saved.messages)) state = { messages: saved.messages, settings: saved.settings || {} };
    } catch { /* a damaged store starts a fresh chat */ }
    for (const [key, input] of Object.entries(fields)) {
      if (state.settings[key] !== undefined) input.value = state.settings[key];
    }
  }
  function save() {
    for (const [key, input] of Object.entries(fields)) state.settings[key] = input.value;
    localStorage.setItem(STORE_KEY, JSON.stringify(state));
  }

  function showError(text) {
    const box = $("error");
    box.textContent = text || "";
    box.hidden = !text;
  }

  function renderMessage(message, streaming) {
    const div = document.createElement("div");
    div.className = `message ${message.role}` + (streaming ? " streaming" : "");
    const role = document.createElement("div");
    role.className = "role";
    role.textContent = message.role;
    const content = document.createElement("div");
    content.className = "content";
    content.textContent = message.content || "";
    div.append(role, content);
    for (const call of message.tool_calls || []) {
      const block = document.createElement("div");
      block.className = "tool-call";
      block.setAttribute("role", "group");
      block.setAttribute("aria-label", `Tool call ${call.function.name}`);
      const title = document.createElement("strong");
      title.textContent = `Tool call: ${call.function.name}`;
      const args = document.createElement("pre");
      let text = call.function.arguments || "";
      try { text = JSON.stringify(JSON.parse(text), null, 2); } catch { /* still streaming or not JSON */ }
      args.textContent = text;
      block.append(title, args);
      div.append(block);
    }
    if (message.finish) {
      const finish = document.createElement("div");
      finish.className = "finish";
      finish.textContent = message.finish === "stopped" ? "(stopped)" : `finish: ${message.finish}`;
      div.append(finish);
    }
    return div;
  }
  // While streaming, at most one render per animation frame: re-rendering the conversation for every
  // token made long answers quadratic and kept the page too busy to handle Stop in time.
  let framePending = false;
  function renderSoon() {
    if (framePending) return;
    framePending = true;
    requestAnimationFrame(() => {
      framePending = false;
      if (controller) render(true);
    });
  }
  function render(streamingLast) {
    const list = $("messages");
    list.replaceChildren(...state.messages.map((m, i) =>
      renderMessage(m, streamingLast && i === state.messages.length - 1)));
    list.lastElementChild?.scrollIntoView({ block: "end" });
  }

  function setBusy(busy) {
    $("send").disabled = busy;
    $("stop").disabled = !busy;
  }

  function numberField(input) {
    return input.value.trim() === "" ? undefined : Number(input.value);
  }

  function requestBody() {
    const messages = [];
    if (fields.system.value.trim()) messages.push({ role: "system", content: fields.system.value });
    for (const m of state.messages) {
      const out = { role: m.role, content: m.content || "" };
      if (m.tool_calls && m.tool_calls.length) out.tool_calls = m.tool_calls;
      messages.push(out);
    }
    const body = { messages, stream: true, stream_options: { include_usage: true } };
    for (const key of ["temperature", "top_p", "max_tokens", "seed"]) {
      const value = numberField(fields[key]);
      if (value !== undefined && !Number.isNaN(value)) body[key] = value;
    }
    return body;
  }

  // Reads server-sent events from a fetch response; calls onData with each parsed "data:" payload.
  async function readEvents(response, onData) {
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let end;
      while ((end = buffer.search(/\r?\n\r?\n/)) >= 0) {
        const event = buffer.slice(0, end);
        buffer = buffer.slice(end).replace(/^\r?\n\r?\n/, "");
        const data = event.split(/\r?\n/).filter((l) => l.startsWith("data:"))
          .map((l) => l.slice(5).replace(/^ /, "")).join("\n");
        if (!data) continue;
        if (data === "[DONE]") return;
        onData(JSON.parse(data));
      }
    }
  }

  function applyDelta(answer, chunk) {
    if (chunk.error) throw new Error(chunk.error.message || JSON.stringify(chunk.error));
    for (const choice of chunk.choices || []) {
      const delta = choice.delta || {};
      if (delta.content) answer.content += delta.content;
      for (const call of delta.tool_calls || []) {
        answer.tool_calls = answer.tool_calls || [];
        const index = call.index ?? answer.tool_calls.length;
        const slot = answer.tool_calls[index] ||= { id: call.id || "", type: "function", function: { name: "", arguments: "" } };
        if (call.id) slot.id = call.id;
        if (call.function?.name) slot.function.name += call.function.name;
        if (call.function?.arguments) slot.function.arguments += call.function.arguments;
      }
      if (choice.finish_reason) answer.finish = choice.finish_reason;
    }
  }

  async function send(text) {
    showError("");
    state.messages.push({ role: "user", content: text });
    const answer = { role: "assistant", content: "" };
    state.messages.push(answer);
    save();
    render(true);
    setBusy(true);
    controller = new AbortController();
    const headers = { "Content-Type": "application/json" };
    if (fields.api_key.value) headers.Authorization = `Bearer ${fields.api_key.value}`;
    try {
      const response = await fetch("/v1/chat/completions", {
        method: "POST", headers, body: JSON.stringify(requestBody()), signal: controller.signal });
      if (!response.ok) {
        let message = `${response.status} ${response.statusText}`;
        try { message = `${response.status}: ${(await response.json()).error.message}`; } catch { /* not JSON */ }
        throw new Error(message);
      }
      await readEvents(response, (chunk) => { applyDelta(answer, chunk); renderSoon(); });
    } catch (err) {
      if (err.name === "AbortError") answer.finish = "stopped";
      else showError(`Request failed: ${err.message}`);
    } finally {
      controller = null;
      if (!answer.content && !answer.tool_calls && !answer.finish) state.messages.pop();
      save();
      render(false);
      setBusy(false);
    }
  }

  $("composer").addEventListener("submit", (event) => {
    event.preventDefault();
    const text = $("prompt").value;
    if (!text.trim() || controller) return;
    $("prompt").value = "";
    send(text);
  });
  $("prompt").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey) {
      event.preventDefault();
      $("composer").requestSubmit();
    }
  });
  $("stop").addEventListener("click", () => controller?.abort());
  $("new-chat").addEventListener("click", () => {
    controller?.abort();
    state.messages = [];
    showError("");
    save();
    render(false);
    $("prompt").focus();
  });
  for (const input of Object.values(fields)) input.addEventListener("change", save);

  load();
  render(false);
})();
