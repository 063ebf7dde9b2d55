// safetensors reading, writing, sharded folders and every malformed file we can think of.
#include <gtest/gtest.h>

#include <cmath>
#include <nlohmann/json.hpp>

#include "model_files/safetensors.h"
#include "model_files_test_util.h"
#include "support/temp_dir.h"

namespace llama31 {
namespace {

using testing::expect_error;
using testing::raw_safetensors;
using testing::write_bytes;

// Values chosen to exercise rounding: exact in every dtype, inexact in the half types, negative, tiny.
std::vector<float> sample_values(size_t n, float offset) {
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = offset + 0.37f * static_cast<float>(i) - 1.5f / (1.0f + static_cast<float>(i));
  return v;
}

TensorToWrite make_tensor(const std::string& name, DType dtype, std::vector<int64_t> shape, float offset) {
  size_t numel = 1;
  for (const int64_t d : shape) numel *= static_cast<size_t>(d);
  const std::vector<float> values = sample_values(numel, offset);
  TensorToWrite t{name, dtype, std::move(shape), std::vector<uint8_t>(numel * dtype_size(dtype))};
  for (size_t i = 0; i < numel; ++i) {
    if (dtype == DType::F32) {
      std::memcpy(t.data.data() + 4 * i, &values[i], 4);
    } else {
      const uint16_t h = dtype == DType::BF16 ? f32_to_bf16(values[i]) : f32_to_f16(values[i]);
      std::memcpy(t.data.data() + 2 * i, &h, 2);
    }
  }
  return t;
}

std::vector<float> to_floats(const TensorView& view) {
  std::vector<float> out(static_cast<size_t>(view.numel()));
  convert_to_f32(view.dtype, view.data, out.data(), out.size());
  return out;
}

TEST(Safetensors, RoundTripsAllThreeDtypesAndMetadata) {
  testing::TempDir dir;
  const auto path = dir.path() / "model.safetensors";
  const std::vector<TensorToWrite> written = {
      make_tensor("a.bf16", DType::BF16, {3, 5}, 1.0f),   // 30 bytes: the next tensor starts unaligned
      make_tensor("b.f32", DType::F32, {7}, -2.0f),
      make_tensor("c.f16", DType::F16, {2, 2, 3}, 0.25f),
      make_tensor("d.scalar", DType::F32, {}, 4.0f),
      make_tensor("e.empty", DType::BF16, {0, 4}, 0.0f),
  };
  write_safetensors(path, written, {{"format", "pt"}, {"note", "hello"}});

  const std::string bytes = testing::read_bytes(path);
  uint64_t header_length = 0;
  std::memcpy(&header_length, bytes.data(), 8);
  EXPECT_EQ((8 + header_length) % 8, 0u) << "data section must start 8-byte aligned";

  const SafetensorsFile file(path);
  EXPECT_EQ(file.metadata().at("format"), "pt");
  EXPECT_EQ(file.metadata().at("note"), "hello");
  ASSERT_EQ(file.tensors().size(), written.size());
  for (const TensorToWrite& t : written) {
    SCOPED_TRACE(t.name);
    const TensorView& view = file.tensors().at(t.name);
    EXPECT_EQ(view.dtype, t.dtype);
    EXPECT_EQ(view.shape, t.shape);
    ASSERT_EQ(view.nbytes, t.data.size());
    if (!t.data.empty()) {
      EXPECT_EQ(std::memcmp(view.data, t.data.data(), t.data.size()), 0);
    }
    EXPECT_EQ(view.file, path);
  }
  // Values come back as the stored dtype rounds them.
  const std::vector<float> f32 = to_floats(file.tensors().at("b.f32"));
  EXPECT_EQ(f32, sample_values(7, -2.0f));
  const std::vector<float> bf16 = to_floats(file.tensors().at("a.bf16"));
  const std::vector<float> source = sample_values(15, 1.0f);
  for (size_t i = 0; i < source.size(); ++i) EXPECT_NEAR(bf16[i], source[i], std::abs(source[i]) / 128.0f);
  const std::vector<float> f16 = to_floats(file.tensors().at("c.f16"));
  const std::vector<float> source16 = sample_values(12, 0.25f);
  for (size_t i = 0; i < source16.size(); ++i) EXPECT_NEAR(f16[i], source16[i], std::abs(source16[i]) / 1024.0f);
  EXPECT_EQ(file.tensors().at("d.scalar").numel(), 1);
  EXPECT_EQ(file.tensors().at("e.empty").numel(), 0);
  EXPECT_EQ(file.tensors().at("c.f16").shape_string(), "[2, 2, 3]");
}

TEST(Safetensors, TensorDataStaysInTheMappedFile) {
  testing::TempDir dir;
  const auto path = dir.path() / "model.safetensors";
  write_safetensors(path, {make_tensor("x", DType::F32, {4}, 0.0f), make_tensor("y", DType::F32, {4}, 1.0f)});
  const SafetensorsFile file(path);
  // Both views point into one buffer, 16 bytes apart, as the header says: no per-tensor copies.
  EXPECT_EQ(file.tensors().at("y").data - file.tensors().at("x").data, 16);
}

TEST(Safetensors, WriterRejectsDataOfTheWrongSize) {
  testing::TempDir dir;
  TensorToWrite t = make_tensor("x", DType::F32, {4}, 0.0f);
  t.data.pop_back();
  expect_error([&] { write_safetensors(dir.path() / "m.safetensors", {t}); }, {"x", "15 bytes"});
}

class BadSafetensors : public ::testing::Test {
 protected:
  std::filesystem::path write(const std::string& bytes) {
    write_bytes(path_, bytes);
    return path_;
  }
  void expect_rejected(const std::string& bytes, std::initializer_list<std::string> fragments) {
    write(bytes);
    expect_error([&] { SafetensorsFile file(path_); }, fragments);
    expect_error([&] { SafetensorsFile file(path_); }, {path_.string()});
  }

