// Shared by the client tests: a tiny test model in a temp dir and a running `llama31 serve` on a free port.
import { spawn, execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";

// The binary comes from CTest (LLAMA31_BINARY env or the first argument after the script).
export const binary = process.env.LLAMA31_BINARY || process.argv[2];
if (!binary) throw new Error("set LLAMA31_BINARY (or pass the llama31 binary as the first argument)");

export const SKIP_CODE = 77;

// Rejects when promise takes longer than ms (only to avoid hangs, never an assertion on speed).
export function withTimeout(promise, ms, what) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => { timer = setTimeout(() => reject(new Error(`timed out: ${what}`)), ms); }),
  ]).finally(() => clearTimeout(timer));
}

export function makeTinyModel() {
  const dir = mkdtempSync(path.join(tmpdir(), "llama31-clients-"));
  const model = path.join(dir, "tiny");
  execFileSync(binary, ["make-test-model", model, "--layers", "2", "--hidden", "64", "--heads", "4",
    "--kv-heads", "2", "--intermediate", "128", "--seed", "1"], { stdio: ["ignore", "ignore", "inherit"] });
  return { dir, model, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

// Starts `llama31 serve --port 0 -m model ...extra`; resolves once it prints its listening line.
export async function startServer(extra = [], env = {}) {
  const tiny = makeTinyModel();
  const child = spawn(binary, ["serve", "--port", "0", "-m", tiny.model, "-t", "2", ...extra],
    { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, ...env } });
  let stderr = "";
  child.stderr.on("data", (d) => { stderr += d; if (stderr.length > 20000) stderr = stderr.slice(-10000); });
  const url = await withTimeout(new Promise((resolve, reject) => {
    let out = "";
    child.stdout.on("data", (d) => {
      out += d;
      const match = out.match(/llama31 serve: listening on (http:\/\/\S+)/);
      if (match) resolve(match[1]);
    });
    child.on("exit", (code) => reject(new Error(`llama31 serve exited (${code}) before listening:\n${stderr}`)));
  }), 60000, "llama31 serve to start");
  const stop = async () => {
    if (child.exitCode === null) {
      const exited = new Promise((resolve) => child.once("exit", resolve));
      child.kill("SIGTERM");
      await withTimeout(exited, 10000, "llama31 serve to exit").catch(() => child.kill("SIGKILL"));
    }
    tiny.cleanup();
  };
  return { url, child, stop, stderr: () => stderr };
}

// The server's resident memory in KiB (VmRSS from /proc).
export function rssKiB(pid) {
  const match = readFileSync(`/proc/${pid}/status`, "utf8").match(/VmRSS:\s+(\d+) kB/);
  return match ? Number(match[1]) : NaN;
}

// Parses a server-sent-events body into the JSON payloads of its "data:" lines ([DONE] ends it).
export function parseSse(text) {
  const events = [];
  let done = false;
  for (const block of text.split(/\r?\n\r?\n/)) {
    const data = block.split(/\r?\n/).filter((l) => l.startsWith("data:")).map((l) => l.slice(5).trim()).join("\n");
    if (!data) continue;
    if (data === "[DONE]") { done = true; continue; }
    events.push(JSON.parse(data));
  }
  return { events, done };
}
