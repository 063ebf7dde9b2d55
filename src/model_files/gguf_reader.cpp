#include "model_files/gguf_reader.h"

#include <cstring>
#include <fstream>

#include "util/error.h"

namespace llama31 {
namespace {

constexpr char kMagic[4] = {'G', 'G', 'U', 'F'};
// Nesting of arrays inside arrays that a metadata value may use (llama.cpp writes none).
constexpr int kMaxArrayDepth = 4;
constexpr uint32_t kMaxDims = 4;  // GGML_MAX_DIMS

// Reads little-endian values from the mapped header, failing (naming the file and what was being read)
// instead of running past the end.
class Cursor {
 public:
  Cursor(const std::byte* data, size_t size, std::string file) : data_(data), size_(size), file_(std::move(file)) {}

  template <typename T>
  T read(const char* what) {
    need(sizeof(T), what);
    T value;
    std::memcpy(&value, data_ + at_, sizeof(T));
    at_ += sizeof(T);
    return value;
  }
  std::string read_string(const char* what) {
    const uint64_t length = read<uint64_t>(what);
    need(length, what);
    std::string s(reinterpret_cast<const char*>(data_ + at_), static_cast<size_t>(length));
    at_ += static_cast<size_t>(length);
    return s;
  }
  // Fails unless `count` items of at least `min_bytes` each could still fit (bounds absurd counts
  // before anything is allocated for them).
  void check_count(uint64_t count, uint64_t min_bytes, const std::string& what) const {
    if (min_bytes != 0 && count > (size_ - at_) / min_bytes) {
      fail("{}: {} claims {} entries, more than the file holds (truncated or corrupt)", file_, what, count);
    }
  }
  size_t offset() const { return at_; }
  const std::string& file() const { return file_; }