  testing::TempDir dir_;
  std::filesystem::path path_ = dir_.path() / "model.safetensors";
};

TEST_F(BadSafetensors, MissingFile) {
  expect_error([&] { SafetensorsFile file(path_); }, {path_.string()});
}

TEST_F(BadSafetensors, FileShorterThanTheLengthField) {
  expect_rejected("", {"too short"});
  expect_rejected("abc", {"too short"});
}

TEST_F(BadSafetensors, HeaderLengthBeyondTheFile) {
  const std::string header = R"({"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})";
  expect_rejected(raw_safetensors(header, std::string(4, '\0'), header.size() + 5), {"header length"});
  expect_rejected(raw_safetensors(header, "", UINT64_MAX), {"header length"});
  expect_rejected(raw_safetensors(header, "", 1ull << 63), {"header length"});
}

TEST_F(BadSafetensors, HeaderThatIsNotValidJson) {
  expect_rejected(raw_safetensors(R"({"x":{"dtype":"F32",)", ""), {"not valid JSON"});
  expect_rejected(raw_safetensors(R"([1, 2, 3])", ""), {"not a JSON object"});
  expect_rejected(raw_safetensors(std::string("{\0}", 3), ""), {"JSON"});
}

TEST_F(BadSafetensors, TruncatedData) {
  testing::TempDir dir;
  const auto good = dir.path() / "good.safetensors";
  write_safetensors(good, {make_tensor("first", DType::F32, {8}, 0.0f), make_tensor("second", DType::F32, {8}, 0.0f)});
  std::string bytes = testing::read_bytes(good);
  bytes.resize(bytes.size() - 3);
  // The tensor stored last ("second") no longer fits.
  expect_rejected(bytes, {"second", "truncated"});
}

TEST_F(BadSafetensors, OffsetsThatLie) {
  const std::string data(16, '\0');
  // begin after end
  expect_rejected(raw_safetensors(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[8,4]}})", data),
                  {"tensor w", "begin 8 after end 4"});
  // out of range
  expect_rejected(raw_safetensors(R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[8,24]}})", data),
                  {"tensor w", "beyond the data section"});
  // wrong size for the shape
  expect_rejected(raw_safetensors(R"({"w":{"dtype":"BF16","shape":[2,2],"data_offsets":[0,16]}})", data),
                  {"tensor w", "[2, 2]", "needs 8"});
  // two tensors sharing bytes
  expect_rejected(raw_safetensors(R"({"u":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                                  R"("v":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                                  data),
                  {"u", "v", "overlap"});
  // offsets that are not non-negative integers
  expect_rejected(raw_safetensors(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[-4,0]}})", data),
                  {"tensor w", "data_offsets"});
  expect_rejected(raw_safetensors(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0]}})", data),
                  {"tensor w", "data_offsets"});
  expect_rejected(raw_safetensors(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":["0","4"]}})", data),
                  {"tensor w", "data_offsets"});
}

