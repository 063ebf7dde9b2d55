// The `llama31 memory` report as aligned text tables and as JSON.
#include <fmt/format.h>

#include <nlohmann/json.hpp>
#include <string>

#include "planner/memory_planner.h"

namespace llama31::planner {

namespace {

// Wraps text at `width` columns, every line starting with `indent`.
std::string wrap(const std::string& text, const std::string& indent, size_t width = 100) {
  std::string out, line = indent;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find(' ', start);
    if (end == std::string::npos) end = text.size();
    const std::string word = text.substr(start, end - start);
    if (line.size() > indent.size() && line.size() + 1 + word.size() > width) {
      out += line + "\n";
      line = indent;
    }
    if (line.size() > indent.size()) line += ' ';
    line += word;
    start = end + 1;
  }
  if (line.size() > indent.size()) out += line + "\n";
  return out;
}

std::string release_cell(const std::optional<double>& value, const char* format) {
  return value ? fmt::format(fmt::runtime(format), *value) : std::string("-");
}

std::string weights_relation(const MemoryReport& report, const WeightsRow& row) {
  const double billions = static_cast<double>(report.parameters.total()) / 1e9;
  const double per = bytes_per_parameter(row.precision);
  std::string text = fmt::format("{:.2f} B x {} B = {:.2f} GB", billions, per, row.bytes / kGB);
  if (row.release_gb && report.model.published) {
    const double nominal = release_figures(*report.model.published).nominal_billions;
    text += fmt::format("; release: nominal {:.0f} B x {} B = {:g}", nominal, per, nominal * per);
    if (nominal * per != *row.release_gb) text += fmt::format(", printed {:g}", *row.release_gb);
  }
  return text;
}

void append_config_line(std::string& out, const LlamaConfig& c) {
  out += fmt::format(
      "  hidden {}, {} layers, {} attention heads / {} KV heads, head_dim {}, intermediate {}, "
      "vocab {}, {} lm_head, max context {}\n",
      c.hidden_size, c.num_hidden_layers, c.num_attention_heads, c.num_key_value_heads,
      effective_head_dim(c), c.intermediate_size, c.vocab_size,
      c.tie_word_embeddings ? "tied" : "untied", c.max_position_embeddings);
}

void append_training(std::string& out, const MemoryReport& report) {
  const TrainingAssumptions& a = report.training_assumptions;
  out += fmt::format(
      "\nTraining estimates (GB; one device, no sharding, no CPU offload, no framework overhead)\n");
  out += wrap("Activations (all methods): " +
                  training_activations(report.model.config, a).assumption + ".",
              "  ");
  for (const auto& estimate : report.training) {
    out += fmt::format("\n  {}: {} trainable parameters\n", estimate.title,
                       group_digits(estimate.trainable_parameters));
    for (const auto& item : estimate.items) {
      const std::string assumption =
          item.name == "activations" ? std::string("see Activations above") : item.assumption;
      out += fmt::format("    {:<28} {:>10.2f}   ", item.name, item.bytes / kGB);
      std::string wrapped = wrap(assumption, std::string(46, ' '));
      out += wrapped.substr(46);  // first line continues after the number
    }
    out += fmt::format("    {:<28} {:>10.2f}   release: {}\n", "total", estimate.total_bytes() / kGB,
                       estimate.release_gb ? fmt::format("{:g} GB", *estimate.release_gb)
                                           : std::string("-"));
    if (!estimate.comparison.empty()) out += wrap("vs release: " + estimate.comparison, "    ");
  }
  out += "\n  method        ours GB   release GB\n";
  for (const auto& estimate : report.training) {
    out += fmt::format("  {:<10} {:>10.1f}   {:>10}\n", estimate.method, estimate.total_bytes() / kGB,
                       release_cell(estimate.release_gb, "{:g}"));
  }
}

}  // namespace

std::string group_digits(long long value) {
  std::string digits = std::to_string(value < 0 ? -value : value);
  std::string out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return value < 0 ? "-" + out : out;
}