 private:
  void need(uint64_t bytes, const char* what) const {
    if (bytes > size_ - at_) fail("{}: file ends inside {} (truncated at byte {})", file_, what, size_);
  }
  const std::byte* data_;
  size_t size_;
  size_t at_ = 0;
  std::string file_;
};

// Smallest encoded size of one value of a type (for count checks).
uint64_t min_value_bytes(GgufValueType type) {
  switch (type) {
    case GgufValueType::UINT8: case GgufValueType::INT8: case GgufValueType::BOOL: return 1;
    case GgufValueType::UINT16: case GgufValueType::INT16: return 2;
    case GgufValueType::UINT32: case GgufValueType::INT32: case GgufValueType::FLOAT32: return 4;
    case GgufValueType::UINT64: case GgufValueType::INT64: case GgufValueType::FLOAT64:
    case GgufValueType::STRING: return 8;
    case GgufValueType::ARRAY: return 12;
  }
  return 1;
}

bool known_value_type(uint32_t t) { return t <= static_cast<uint32_t>(GgufValueType::FLOAT64); }

nlohmann::json read_value(Cursor& in, GgufValueType type, const std::string& key, int depth, GgufValue* top) {
  switch (type) {
    case GgufValueType::UINT8: return in.read<uint8_t>("a metadata value");
    case GgufValueType::INT8: return in.read<int8_t>("a metadata value");
    case GgufValueType::UINT16: return in.read<uint16_t>("a metadata value");
    case GgufValueType::INT16: return in.read<int16_t>("a metadata value");
    case GgufValueType::UINT32: return in.read<uint32_t>("a metadata value");
    case GgufValueType::INT32: return in.read<int32_t>("a metadata value");
    case GgufValueType::UINT64: return in.read<uint64_t>("a metadata value");
    case GgufValueType::INT64: return in.read<int64_t>("a metadata value");
    case GgufValueType::FLOAT32: return in.read<float>("a metadata value");
    case GgufValueType::FLOAT64: return in.read<double>("a metadata value");
    case GgufValueType::BOOL: {
      const uint8_t b = in.read<uint8_t>("a metadata value");
      if (b > 1) fail("{}: metadata {} has bool value {} (expected 0 or 1)", in.file(), key, b);
      return b == 1;
    }
    case GgufValueType::STRING: return in.read_string("a metadata string");
    case GgufValueType::ARRAY: {
      if (depth >= kMaxArrayDepth) fail("{}: metadata {} nests arrays deeper than {}", in.file(), key, kMaxArrayDepth);
      const uint32_t element = in.read<uint32_t>("an array's element type");
      if (!known_value_type(element)) fail("{}: metadata {} has arrays of unknown type {}", in.file(), key, element);
      const auto element_type = static_cast<GgufValueType>(element);
      if (top != nullptr) top->array_type = element_type;
      const uint64_t count = in.read<uint64_t>("an array's length");
      in.check_count(count, min_value_bytes(element_type), "metadata " + key);
      nlohmann::json array = nlohmann::json::array();
      array.get_ref<nlohmann::json::array_t&>().reserve(static_cast<size_t>(count));
      for (uint64_t i = 0; i < count; ++i) array.push_back(read_value(in, element_type, key, depth + 1, nullptr));
      return array;
    }
  }
  fail("{}: metadata {} has unknown type {}", in.file(), key, static_cast<uint32_t>(type));
}

bool is_integer_type(GgufValueType t);

// A non-negative integer of any GGUF integer type.
std::optional<uint64_t> as_uint(const GgufValue& v) {
  if (!is_integer_type(v.type)) return std::nullopt;
  if (v.value.is_number_unsigned()) return v.value.get<uint64_t>();
  const int64_t n = v.value.get<int64_t>();
  if (n < 0) return std::nullopt;
  return static_cast<uint64_t>(n);
}

bool is_integer_type(GgufValueType t) {
  switch (t) {
    case GgufValueType::UINT8: case GgufValueType::INT8: case GgufValueType::UINT16: case GgufValueType::INT16:
    case GgufValueType::UINT32: case GgufValueType::INT32: case GgufValueType::UINT64: case GgufValueType::INT64:
      return true;
    default: return false;
  }
}

}  // namespace

GgufFile::GgufFile(const std::filesystem::path& path) {
  if (!std::filesystem::exists(path)) fail("model file {} does not exist", path.string());
  file_ = std::make_shared<const MappedFile>(path);
  const std::string name = path.string();
  Cursor in(file_->data(), file_->size(), name);
  char magic[4];
  for (char& c : magic) c = static_cast<char>(in.read<uint8_t>("the GGUF magic"));
  if (std::memcmp(magic, kMagic, 4) != 0) fail("{}: not a GGUF file (the first bytes are not \"GGUF\")", name);
  version_ = in.read<uint32_t>("the version");
  if (version_ != 2 && version_ != 3) {
    fail("{}: GGUF version {} is not supported (versions 2 and 3 are; version 1 files predate August 2023)", name,
         version_);
  }
  const uint64_t tensor_count = in.read<uint64_t>("the tensor count");
  const uint64_t kv_count = in.read<uint64_t>("the metadata count");
  in.check_count(kv_count, 8 + 4 + 1, "the metadata count");
  in.check_count(tensor_count, 8 + 4 + 8 + 4 + 8, "the tensor count");

  for (uint64_t i = 0; i < kv_count; ++i) {
    std::string key = in.read_string("a metadata key");
    const uint32_t type = in.read<uint32_t>("a metadata type");
    if (!known_value_type(type)) fail("{}: metadata {} has unknown type {}", name, key, type);
    GgufValue value;
    value.type = static_cast<GgufValueType>(type);
    value.value = read_value(in, value.type, key, 0, &value);
    if (!metadata_.emplace(key, std::move(value)).second) fail("{}: metadata key {} appears twice", name, key);
  }

  uint64_t alignment = GgufWriter::kAlignment;
  if (const GgufValue* a = find("general.alignment")) {
    const std::optional<uint64_t> n = as_uint(*a);
    if (!n || *n == 0 || (*n & (*n - 1)) != 0) {
      fail("{}: general.alignment must be a power of two, got {}", name, a->value.dump());
    }
    alignment = *n;
  }

  struct Pending {
    GgufTensorInfo info;
    uint64_t offset;
  };
  std::vector<Pending> pending;
  pending.reserve(static_cast<size_t>(tensor_count));
  for (uint64_t i = 0; i < tensor_count; ++i) {
    Pending t;
    t.info.name = in.read_string("a tensor name");
    const uint32_t dims = in.read<uint32_t>("a tensor's dimension count");
    if (dims == 0 || dims > kMaxDims) fail("{}: tensor {} has {} dimensions (1 to {} allowed)", name, t.info.name, dims, kMaxDims);
    std::vector<int64_t> ne(dims);
    for (int64_t& d : ne) {
      d = in.read<int64_t>("a tensor's shape");
      if (d <= 0) fail("{}: tensor {} has a dimension of {}", name, t.info.name, d);
    }
    const uint32_t type_number = in.read<uint32_t>("a tensor's type");
    const std::optional<GgmlType> type = ggml_type_from_number(type_number);
    if (!type) {
      fail("{}: tensor {} has ggml type {}, which llama31 does not read (supported: F32, F16, BF16, Q8_0, Q4_0, "
           "Q5_0, Q4_K, Q5_K, Q6_K)",
           name, t.info.name, type_number);
    }
    t.info.type = *type;
    t.offset = in.read<uint64_t>("a tensor's data offset");
    if (t.offset % alignment != 0) fail("{}: tensor {} data offset {} is not aligned to {}", name, t.info.name, t.offset, alignment);
    // Bytes: rows of ne[0] values in whole blocks, times the other dimensions, without overflow.
    if (ne[0] % ggml_block_values(t.info.type) != 0) {
      fail("{}: tensor {} rows of {} values are not whole {} blocks of {}", name, t.info.name, ne[0],
           ggml_type_name(t.info.type), ggml_block_values(t.info.type));
    }
    uint64_t bytes = ggml_row_bytes(t.info.type, ne[0]);
    for (size_t d = 1; d < ne.size(); ++d) {
      if (__builtin_mul_overflow(bytes, static_cast<uint64_t>(ne[d]), &bytes)) {
        fail("{}: tensor {} has a shape whose byte size overflows", name, t.info.name);
      }
    }
    t.info.nbytes = static_cast<size_t>(bytes);
    t.info.shape.assign(ne.rbegin(), ne.rend());
    if (tensor_index_.count(t.info.name) != 0) fail("{}: tensor {} appears twice", name, t.info.name);
    tensor_index_[t.info.name] = pending.size();
    pending.push_back(std::move(t));
  }

  const uint64_t data_start = (in.offset() + alignment - 1) / alignment * alignment;
  for (Pending& t : pending) {
    uint64_t end = 0;
    if (__builtin_add_overflow(data_start, t.offset, &end) || __builtin_add_overflow(end, t.info.nbytes, &end) ||
        end > file_->size()) {
      fail("{}: tensor {} ({} bytes at offset {}) lies beyond the end of the file ({} bytes; truncated?)", name,
           t.info.name, t.info.nbytes, t.offset, file_->size());
    }
    t.info.data = file_->data() + data_start + t.offset;
    tensors_.push_back(std::move(t.info));
  }
}

const GgufTensorInfo* GgufFile::find_tensor(const std::string& name) const {
  const auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

const GgufValue* GgufFile::find(const std::string& key) const {
  const auto it = metadata_.find(key);
  return it == metadata_.end() ? nullptr : &it->second;
}

std::optional<std::string> GgufFile::find_string(const std::string& key) const {
  const GgufValue* v = find(key);
  if (v == nullptr) return std::nullopt;
  if (v->type != GgufValueType::STRING) fail("{}: metadata {} is not a string", path().string(), key);
  return v->value.get<std::string>();
}

std::string GgufFile::get_string(const std::string& key) const {
  auto s = find_string(key);
  if (!s) fail("{}: metadata {} is missing", path().string(), key);
  return *s;
}

std::optional<uint64_t> GgufFile::find_uint(const std::string& key) const {
  const GgufValue* v = find(key);
  if (v == nullptr) return std::nullopt;
  const std::optional<uint64_t> n = as_uint(*v);
  if (!n) fail("{}: metadata {} must be a non-negative integer, got {}", path().string(), key, v->value.dump());
  return n;
}

uint64_t GgufFile::get_uint(const std::string& key) const {
  auto n = find_uint(key);
  if (!n) fail("{}: metadata {} is missing", path().string(), key);
  return *n;
}

std::optional<double> GgufFile::find_float(const std::string& key) const {
  const GgufValue* v = find(key);
  if (v == nullptr) return std::nullopt;
  if (v->type != GgufValueType::FLOAT32 && v->type != GgufValueType::FLOAT64) {
    fail("{}: metadata {} must be a float, got {}", path().string(), key, v->value.dump());
  }
  return v->value.get<double>();
}

double GgufFile::get_float(const std::string& key) const {
  auto f = find_float(key);
  if (!f) fail("{}: metadata {} is missing", path().string(), key);
  return *f;
}

std::optional<bool> GgufFile::find_bool(const std::string& key) const {
  const GgufValue* v = find(key);
  if (v == nullptr) return std::nullopt;
  if (v->type != GgufValueType::BOOL) fail("{}: metadata {} must be a bool, got {}", path().string(), key, v->value.dump());
  return v->value.get<bool>();
}

const nlohmann::json& GgufFile::get_array(const std::string& key) const {
  const GgufValue* v = find(key);
  if (v == nullptr) fail("{}: metadata {} is missing", path().string(), key);
  if (v->type != GgufValueType::ARRAY) fail("{}: metadata {} is not an array", path().string(), key);
  return v->value;
}

bool is_gguf_file(const std::filesystem::path& path) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) return false;
  std::ifstream in(path, std::ios::binary);
  char magic[4] = {};
  in.read(magic, 4);
  return in.gcount() == 4 && std::memcmp(magic, kMagic, 4) == 0;
}

}  // namespace llama31