TEST_F(BadSafetensors, ShapesThatOverflowOrAreNotLists) {
  const std::string data(16, '\0');
  expect_rejected(raw_safetensors(R"({"w":{"dtype":"F32","shape":[4611686018427387904,4611686018427387904],)"
                                  R"("data_offsets":[0,16]}})",
                                  data),
                  {"tensor w", "overflow"});
  expect_rejected(raw_safetensors(R"({"w":{"dtype":"F32","shape":[4611686018427387904],"data_offsets":[0,16]}})",
                                  data),
                  {"tensor w", "overflow"});
  expect_rejected(raw_safetensors(R"({"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", data),
                  {"tensor w", "shape"});
  expect_rejected(raw_safetensors(R"({"w":{"dtype":"F32","shape":4,"data_offsets":[0,16]}})", data),
                  {"tensor w", "shape"});
  expect_rejected(raw_safetensors(R"({"w":[1,2]})", data), {"w"});
}

TEST_F(BadSafetensors, UnsupportedDtypeNamesTensorAndDtype) {
  const std::string data(16, '\0');
  expect_rejected(raw_safetensors(R"({"model.layers.0.q.weight":{"dtype":"I8","shape":[16],"data_offsets":[0,16]}})",
                                  data),
                  {"model.safetensors: tensor model.layers.0.q.weight has unsupported dtype I8"});
  expect_rejected(raw_safetensors(R"({"w":{"dtype":"F8_E5M2","shape":[16],"data_offsets":[0,16]}})", data),
                  {"F8_E5M2"});
  expect_rejected(raw_safetensors(R"({"w":{"shape":[16],"data_offsets":[0,16]}})", data), {"tensor w", "dtype"});
}

TEST_F(BadSafetensors, MetadataMustBeStrings) {
  expect_rejected(raw_safetensors(R"({"__metadata__":{"format":1}})", ""), {"__metadata__", "format"});
}

// Corrupting any header byte or the length field either still gives a consistent file or an Error,
// never a crash or another exception type.
TEST_F(BadSafetensors, CorruptedBytesNeverCrash) {
  testing::TempDir dir;
  const auto good = dir.path() / "good.safetensors";
  write_safetensors(good, {make_tensor("alpha", DType::BF16, {3, 4}, 0.0f), make_tensor("beta", DType::F32, {5}, 1.0f)},
                    {{"format", "pt"}});
  const std::string original = testing::read_bytes(good);
  uint64_t header_length = 0;
  std::memcpy(&header_length, original.data(), 8);
  const size_t corruptible = static_cast<size_t>(8 + header_length);
  uint64_t state = 12345;
  int rejected = 0;
  for (int trial = 0; trial < 400; ++trial) {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    std::string bytes = original;
    const size_t position = static_cast<size_t>(state >> 33) % corruptible;
    bytes[position] = static_cast<char>(state >> 17);
    write(bytes);
    try {
      const SafetensorsFile file(path_);
      size_t bytes_in_tensors = 0;
      for (const auto& [name, view] : file.tensors()) {
        EXPECT_EQ(static_cast<uint64_t>(view.numel()) * dtype_size(view.dtype), view.nbytes);
        bytes_in_tensors += view.nbytes;
      }
      EXPECT_LE(bytes_in_tensors, original.size() - corruptible);  // accepted tensors fit the data
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(path_.string()), std::string::npos) << e.what();
      ++rejected;
    }
  }
  EXPECT_GT(rejected, 0);
}

TEST(TensorStore, OpensASingleFileFolderAndChecksShapes) {
  testing::TempDir dir;
  write_safetensors(dir.path() / "model.safetensors",
                    {make_tensor("model.norm.weight", DType::BF16, {8}, 1.0f),
                     make_tensor("lm_head.weight", DType::F16, {4, 8}, 0.0f)});
  const TensorStore store = TensorStore::open_folder(dir.path());
  EXPECT_EQ(store.names(), (std::vector<std::string>{"lm_head.weight", "model.norm.weight"}));
  EXPECT_EQ(store.total_bytes(), 16u + 64u);
  EXPECT_EQ(store.get("lm_head.weight", {4, 8}).dtype, DType::F16);
  EXPECT_EQ(store.find("nope"), nullptr);
  expect_error([&] { store.get("model.embed_tokens.weight"); },
               {"missing tensor model.embed_tokens.weight", dir.path().string()});
  expect_error([&] { store.get("lm_head.weight", {8, 4}); }, {"lm_head.weight", "[4, 8]", "[8, 4]"});
}

