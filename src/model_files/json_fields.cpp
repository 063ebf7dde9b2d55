#include "model_files/json_fields.h"

#include <cmath>
#include <fstream>
#include <limits>

#include <nlohmann/json.hpp>

#include "util/error.h"

namespace llama31::json_fields {

namespace {

const nlohmann::json* find_non_null(const nlohmann::json& j, const char* key) {
  const auto it = j.find(key);
  if (it == j.end() || it->is_null()) return nullptr;
  return &*it;
}

// An integer, or a float with an integral value (some exporters write 8192.0), that fits in int.
int to_int(const nlohmann::json& v, const char* key, const std::string& source) {
  if (v.is_number_integer()) {
    if (v.is_number_unsigned()) {
      const auto u = v.get<unsigned long long>();
      if (u > static_cast<unsigned long long>(std::numeric_limits<int>::max())) {
        fail("{}: {} ({}) is too large", source, key, u);
      }
      return static_cast<int>(u);
    }
    const auto s = v.get<long long>();
    if (s > std::numeric_limits<int>::max() || s < std::numeric_limits<int>::min()) {
      fail("{}: {} ({}) is out of range", source, key, s);
    }
    return static_cast<int>(s);
  }
  if (v.is_number_float()) {
    const double d = v.get<double>();
    if (std::isfinite(d) && d == std::floor(d) && d <= std::numeric_limits<int>::max() &&
        d >= std::numeric_limits<int>::min()) {
      return static_cast<int>(d);
    }
    fail("{}: {} ({}) must be an integer", source, key, d);
  }
  fail("{}: {} must be an integer, got {}", source, key, v.dump());
}

}  // namespace

std::optional<int> optional_int(const nlohmann::json& j, const char* key, const std::string& source) {
  const nlohmann::json* v = find_non_null(j, key);
  if (v == nullptr) return std::nullopt;
  return to_int(*v, key, source);
}

std::optional<double> optional_double(const nlohmann::json& j, const char* key, const std::string& source) {
  const nlohmann::json* v = find_non_null(j, key);
  if (v == nullptr) return std::nullopt;
  if (!v->is_number()) fail("{}: {} must be a number, got {}", source, key, v->dump());
  return v->get<double>();
}

std::optional<bool> optional_bool(const nlohmann::json& j, const char* key, const std::string& source) {
  const nlohmann::json* v = find_non_null(j, key);
  if (v == nullptr) return std::nullopt;
  if (!v->is_boolean()) fail("{}: {} must be true or false, got {}", source, key, v->dump());
  return v->get<bool>();
}

std::optional<std::string> optional_string(const nlohmann::json& j, const char* key, const std::string& source) {
  const nlohmann::json* v = find_non_null(j, key);
  if (v == nullptr) return std::nullopt;
  if (!v->is_string()) fail("{}: {} must be a string, got {}", source, key, v->dump());
  return v->get<std::string>();
}

std::vector<int> token_id_list(const nlohmann::json& j, const char* key, const std::string& source) {
  const nlohmann::json* v = find_non_null(j, key);
  if (v == nullptr) return {};
  std::vector<int> ids;
  if (v->is_array()) {
    for (const auto& item : *v) {
      const int id = to_int(item, key, source);
      if (id < 0) fail("{}: {} contains a negative token id ({})", source, key, id);
      ids.push_back(id);
    }
  } else {
    const int id = to_int(*v, key, source);
    if (id < 0) fail("{}: {} ({}) must not be negative", source, key, id);
    ids.push_back(id);
  }
  return ids;
}

void write_json_file(const std::filesystem::path& path, const nlohmann::json& j) {
  std::ofstream out(path, std::ios::trunc);
  if (!out) fail("cannot create {}", path.string());
  out << j.dump(2) << '\n';
  out.close();
  if (!out) fail("cannot write {}", path.string());
}

}  // namespace llama31::json_fields
