#include "model_files/safetensors.h"

#include <algorithm>
#include <fstream>
#include <optional>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "util/error.h"
#include "util/progress.h"

namespace llama31 {

namespace {

constexpr const char* kIndexFileName = "model.safetensors.index.json";
constexpr const char* kSingleFileName = "model.safetensors";
constexpr size_t kHeaderLengthBytes = 8;
// The reference implementation refuses headers over 100 MB; so do we, before parsing.
constexpr uint64_t kMaxHeaderBytes = 100ull * 1024 * 1024;

std::optional<DType> dtype_from_name(const std::string& name) {
  if (name == "F32") return DType::F32;
  if (name == "F16") return DType::F16;
  if (name == "BF16") return DType::BF16;
  if (name == "I32") return DType::I32;
  if (name == "F8_E4M3") return DType::F8_E4M3;
  return std::nullopt;
}

uint64_t read_le_u64(const std::byte* p) {
  uint64_t value = 0;
  for (int i = 7; i >= 0; --i) value = (value << 8) | static_cast<uint64_t>(p[i]);
  return value;
}

// Reads a non-negative integer array element, or fails naming the file, tensor and field.
uint64_t header_uint(const nlohmann::json& v, const std::string& file, const std::string& tensor,
                     const char* field) {
  if (!v.is_number_unsigned() && !(v.is_number_integer() && v.get<long long>() >= 0)) {
    fail("{}: tensor {} has an invalid {} entry {}", file, tensor, field, v.dump());
  }
  return v.get<uint64_t>();
}

TensorView parse_tensor_entry(const std::string& name, const nlohmann::json& entry, const std::string& file,
                              const std::byte* data_section, uint64_t data_size) {
  if (!entry.is_object()) fail("{}: header entry for tensor {} is not an object", file, name);
  const auto dtype_it = entry.find("dtype");
  const auto shape_it = entry.find("shape");
  const auto offsets_it = entry.find("data_offsets");
  if (dtype_it == entry.end() || !dtype_it->is_string()) fail("{}: tensor {} has no dtype", file, name);
  if (shape_it == entry.end() || !shape_it->is_array()) fail("{}: tensor {} has no shape list", file, name);
  if (offsets_it == entry.end() || !offsets_it->is_array() || offsets_it->size() != 2) {
    fail("{}: tensor {} needs data_offsets [begin, end]", file, name);
  }
  const std::string dtype_string = dtype_it->get<std::string>();
  const std::optional<DType> dtype = dtype_from_name(dtype_string);
  if (!dtype) {
    fail("{}: tensor {} has unsupported dtype {} (supported: BF16, F16, F32, I32, F8_E4M3)", file, name, dtype_string);
  }
  TensorView view;
  view.name = name;
  view.dtype = *dtype;
  view.file = file;
  uint64_t numel = 1;
  for (const auto& dim_json : *shape_it) {
    const uint64_t dim = header_uint(dim_json, file, name, "shape");
    if (dim > static_cast<uint64_t>(INT64_MAX) || __builtin_mul_overflow(numel, dim, &numel)) {
      fail("{}: tensor {} has a shape whose element count overflows", file, name);
    }
    view.shape.push_back(static_cast<int64_t>(dim));
  }
  uint64_t expected_bytes = 0;
  if (__builtin_mul_overflow(numel, static_cast<uint64_t>(dtype_size(*dtype)), &expected_bytes)) {
    fail("{}: tensor {} has a shape whose byte size overflows", file, name);
  }
  const uint64_t begin = header_uint((*offsets_it)[0], file, name, "data_offsets");
  const uint64_t end = header_uint((*offsets_it)[1], file, name, "data_offsets");
  if (begin > end) fail("{}: tensor {} has data_offsets begin {} after end {}", file, name, begin, end);
  if (end > data_size) {
    fail("{}: tensor {} has data_offsets [{}, {}] beyond the data section ({} bytes; file truncated?)", file,
         name, begin, end, data_size);
  }
  if (end - begin != expected_bytes) {
    fail("{}: tensor {} spans {} bytes but shape {} of {} needs {}", file, name, end - begin,
         view.shape_string(), dtype_string, expected_bytes);
  }
  view.data = data_section + begin;
  view.nbytes = static_cast<size_t>(expected_bytes);
  return view;
}

nlohmann::json read_json_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("cannot open {}", path.string());
  std::ostringstream text;
  text << in.rdbuf();
  nlohmann::json j = nlohmann::json::parse(text.str(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) fail("{}: invalid JSON", path.string());
  return j;
}

}  // namespace

int64_t TensorView::numel() const {
  int64_t n = 1;
  for (const int64_t d : shape) n *= d;
  return n;
}

std::vector<float> TensorView::values() const {
  std::vector<float> out(static_cast<size_t>(numel()));
  convert_to_f32(dtype, data, out.data(), out.size());
  return out;
}

void TensorView::require_shape(const std::vector<int64_t>& expected) const {
  if (shape == expected) return;
  TensorView wanted;
  wanted.shape = expected;
  fail("{}: tensor {} has shape {}, expected {}", file.string(), name, shape_string(), wanted.shape_string());
}

std::string TensorView::shape_string() const {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i > 0) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

SafetensorsFile::SafetensorsFile(const std::filesystem::path& path) : file_(path) {
  const std::string name = path.string();
  const uint64_t file_size = file_.size();
  if (file_size < kHeaderLengthBytes) {
    fail("{}: file is too short ({} bytes) to be safetensors (truncated?)", name, file_size);
  }
  const uint64_t header_length = read_le_u64(file_.data());
  if (header_length > file_size - kHeaderLengthBytes) {
    fail("{}: header length {} goes beyond the end of the file ({} bytes; truncated?)", name, header_length,
         file_size);
  }
  if (header_length > kMaxHeaderBytes) fail("{}: header length {} is implausibly large", name, header_length);
  const char* header_text = reinterpret_cast<const char*>(file_.data() + kHeaderLengthBytes);
  const nlohmann::json header = nlohmann::json::parse(header_text, header_text + header_length, nullptr,
                                                      /*allow_exceptions=*/false);
  if (header.is_discarded()) fail("{}: header is not valid JSON", name);
  if (!header.is_object()) fail("{}: header is not a JSON object", name);

  const std::byte* data_section = file_.data() + kHeaderLengthBytes + header_length;
  const uint64_t data_size = file_size - kHeaderLengthBytes - header_length;
  for (const auto& [key, entry] : header.items()) {
    if (key == "__metadata__") {
      if (entry.is_null()) continue;
      if (!entry.is_object()) fail("{}: __metadata__ must be an object of strings", name);
      for (const auto& [meta_key, meta_value] : entry.items()) {
        if (!meta_value.is_string()) fail("{}: __metadata__ value for {} must be a string", name, meta_key);
        metadata_[meta_key] = meta_value.get<std::string>();
      }
      continue;
    }
    tensors_.emplace(key, parse_tensor_entry(key, entry, name, data_section, data_size));
  }

  // No two tensors may share bytes: a header that lies about offsets is rejected.
  std::vector<const TensorView*> by_offset;
  for (const auto& [key, view] : tensors_) {
    if (view.nbytes > 0) by_offset.push_back(&view);
  }
  std::sort(by_offset.begin(), by_offset.end(),
            [](const TensorView* a, const TensorView* b) { return a->data < b->data; });
  for (size_t i = 1; i < by_offset.size(); ++i) {
    const TensorView& previous = *by_offset[i - 1];
    if (by_offset[i]->data < previous.data + previous.nbytes) {
      fail("{}: tensors {} and {} overlap in the data section", name, previous.name, by_offset[i]->name);
    }
  }
}

TensorStore TensorStore::open_folder(const std::filesystem::path& dir) {
  TensorStore store;
  store.dir_ = dir;
  const std::filesystem::path index_path = dir / kIndexFileName;
  const std::filesystem::path single_path = dir / kSingleFileName;
  if (std::filesystem::exists(index_path)) {
    const nlohmann::json index = read_json_file(index_path);
    const std::string index_name = index_path.string();
    if (!index.is_object()) fail("{}: expected a JSON object", index_name);
    const auto map_it = index.find("weight_map");
    if (map_it == index.end() || !map_it->is_object() || map_it->empty()) {
      fail("{}: missing or empty weight_map", index_name);
    }
    std::map<std::string, size_t> shard_slot;  // shard file name -> index in files_
    for (const auto& [tensor, shard_json] : map_it->items()) {
      if (!shard_json.is_string()) fail("{}: weight_map entry for {} is not a file name", index_name, tensor);
      const std::string shard = shard_json.get<std::string>();
      if (shard.empty() || shard.find('/') != std::string::npos || shard == "." || shard == "..") {
        fail("{}: weight_map names an invalid shard '{}' for {}", index_name, shard, tensor);
      }
      if (shard_slot.count(shard) != 0) continue;
      const std::filesystem::path shard_path = dir / shard;
      if (!std::filesystem::exists(shard_path)) {
        fail("{}: shard {} listed in the index does not exist", index_name, shard_path.string());
      }
      shard_slot[shard] = store.files_.size();
      store.files_.push_back(std::make_unique<SafetensorsFile>(shard_path));
    }
    for (const auto& [tensor, shard_json] : map_it->items()) {
      const SafetensorsFile& file = *store.files_[shard_slot.at(shard_json.get<std::string>())];
      const auto it = file.tensors().find(tensor);
      if (it == file.tensors().end()) {
        fail("{}: tensor {} is listed in shard {} but that file does not hold it", index_name, tensor,
             file.path().string());
      }
      store.by_name_[tensor] = &it->second;
    }
  } else if (std::filesystem::exists(single_path)) {
    store.files_.push_back(std::make_unique<SafetensorsFile>(single_path));
    for (const auto& [tensor, view] : store.files_.back()->tensors()) store.by_name_[tensor] = &view;
  } else {
    fail("no {} or {} in {}", kSingleFileName, kIndexFileName, dir.string());
  }
  return store;
}

const TensorView* TensorStore::find(const std::string& name) const {
  const auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : it->second;
}

const TensorView& TensorStore::get(const std::string& name) const {
  const TensorView* view = find(name);
  if (view == nullptr) fail("missing tensor {} in {}", name, dir_.string());
  return *view;
}

const TensorView& TensorStore::get(const std::string& name, const std::vector<int64_t>& expected_shape) const {
  const TensorView& view = get(name);
  view.require_shape(expected_shape);
  return view;
}

std::vector<std::string> TensorStore::names() const {
  std::vector<std::string> result;
  result.reserve(by_name_.size());
  for (const auto& [name, view] : by_name_) result.push_back(name);
  return result;
}

size_t TensorStore::total_bytes() const {
  size_t total = 0;
  for (const auto& [name, view] : by_name_) total += view->nbytes;
  return total;
}

const TensorView& TensorStore::add_owned(const std::string& name, DType dtype, std::vector<int64_t> shape,
                                         std::vector<std::byte> data) {
  // The vector becomes the storage: a shared pointer to its bytes that owns the vector.
  auto bytes = std::make_shared<std::vector<std::byte>>(std::move(data));
  const size_t nbytes = bytes->size();
  const std::byte* first = bytes->data();
  return add_owned(name, dtype, std::move(shape), std::shared_ptr<const std::byte>(std::move(bytes), first), nbytes);
}

const TensorView& TensorStore::add_owned(const std::string& name_ref, DType dtype, std::vector<int64_t> shape,
                                         std::shared_ptr<const std::byte> data, size_t nbytes) {
  const std::string name = name_ref;  // name_ref may be the replaced tensor's own name, freed below
  auto owned = std::make_unique<OwnedTensor>();
  owned->view.name = name;
  owned->view.dtype = dtype;
  owned->view.shape = std::move(shape);
  owned->view.file = dir_;
  owned->storage = std::move(data);
  owned->view.data = owned->storage.get();
  owned->view.nbytes = nbytes;
  const int64_t numel = owned->view.numel();
  const int64_t row = owned->view.shape.empty() ? 1 : owned->view.shape.back();
  if (row <= 0 || nbytes != static_cast<size_t>(numel / row) * row_bytes(dtype, row)) {
    fail("tensor {}: {} bytes for shape {}", name, nbytes, owned->view.shape_string());
  }
  // A tensor this replaces that was itself held in memory is freed (views of it become invalid).
  std::erase_if(owned_, [&](const std::unique_ptr<OwnedTensor>& t) { return t->view.name == name; });
  owned_.push_back(std::move(owned));
  by_name_[name] = &owned_.back()->view;
  return owned_.back()->view;
}

namespace {

// The mapping that holds a view's bytes, if one of these does.
const MappedFile* mapping_holding(const std::vector<const MappedFile*>& mappings, const TensorView& view) {
  for (const MappedFile* m : mappings) {
    const std::byte* begin = m->data();
    if (begin != nullptr && view.data >= begin && view.data < begin + m->size()) return m;
  }
  return nullptr;
}

}  // namespace

const TensorView& TensorStore::add_mapped(TensorView view, std::shared_ptr<const MappedFile> file) {
  const std::byte* begin = file->data();
  if (view.data < begin || view.nbytes > file->size() || view.data > begin + (file->size() - view.nbytes)) {
    fail("tensor {}: its bytes lie outside {}", view.name, file->path().string());
  }
  auto owned = std::make_unique<OwnedTensor>();
  owned->view = std::move(view);
  owned->mapping = std::move(file);
  const std::string name = owned->view.name;
  std::erase_if(owned_, [&](const std::unique_ptr<OwnedTensor>& t) { return t->view.name == name; });
  owned_.push_back(std::move(owned));
  by_name_[name] = &owned_.back()->view;
  return owned_.back()->view;
}

TensorStore TensorStore::empty(const std::filesystem::path& source) {
  TensorStore store;
  store.dir_ = source;
  return store;
}

void TensorStore::prefault(bool show_progress) const {
  std::vector<const MappedFile*> mappings;
  for (const auto& f : files_) mappings.push_back(&f->mapped());
  for (const auto& t : owned_) {
    if (t->mapping && std::find(mappings.begin(), mappings.end(), t->mapping.get()) == mappings.end()) {
      mappings.push_back(t->mapping.get());
    }
  }
  std::vector<std::pair<const MappedFile*, const TensorView*>> in_use;
  size_t total = 0;
  for (const auto& [name, view] : by_name_) {
    if (const MappedFile* m = mapping_holding(mappings, *view)) {
      in_use.emplace_back(m, view);
      total += view->nbytes;
    }
  }
  std::optional<Progress> progress;
  if (show_progress) progress.emplace("loading weights", total);
  size_t done = 0;
  for (const auto& [mapping, view] : in_use) {
    // In slices, so the progress moves within large tensors too.
    constexpr size_t kSlice = size_t{64} << 20;
    const size_t offset = static_cast<size_t>(view->data - mapping->data());
    for (size_t at = 0; at < view->nbytes; at += kSlice) {
      const size_t length = std::min(kSlice, view->nbytes - at);
      mapping->prefault_range(offset + at, length);
      done += length;
      if (progress) progress->update(done);
    }
  }
  if (progress) progress->finish();
}

void TensorStore::release_replaced() const {
  for (const auto& f : files_) {
    for (const auto& [name, view] : f->tensors()) {
      const auto it = by_name_.find(name);
      if (it != by_name_.end() && it->second == &view) continue;  // still in use
      f->mapped().release_range(static_cast<size_t>(view.data - f->mapped().data()), view.nbytes);
    }
  }
}

void write_safetensors(const std::filesystem::path& path, const std::vector<TensorToWrite>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  nlohmann::json header = nlohmann::json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  std::set<std::string> seen;
  for (const TensorToWrite& t : tensors) {
    if (t.name.empty() || t.name == "__metadata__") fail("{}: invalid tensor name '{}'", path.string(), t.name);
    if (!seen.insert(t.name).second) fail("{}: tensor {} written twice", path.string(), t.name);
    uint64_t numel = 1;
    for (const int64_t d : t.shape) {
      if (d < 0) fail("{}: tensor {} has a negative dimension", path.string(), t.name);
      numel *= static_cast<uint64_t>(d);
    }
    if (t.data.size() != numel * dtype_size(t.dtype)) {
      fail("{}: tensor {} has {} bytes of data, shape needs {}", path.string(), t.name, t.data.size(),
           numel * dtype_size(t.dtype));
    }
    header[t.name] = {{"dtype", std::string(dtype_name(t.dtype))},
                      {"shape", t.shape},
                      {"data_offsets", {offset, offset + t.data.size()}}};
    offset += t.data.size();
  }
  std::string header_text = header.dump();
  // Pad with spaces so the data section starts 8-byte aligned, as the reference writer does.
  while ((kHeaderLengthBytes + header_text.size()) % 8 != 0) header_text.push_back(' ');

  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) fail("cannot create {}", path.string());
  uint64_t header_length = header_text.size();
  char length_bytes[kHeaderLengthBytes];
  for (size_t i = 0; i < kHeaderLengthBytes; ++i) {
    length_bytes[i] = static_cast<char>(header_length & 0xffu);
    header_length >>= 8;
  }
  out.write(length_bytes, sizeof length_bytes);
  out.write(header_text.data(), static_cast<std::streamsize>(header_text.size()));
  for (const TensorToWrite& t : tensors) {
    out.write(reinterpret_cast<const char*>(t.data.data()), static_cast<std::streamsize>(t.data.size()));
  }
  out.close();
  if (!out) fail("cannot write {}", path.string());
}

