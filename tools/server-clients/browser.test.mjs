// The chat page in headless Debian Chromium (playwright-core): a streamed answer, Stop, and a reload that keeps
// the conversation.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { chromium } from "playwright-core";
import { startServer, SKIP_CODE } from "./common.mjs";

const executablePath = process.env.CHROMIUM || "/usr/bin/chromium";
if (!existsSync(executablePath)) {
  console.log(`SKIP: no Chromium at ${executablePath} (apt-get install chromium, or set CHROMIUM)`);
  process.exit(SKIP_CODE);
}

const T = 60000;
let server;
let browser;
before(async () => {
  server = await startServer();
  browser = await chromium.launch({ executablePath, headless: true, args: ["--no-sandbox"], timeout: T });
});
after(async () => {
  await browser?.close();
  await server?.stop();
});

const answers = (page) => page.locator(".message.assistant .content");

test("the page streams an answer, stops on Stop and keeps the chat over a reload", async () => {
  const page = await browser.newPage();
  page.setDefaultTimeout(T);
  const failures = [];
  page.on("pageerror", (err) => failures.push(String(err)));
  page.on("requestfailed", (req) => { if (!req.url().endsWith("/v1/chat/completions")) failures.push(req.url()); });
  await page.goto(server.url + "/");
  assert.equal(await page.title(), "llama31 chat");

  // A short greedy answer.
  await page.locator("summary").click();
  await page.fill("#temperature", "0");
  await page.fill("#max-tokens", "8");
  await page.fill("#prompt", "Hello there");
  await page.click("#send");
  await page.locator(".message.assistant .finish").first().waitFor();
  const first = await answers(page).first().textContent();
  assert.ok(first.length > 0, "the streamed answer appears");
  assert.equal(await page.locator("#error").isHidden(), true, await page.locator("#error").textContent());
  assert.match(await page.locator(".message.assistant .finish").first().textContent(), /finish: (stop|length)/);

  // A long answer, stopped while it streams.
  await page.fill("#max-tokens", "");  // empty: up to the context's end
  await page.fill("#prompt", "Tell me a very long story");
  await page.press("#prompt", "Enter");
  await page.waitForFunction(() => {
    const all = document.querySelectorAll(".message.assistant .content");
    return all.length === 2 && all[1].textContent.length > 0;
  }, null, { timeout: T });
  assert.equal(await page.locator("#stop").isEnabled(), true, "Stop is enabled while streaming");
  await page.click("#stop");
  const secondFinish = page.locator(".message.assistant").nth(1).locator(".finish");
  await secondFinish.waitFor();
  assert.equal(await secondFinish.textContent(), "(stopped)",
               `the answer ended by itself before Stop: ${(await answers(page).nth(1).textContent()).length} characters`);
  assert.equal(await page.locator("#stop").isDisabled(), true);
  assert.equal(await page.locator("#send").isEnabled(), true);
  const stopped = await answers(page).nth(1).textContent();
  // The page can send again right away: the server freed the stopped request's slot.
  await page.fill("#max-tokens", "4");
  await page.fill("#prompt", "Again");
  await page.click("#send");
  await page.locator(".message.assistant .finish").nth(2).waitFor();
  assert.equal(await answers(page).nth(1).textContent(), stopped, "the stopped answer did not grow");

  // Reload: the conversation and the settings come back from localStorage.
  const before = await page.locator(".message").allTextContents();
  await page.reload();
  await page.locator(".message").nth(before.length - 1).waitFor();
  assert.deepEqual(await page.locator(".message").allTextContents(), before);
  assert.equal(await page.inputValue("#max-tokens"), "4");

  // New chat empties it.
  await page.click("#new-chat");
  assert.equal(await page.locator(".message").count(), 0);
  assert.deepEqual(failures, []);
});

test("a server error is shown to the user", async () => {
  const page = await browser.newPage();
  page.setDefaultTimeout(T);
  await page.goto(server.url + "/");
  await page.locator("summary").click();
  await page.fill("#temperature", "-1");
  await page.fill("#prompt", "Hi");
  await page.click("#send");
  await page.locator("#error").waitFor({ state: "visible" });
  assert.match(await page.locator("#error").textContent(), /400/);
});
