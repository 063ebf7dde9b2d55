// Writes tests/data/tokenizer-corpus/expected.json: the token ids a second, independent
// implementation (transformers.js's tokenizers, npm @lenml/tokenizers) gives every text of
// tests/data/tokenizer-corpus/corpus.json with the Llama 3.1 tokenizer in data/llama-3.1-tokenizer/.
//
//   cd tools/tokenizer-reference && npm ci && node generate_expected.mjs
//
// transformers.js always splits added tokens out of the text, so texts with parse_special=false
// are encoded by a second instance loaded without added_tokens (the same as Hugging Face's
// encode_special_tokens / llama.cpp's parse_special=false: "<|eot_id|>" is plain text).
// As a check of the reference itself, it must also reproduce llama.cpp's vectors in
// tests/data/tokenizer-vectors/ (ids from Hugging Face tokenizers); it exits 1 if it does not.
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { TokenizerLoader } from "@lenml/tokenizers";

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, "../..");
const tokenizerDir = path.join(root, "data/llama-3.1-tokenizer");
const corpusDir = path.join(root, "tests/data/tokenizer-corpus");
const vectorsDir = path.join(root, "tests/data/tokenizer-vectors");

const readJson = (file) => JSON.parse(fs.readFileSync(file, "utf8"));
const tokenizerJSON = readJson(path.join(tokenizerDir, "tokenizer.json"));
const tokenizerConfig = readJson(path.join(tokenizerDir, "tokenizer_config.json"));

const withSpecial = TokenizerLoader.fromPreTrained({ tokenizerJSON, tokenizerConfig });
const withoutSpecial = TokenizerLoader.fromPreTrained({
  tokenizerJSON: { ...tokenizerJSON, added_tokens: [] },
  tokenizerConfig: { ...tokenizerConfig, added_tokens_decoder: {} },
});
const encode = (text, parseSpecial) =>
  (parseSpecial ? withSpecial : withoutSpecial).encode(text, { add_special_tokens: false });

let failures = 0;

// The ids the brief relies on.
for (const [name, id] of [["<|eom_id|>", 128008], ["<|python_tag|>", 128010], ["<|eot_id|>", 128009]]) {
  const got = encode(name, true);
  if (got.length !== 1 || got[0] !== id) {
    console.error(`${name} encodes to ${JSON.stringify(got)}, expected [${id}]`);
    failures++;
  }
}

// Sanity check of the reference against llama.cpp's vectors.
const inputs = fs.readFileSync(path.join(vectorsDir, "ggml-vocab-llama-bpe.gguf.inp"), "utf8")
  .split("\n__ggml_vocab_test__\n");
const outputs = fs.readFileSync(path.join(vectorsDir, "ggml-vocab-llama-bpe.gguf.out"), "utf8").split("\n");
let vectorCount = 0;
inputs.forEach((text, i) => {
  if (i >= outputs.length || (i === inputs.length - 1 && text === "")) return;
  vectorCount++;
  const got = encode(text, false).join(" ");
  if (got !== outputs[i].trim()) {
    console.error(`llama.cpp vector ${i} ${JSON.stringify(text)}: reference gives [${got}], file says [${outputs[i].trim()}]`);
    failures++;
  }
});

const corpus = readJson(path.join(corpusDir, "corpus.json"));
const version = readJson(path.join(here, "node_modules/@lenml/tokenizers/package.json")).version;
const expected = {
  generator: `@lenml/tokenizers ${version} via tools/tokenizer-reference/generate_expected.mjs`,
  tokenizer: "data/llama-3.1-tokenizer/tokenizer.json",
  cases: corpus.map(({ name, text, parse_special }) => ({ name, parse_special, ids: encode(text, parse_special) })),
};
const lines = expected.cases.map((c) => "  " + JSON.stringify(c));
fs.writeFileSync(
  path.join(corpusDir, "expected.json"),
  `{\n "generator": ${JSON.stringify(expected.generator)},\n "tokenizer": ${JSON.stringify(expected.tokenizer)},\n` +
    ` "cases": [\n${lines.join(",\n")}\n ]\n}\n`,
);
console.log(`wrote ${expected.cases.length} cases; checked ${vectorCount} llama.cpp vectors; ${failures} disagreement(s)`);
process.exit(failures > 0 ? 1 : 0);