std::string format_report_text(const MemoryReport& report) {
  const LlamaConfig& c = report.model.config;
  std::string out;
  out += fmt::format("{}{}\n", report.model.label,
                     report.model.published ? " (built-in config.json values)" : "");
  append_config_line(out, c);
  const ParameterBreakdown& p = report.parameters;
  out += fmt::format("Parameters: {} ({:.2f} B)\n", group_digits(p.total()),
                     static_cast<double>(p.total()) / 1e9);
  out += fmt::format("  embedding {}, attention {}, MLP {}, norms {}, lm_head {}\n",
                     group_digits(p.embedding), group_digits(p.attention), group_digits(p.mlp),
                     group_digits(p.norms), group_digits(p.lm_head));
  out += "Units: GB = 10^9 bytes, GiB = 2^30 bytes.\n";

  out += "\nWeights (parameters x bytes per parameter)\n";
  out += fmt::format("  {:<6} {:>8} {:>10} {:>11}   {}\n", "dtype", "B/param", "GB", "release GB",
                     "how they relate");
  for (const auto& row : report.weights) {
    out += fmt::format("  {:<6} {:>8} {:>10.2f} {:>11}   {}\n", precision_name(row.precision),
                       bytes_per_parameter(row.precision), row.bytes / kGB,
                       release_cell(row.release_gb, "{:g}"), weights_relation(report, row));
  }
  out += "  int4: 0.5 B for every parameter, as the release counts (group scales and 16-bit\n"
         "  embeddings of real 4-bit formats add a few percent).\n";
  if (report.model.stored_weight_bytes) {
    out += fmt::format("  As stored in the folder: {:.3f} GB ({} bytes of safetensors data)\n",
                       static_cast<double>(*report.model.stored_weight_bytes) / kGB,
                       group_digits(static_cast<long long>(*report.model.stored_weight_bytes)));
  }

  const int head_dim = effective_head_dim(c);
  out += fmt::format(
      "\nKV cache (2 x {} layers x {} KV heads x {} dims = {} values per token; batch {}; GiB)\n",
      c.num_hidden_layers, c.num_key_value_heads, head_dim, group_digits(kv_values_per_token(c)),
      report.batch);
  out += fmt::format("  {:>9} {:>12} {:>11} {:>14}\n", "tokens", "16-bit GiB", "8-bit GiB",
                     "release GiB");
  bool any_wrong = false;
  for (const auto& row : report.kv_cache) {
    std::string release = release_cell(row.release_gib, "{:g}");
    if (row.release_gib && !release_kv_agrees(*row.release_gib, row.bytes_16bit / kGiB)) {
      release += " *";
      any_wrong = true;
    }
    out += fmt::format("  {:>9} {:>12.4f} {:>11.4f} {:>14}\n", group_digits(row.context),
                       row.bytes_16bit / kGiB, row.bytes_8bit / kGiB, release);
  }
  if (any_wrong) out += "  * the release's figure disagrees with the arithmetic: see Notes\n";

  out += fmt::format(
      "\nInference with {} weights, 16-bit KV cache, batch {} (scratch: one 512-token prompt chunk\n"
      "with 16-bit activations, one attention row per thread, logits of the last token)\n",
      precision_name(report.dtype), report.batch);
  out += fmt::format("  {:>9} {:>11} {:>9} {:>11} {:>10} {:>10}\n", "tokens", "weights GB", "KV GB",
                     "scratch GB", "total GB", "total GiB");
  const double weights = weights_bytes(c, report.dtype);
  for (const auto& row : report.kv_cache) {
    out += fmt::format("  {:>9} {:>11.2f} {:>9.2f} {:>11.2f} {:>10.2f} {:>10.2f}\n",
                       group_digits(row.context), weights / kGB, row.bytes_16bit / kGB,
                       row.scratch_bytes / kGB, row.inference_total_bytes / kGB,
                       row.inference_total_bytes / kGiB);
  }

  append_training(out, report);

  if (!report.notes.empty()) {
    out += "\nNotes\n";
    for (const auto& note : report.notes) out += "  - " + wrap(note, "    ").substr(4);
  }
  return out;
}