SafetensorsFolderWriter::SafetensorsFolderWriter(std::filesystem::path dir, size_t shard_bytes,
                                                 std::map<std::string, std::string> metadata)
    : dir_(std::move(dir)), shard_bytes_(shard_bytes), metadata_(std::move(metadata)) {}

void SafetensorsFolderWriter::add(TensorToWrite tensor) {
  if (!pending_.empty() && pending_bytes_ + tensor.data.size() > shard_bytes_) flush();
  pending_bytes_ += tensor.data.size();
  pending_.push_back(std::move(tensor));
}

void SafetensorsFolderWriter::flush() {
  if (pending_.empty()) return;
  const std::filesystem::path path = dir_ / fmt::format("shard-{:05d}.partial", shard_tensors_.size() + 1);
  write_safetensors(path, pending_, metadata_);
  std::vector<std::string> names;
  for (const TensorToWrite& t : pending_) names.push_back(t.name);
  shard_tensors_.push_back(std::move(names));
  total_bytes_ += pending_bytes_;
  pending_.clear();
  pending_bytes_ = 0;
}

size_t SafetensorsFolderWriter::finish() {
  flush();
  const size_t n = shard_tensors_.size();
  if (n == 0) fail("{}: no tensors to write", dir_.string());
  if (n == 1) {
    std::filesystem::rename(dir_ / "shard-00001.partial", dir_ / kSingleFileName);
    return total_bytes_;
  }
  nlohmann::json weight_map = nlohmann::json::object();
  for (size_t i = 0; i < n; ++i) {
    const std::string file = fmt::format("model-{:05d}-of-{:05d}.safetensors", i + 1, n);
    std::filesystem::rename(dir_ / fmt::format("shard-{:05d}.partial", i + 1), dir_ / file);
    for (const std::string& name : shard_tensors_[i]) weight_map[name] = file;
  }
  const nlohmann::json index = {{"metadata", {{"total_size", total_bytes_}}}, {"weight_map", weight_map}};
  std::ofstream out(dir_ / kIndexFileName, std::ios::trunc);
  out << index.dump(2) << '\n';
  out.close();
  if (!out) fail("cannot write {}", (dir_ / kIndexFileName).string());
  return total_bytes_;
}

}  // namespace llama31
