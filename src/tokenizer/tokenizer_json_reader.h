// Reads a tokenizer.json in one pass. The BPE model's vocabulary (128,000 entries for Llama 3.1) and
// merges (280,147) go straight into flat tables; the rest of the document, a few kilobytes, becomes an
// ordinary nlohmann::json. Parsing the whole file into nlohmann's DOM instead (a std::map node per
// vocabulary entry, a heap string per merge) took most of a second, paid by every command that loads a
// model. nlohmann's SAX interface does the parsing; this file only routes its events.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace llama31 {

// model.vocab in file order: token text (ByteLevel alphabet) and its id as written.
using VocabTable = std::vector<std::pair<std::string, nlohmann::json>>;
// model.merges in rank order, each as its two parts (written "a b" or ["a", "b"]).
using MergeTable = std::vector<std::pair<std::string, std::string>>;

struct TokenizerDocument {
  // The document, less model.vocab and model.merges where they were read into the tables below.
  nlohmann::json rest;
  // Read when model.vocab is an object and model.merges an array; otherwise they stay in `rest`, where
  // the loader reports what is wrong with them.
  std::optional<VocabTable> vocab;
  std::optional<MergeTable> merges;
};

// Throws Error naming the file if it cannot be opened, is not JSON, or holds a malformed merge or a
// vocabulary entry that is not a number.
TokenizerDocument read_tokenizer_json(const std::filesystem::path& path);

// The same tables from an already parsed model.vocab object and model.merges array (Tokenizer::from_json),
// and from merges given as "a b" strings (Tokenizer::from_tables). Throws Error, naming `source`, for a
// merge that is neither "a b" nor ["a", "b"].
VocabTable vocab_table_of(const nlohmann::json& vocab);
MergeTable merge_table_of(const nlohmann::json& merges, const std::string& source);
MergeTable merge_table_of(const std::vector<std::string>& merges, const std::string& source);  // "a b" each

}  // namespace llama31