nlohmann::json report_to_json(const MemoryReport& report) {
  using nlohmann::json;
  const LlamaConfig& c = report.model.config;
  json j;
  j["units"] = {{"GB", kGB}, {"GiB", kGiB}};
  j["model"] = {{"label", report.model.label},
                {"published", report.model.published.has_value()},
                {"hidden_size", c.hidden_size},
                {"intermediate_size", c.intermediate_size},
                {"num_hidden_layers", c.num_hidden_layers},
                {"num_attention_heads", c.num_attention_heads},
                {"num_key_value_heads", c.num_key_value_heads},
                {"head_dim", effective_head_dim(c)},
                {"vocab_size", c.vocab_size},
                {"tie_word_embeddings", c.tie_word_embeddings},
                {"max_position_embeddings", c.max_position_embeddings}};
  if (report.model.stored_weight_bytes) {
    j["model"]["stored_weight_bytes"] = *report.model.stored_weight_bytes;
  }
  const ParameterBreakdown& p = report.parameters;
  j["parameters"] = {{"total", p.total()},     {"embedding", p.embedding}, {"attention", p.attention},
                     {"mlp", p.mlp},           {"norms", p.norms},         {"lm_head", p.lm_head}};
  j["dtype"] = std::string(precision_name(report.dtype));
  j["batch"] = report.batch;
  j["weights"] = json::array();
  for (const auto& row : report.weights) {
    json w = {{"dtype", std::string(precision_name(row.precision))},
              {"bytes_per_parameter", bytes_per_parameter(row.precision)},
              {"bytes", row.bytes},
              {"gb", row.bytes / kGB}};
    w["release_gb"] = row.release_gb ? json(*row.release_gb) : json(nullptr);
    j["weights"].push_back(w);
  }
  j["kv_cache"] = json::array();
  for (const auto& row : report.kv_cache) {
    json k = {{"context", row.context},
              {"batch", report.batch},
              {"bytes_16bit", row.bytes_16bit},
              {"gib_16bit", row.bytes_16bit / kGiB},
              {"bytes_8bit", row.bytes_8bit},
              {"gib_8bit", row.bytes_8bit / kGiB},
              {"inference",
               {{"weights_bytes", weights_bytes(c, report.dtype)},
                {"kv_cache_bytes", row.bytes_16bit},
                {"scratch_bytes", row.scratch_bytes},
                {"total_bytes", row.inference_total_bytes}}}};
    k["release_gib"] = row.release_gib ? json(*row.release_gib) : json(nullptr);
    j["kv_cache"].push_back(k);
  }
  const TrainingAssumptions& a = report.training_assumptions;
  json training;
  training["assumptions"] = {{"sequence_length", a.sequence_length},
                             {"micro_batch", a.micro_batch},
                             {"weight_bytes", a.weight_bytes},
                             {"gradient_bytes", a.gradient_bytes},
                             {"master_weight_bytes", a.master_weight_bytes},
                             {"optimizer_state_bytes", a.optimizer_state_bytes},
                             {"lora_rank", a.lora_rank},
                             {"lora_targets", a.lora_targets},
                             {"lora_frozen_bytes", a.lora_frozen_bytes},
                             {"qlora_frozen_bytes", a.qlora_frozen_bytes},
                             {"qlora_block_size", a.qlora_block_size},
                             {"adapter_bytes", a.adapter_bytes},
                             {"activation_bytes", a.activation_bytes},
                             {"logits_bytes", a.logits_bytes},
                             {"gradient_checkpointing", "every decoder layer"}};
  training["estimates"] = json::array();
  for (const auto& estimate : report.training) {
    json e = {{"method", estimate.method},
              {"title", estimate.title},
              {"trainable_parameters", estimate.trainable_parameters},
              {"total_bytes", estimate.total_bytes()},
              {"total_gb", estimate.total_bytes() / kGB},
              {"comparison", estimate.comparison}};
    e["release_gb"] = estimate.release_gb ? json(*estimate.release_gb) : json(nullptr);
    e["items"] = json::array();
    for (const auto& item : estimate.items) {
      e["items"].push_back({{"name", item.name},
                            {"bytes", item.bytes},
                            {"gb", item.bytes / kGB},
                            {"assumption", item.assumption}});
    }
    training["estimates"].push_back(e);
  }
  j["training"] = training;
  j["notes"] = report.notes;
  return j;
}

}  // namespace llama31::planner
