#include "model_files/quantization_config.h"

#include <nlohmann/json.hpp>

#include "model_files/json_fields.h"
#include "util/error.h"

namespace llama31 {

std::string_view quant_method_name(QuantMethod method) {
  switch (method) {
    case QuantMethod::Awq: return "awq";
    case QuantMethod::Gptq: return "gptq";
    case QuantMethod::FbgemmFp8: return "fbgemm_fp8";
  }
  return "?";
}

QuantizationConfig QuantizationConfig::from_json(const nlohmann::json& j, const std::string& source) {
  const std::string where = source + ": quantization_config";
  if (!j.is_object()) fail("{} must be an object", where);
  const auto method = json_fields::optional_string(j, "quant_method", where);
  if (!method) fail("{} has no quant_method", where);
  QuantizationConfig q;
  if (*method == "awq") {
    q.method = QuantMethod::Awq;
  } else if (*method == "gptq") {
    q.method = QuantMethod::Gptq;
  } else if (*method == "fbgemm_fp8") {
    q.method = QuantMethod::FbgemmFp8;
  } else {
    fail("{}: quant_method '{}' is not supported (supported: awq, gptq, fbgemm_fp8)", where, *method);
  }
  if (const auto it = j.find("modules_to_not_convert"); it != j.end() && !it->is_null()) {
    if (!it->is_array()) fail("{}: modules_to_not_convert must be a list of names", where);
    for (const auto& name : *it) {
      if (!name.is_string()) fail("{}: modules_to_not_convert must be a list of names", where);
      q.modules_to_not_convert.push_back(name.get<std::string>());
    }
  }
  if (q.method == QuantMethod::FbgemmFp8) {
    q.bits = 8;
    q.activation_scale_ub = json_fields::optional_double(j, "activation_scale_ub", where).value_or(1200.0);
    if (!(q.activation_scale_ub > 0)) fail("{}: activation_scale_ub must be positive", where);
    return q;
  }
  q.bits = json_fields::optional_int(j, q.method == QuantMethod::Awq ? "w_bit" : "bits", where)
               .value_or(json_fields::optional_int(j, "bits", where).value_or(4));
  if (q.bits != 4) fail("{}: {}-bit {} is not supported (only 4-bit)", where, q.bits, *method);
  q.group_size = json_fields::optional_int(j, q.method == QuantMethod::Awq ? "q_group_size" : "group_size", where)
                     .value_or(json_fields::optional_int(j, "group_size", where).value_or(128));
  if (q.group_size == 0 || q.group_size < -1 || (q.method == QuantMethod::Awq && q.group_size <= 0)) {
    fail("{}: group_size {} is not valid", where, q.group_size);
  }
  if (q.method == QuantMethod::Awq) {
    q.zero_point = json_fields::optional_bool(j, "zero_point", where).value_or(true);
    q.version = json_fields::optional_string(j, "version", where).value_or("gemm");
    for (char& ch : q.version) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    if (q.version != "gemm") {
      fail("{}: AWQ version '{}' is not supported (only the GEMM packing)", where, q.version);
    }
  } else {
    q.desc_act = json_fields::optional_bool(j, "desc_act", where).value_or(false);
    q.sym = json_fields::optional_bool(j, "sym", where).value_or(true);
    if (json_fields::optional_bool(j, "is_marlin_format", where).value_or(false)) {
      fail("{}: GPTQ checkpoints in Marlin format are not supported", where);
    }
    if (const auto format = json_fields::optional_string(j, "checkpoint_format", where);
        format && *format != "gptq") {
      fail("{}: GPTQ checkpoint_format '{}' is not supported (only 'gptq')", where, *format);
    }
  }
  return q;
}

nlohmann::json QuantizationConfig::to_json() const {
  nlohmann::json j;
  j["quant_method"] = std::string(quant_method_name(method));
  if (!modules_to_not_convert.empty()) j["modules_to_not_convert"] = modules_to_not_convert;
  switch (method) {
    case QuantMethod::Awq:
      j["bits"] = bits;
      j["group_size"] = group_size;
      j["zero_point"] = zero_point;
      j["version"] = version;
      if (modules_to_not_convert.empty()) j["modules_to_not_convert"] = nullptr;
      break;
    case QuantMethod::Gptq:
      j["bits"] = bits;
      j["group_size"] = group_size;
      j["desc_act"] = desc_act;
      j["sym"] = sym;
      j["checkpoint_format"] = "gptq";
      break;
    case QuantMethod::FbgemmFp8:
      j["activation_scale_ub"] = activation_scale_ub;
      break;
  }
  return j;
}

bool QuantizationConfig::keeps_unquantized(const std::string& module) const {
  for (const std::string& name : modules_to_not_convert) {
    if (name.empty()) continue;
    if (module == name || module.find(name) != std::string::npos) return true;
  }
  return false;
}

}  // namespace llama31