TEST(TensorStore, FolderWithoutWeightsIsAnError) {
  testing::TempDir dir;
  expect_error([&] { TensorStore::open_folder(dir.path()); }, {"model.safetensors", dir.path().string()});
}

// Writes two shards and an index for three tensors.
void write_sharded(const std::filesystem::path& dir, const nlohmann::json& weight_map) {
  write_safetensors(dir / "model-00001-of-00002.safetensors",
                    {make_tensor("a", DType::BF16, {2, 3}, 0.0f), make_tensor("b", DType::F32, {5}, 1.0f)});
  write_safetensors(dir / "model-00002-of-00002.safetensors", {make_tensor("c", DType::F16, {4}, 2.0f)});
  testing::write_text(dir / "model.safetensors.index.json",
                      nlohmann::json{{"metadata", {{"total_size", 40}}}, {"weight_map", weight_map}}.dump());
}

const nlohmann::json kGoodWeightMap = {{"a", "model-00001-of-00002.safetensors"},
                                       {"b", "model-00001-of-00002.safetensors"},
                                       {"c", "model-00002-of-00002.safetensors"}};

TEST(TensorStore, OpensShardedFolders) {
  testing::TempDir dir;
  write_sharded(dir.path(), kGoodWeightMap);
  const TensorStore store = TensorStore::open_folder(dir.path());
  EXPECT_EQ(store.names(), (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_EQ(store.get("c", {4}).file, dir.path() / "model-00002-of-00002.safetensors");
  EXPECT_EQ(store.get("a", {2, 3}).file, dir.path() / "model-00001-of-00002.safetensors");
  EXPECT_EQ(to_floats(store.get("b")), sample_values(5, 1.0f));
  EXPECT_EQ(store.total_bytes(), 12u + 20u + 8u);
}

TEST(TensorStore, ShardListedButMissing) {
  testing::TempDir dir;
  nlohmann::json weight_map = kGoodWeightMap;
  weight_map["d"] = "model-00003-of-00003.safetensors";
  write_sharded(dir.path(), weight_map);
  expect_error([&] { TensorStore::open_folder(dir.path()); },
               {"model-00003-of-00003.safetensors", "does not exist", "model.safetensors.index.json"});
}

TEST(TensorStore, TensorNotInTheShardTheIndexNames) {
  testing::TempDir dir;
  nlohmann::json weight_map = kGoodWeightMap;
  weight_map["c"] = "model-00001-of-00002.safetensors";
  write_sharded(dir.path(), weight_map);
  expect_error([&] { TensorStore::open_folder(dir.path()); },
               {"tensor c", "model-00001-of-00002.safetensors", "does not hold it"});
}

TEST(TensorStore, MalformedIndex) {
  testing::TempDir dir;
  write_sharded(dir.path(), kGoodWeightMap);
  const auto index = dir.path() / "model.safetensors.index.json";
  testing::write_text(index, "{\"weight_map\": {");
  expect_error([&] { TensorStore::open_folder(dir.path()); }, {index.string(), "invalid JSON"});
  testing::write_text(index, "{\"metadata\": {}}");
  expect_error([&] { TensorStore::open_folder(dir.path()); }, {index.string(), "weight_map"});
  testing::write_text(index, R"({"weight_map": {"a": 3}})");
  expect_error([&] { TensorStore::open_folder(dir.path()); }, {index.string(), "a"});
  testing::write_text(index, R"({"weight_map": {"a": "../outside.safetensors"}})");
  expect_error([&] { TensorStore::open_folder(dir.path()); }, {index.string(), "outside"});
}

TEST(TensorStore, BadShardIsReportedWithItsName) {
  testing::TempDir dir;
  write_sharded(dir.path(), kGoodWeightMap);
  const auto shard = dir.path() / "model-00002-of-00002.safetensors";
  std::string bytes = testing::read_bytes(shard);
  bytes.resize(bytes.size() - 1);
  write_bytes(shard, bytes);
  expect_error([&] { TensorStore::open_folder(dir.path()); }, {shard.string(), "tensor c"});
}

}  // namespace
}  // namespace llama31
