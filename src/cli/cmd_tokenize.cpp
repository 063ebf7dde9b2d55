// llama31 tokenize / detokenize: text <-> Llama 3.1 token ids with a model folder's tokenizer.json.
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/common.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/utf8.h"
#include "util/error.h"

namespace llama31::cli {

namespace {

struct TokenizeOptions {
  std::string model_dir;
  std::string text;
  bool parse_special = false;
  bool add_bos = false;
};

struct DetokenizeOptions {
  std::string model_dir;
  std::string ids;
  bool skip_special = false;
};

void run_tokenize(const TokenizeOptions& options) {
  const Tokenizer tokenizer = load_tokenizer(std::filesystem::path(options.model_dir));
  std::vector<TokenId> ids;
  if (options.add_bos) {
    const auto bos = tokenizer.bos_id();
    if (!bos) fail("--bos: the tokenizer in {} has no <|begin_of_text|> token", options.model_dir);
    ids.push_back(*bos);
  }
  const auto text_ids = tokenizer.encode(options.text, options.parse_special);
  ids.insert(ids.end(), text_ids.begin(), text_ids.end());
  std::printf("%s\n", nlohmann::json(ids).dump().c_str());
}

void run_detokenize(const DetokenizeOptions& options) {
  const Tokenizer tokenizer = load_tokenizer(std::filesystem::path(options.model_dir));
  const auto ids = parse_id_list(options.ids);
  // Like Hugging Face's decode: bytes that do not form whole characters become U+FFFD.
  const std::string text = utf8::to_valid_lossy(tokenizer.decode(ids, options.skip_special));
  std::fwrite(text.data(), 1, text.size(), stdout);
  std::fputc('\n', stdout);
}

}  // namespace

void add_tokenize_commands(CLI::App& app) {
  auto tokenize_options = std::make_shared<TokenizeOptions>();
  CLI::App* tokenize = app.add_subcommand("tokenize", "Print the token ids of a text as a JSON array");
  tokenize->add_option("-m,--model", tokenize_options->model_dir, "Model folder holding tokenizer.json, or a GGUF file")->required();
  tokenize->add_flag("--special", tokenize_options->parse_special,
                     "Turn special tokens written in the text (<|eot_id|>) into their ids");
  tokenize->add_flag("--bos", tokenize_options->add_bos, "Start with <|begin_of_text|>");
  tokenize->add_option("text", tokenize_options->text, "The text (UTF-8)")->required();
  tokenize->callback([tokenize_options] { run_tokenize(*tokenize_options); });

  auto detokenize_options = std::make_shared<DetokenizeOptions>();
  CLI::App* detokenize = app.add_subcommand("detokenize", "Print the text of token ids");
  detokenize->add_option("-m,--model", detokenize_options->model_dir, "Model folder holding tokenizer.json, or a GGUF file")
      ->required();
  detokenize->add_flag("--skip-special", detokenize_options->skip_special, "Leave special tokens out");
  detokenize->add_option("ids", detokenize_options->ids, "Token ids: \"1,2,3\" or a JSON array \"[1, 2, 3]\"")
      ->required();
  detokenize->callback([detokenize_options] { run_detokenize(*detokenize_options); });
}

}  // namespace llama31::cli
