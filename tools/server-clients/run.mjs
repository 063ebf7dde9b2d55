// Runs one client test file for CTest: `node run.mjs <llama31 binary> <name>.test.mjs`. Exits 77 (CTest's skip)
// with the reason when a prerequisite is missing: npm packages, curl, Chromium.
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const [binary, testFile] = process.argv.slice(2);
const skip = (why) => { console.log(`SKIP: ${why}`); process.exit(77); };

if (!binary || !testFile) { console.error("usage: node run.mjs <llama31 binary> <name>.test.mjs"); process.exit(2); }
if (!existsSync(path.join(here, "node_modules"))) {
  skip(`no ${path.join(here, "node_modules")}: run \`npm ci --prefix tools/server-clients\` first`);
}
const hasProgram = (name) => spawnSync("sh", ["-c", `command -v ${name}`]).status === 0;
if (testFile.startsWith("tgi_curl") && !hasProgram("curl")) skip("no curl (apt-get install curl)");
if (testFile.startsWith("browser") && !existsSync(process.env.CHROMIUM || "/usr/bin/chromium")) {
  skip("no Chromium at /usr/bin/chromium (apt-get install chromium, or set CHROMIUM)");
}
const result = spawnSync(process.execPath, ["--test", "--test-reporter=spec", path.join(here, testFile)],
  { stdio: "inherit", env: { ...process.env, LLAMA31_BINARY: path.resolve(binary) }, timeout: 170000 });
process.exit(result.status ?? 1);
