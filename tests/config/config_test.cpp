// Element types, staging look-ups and the up-front config validation.
#include <cstdint>
#include <functional>
#include <string>

#include <gtest/gtest.h>

#include "chipmesh/errors.h"
#include "chipmesh/types.h"

namespace chipmesh {
namespace {

TEST(DataTypes, SizesAndNamesRoundTrip) {
  const std::pair<DataType, size_t> expected[] = {
      {DataType::FLOAT32, 4}, {DataType::FLOAT16, 2}, {DataType::BFLOAT16, 2}, {DataType::INT8, 1},
      {DataType::INT16, 2},   {DataType::INT32, 4},   {DataType::INT64, 8},    {DataType::UINT8, 1},
      {DataType::UINT16, 2},  {DataType::UINT32, 4},  {DataType::UINT64, 8},  {DataType::FLOAT64, 8}};
  for (auto [dt, size] : expected) {
    EXPECT_EQ(dtype_size(dt), size) << dtype_name(dt);
    EXPECT_EQ(dtype_from_name(dtype_name(dt)), dt);
  }
  EXPECT_THROW(dtype_size(static_cast<DataType>(12)), ConfigError);
  try {
    dtype_from_name("float128");
    ADD_FAILURE() << "float128 accepted";
  } catch (const ConfigError& e) {  // names the bad value and what would do
    EXPECT_NE(std::string(e.what()).find("unknown dtype 'float128'; expected one of float32, float16, bfloat16"),
              std::string::npos)
        << e.what();
  }
}

ChipBootstrapConfig with_comm() {
  ChipBootstrapConfig cfg;
  cfg.comm = ChipCommBootstrapConfig{0, 2, "/tmp/rootinfo", 4096};
  return cfg;
}

std::string error_of(const ChipBootstrapConfig& cfg) {
  try {
    validate_bootstrap_config(cfg);
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "<valid>";
}

TEST(ConfigValidation, StagingLookups) {
  ChipBootstrapConfig cfg;
  cfg.host_inputs.push_back({"x", "/chipmesh_in_x", 64});
  cfg.host_outputs.push_back({"y", "/chipmesh_out_y", 32});
  EXPECT_EQ(cfg.input_staging("x").shm_name, "/chipmesh_in_x");
  EXPECT_EQ(cfg.output_staging("y").size, 32u);
  EXPECT_THROW(cfg.input_staging("y"), ConfigError);
  EXPECT_THROW(cfg.output_staging("x"), ConfigError);
}

TEST(ConfigValidation, AcceptsAWellFormedConfig) {
  auto cfg = with_comm();
  cfg.buffers.push_back({"x", DataType::FLOAT32, 16, 64, "window", true, false});
  cfg.buffers.push_back({"y", DataType::INT8, 3, 3, "window", false, true});
  cfg.host_inputs.push_back({"x", "/chipmesh_in_x", 64});
  cfg.host_outputs.push_back({"y", "/chipmesh_out_y", 3});
  EXPECT_EQ(error_of(cfg), "<valid>");
  EXPECT_EQ(error_of(ChipBootstrapConfig{}), "<valid>");  // comm-less, no buffers
}

TEST(ConfigValidation, RejectsWithMessagesNamingTheValues) {
  struct Case {
    std::string expect;
    std::function<void(ChipBootstrapConfig&)> mutate;
  };
  const Case cases[] = {
      {"placement 'bogus'", [](auto& c) { c.buffers.push_back({"x", DataType::INT8, 1, 1, "bogus"}); }},
      {"nbytes=63", [](auto& c) { c.buffers.push_back({"x", DataType::FLOAT32, 16, 63}); }},
      {"'x' is used twice", [](auto& c) {
         c.buffers.push_back({"x", DataType::INT8, 1, 1});
         c.buffers.push_back({"x", DataType::INT8, 1, 1});
       }},
      {"no host input staging for buffer 'x'",
       [](auto& c) { c.buffers.push_back({"x", DataType::INT8, 4, 4, "window", true}); }},
      {"no host output staging for buffer 'x'",
       [](auto& c) { c.buffers.push_back({"x", DataType::INT8, 4, 4, "window", false, true}); }},
      {"of size 32", [](auto& c) {
         c.buffers.push_back({"x", DataType::INT8, 64, 64, "window", true});
         c.host_inputs.push_back({"x", "/chipmesh_x", 32});
       }},
      {"no comm", [](auto& c) {
         c.comm.reset();
         c.buffers.push_back({"x", DataType::INT8, 1, 1});
       }},
      {"comm.rank=2", [](auto& c) { c.comm->rank = 2; }},
      {"comm.nranks=65", [](auto& c) { c.comm->nranks = 65; }},
      {"rootinfo_path is empty", [](auto& c) { c.comm->rootinfo_path.clear(); }},
      {"window_size must be > 0", [](auto& c) { c.comm->window_size = 0; }},
      {"overflows size_t", [](auto& c) { c.buffers.push_back({"x", DataType::INT64, SIZE_MAX / 4, 0}); }},
      {"listed twice", [](auto& c) {
         c.host_inputs.push_back({"x", "/chipmesh_a", 1});
         c.host_inputs.push_back({"x", "/chipmesh_b", 1});
       }},
      {"not of the form", [](auto& c) { c.host_inputs.push_back({"x", "noslash", 1}); }},
      {"unknown DataType", [](auto& c) { c.buffers.push_back({"x", static_cast<DataType>(42), 1, 1}); }},
  };
  for (const auto& k : cases) {
    auto cfg = with_comm();
    k.mutate(cfg);
    std::string msg = error_of(cfg);
    EXPECT_NE(msg.find(k.expect), std::string::npos) << "expected '" << k.expect << "', got: " << msg;
  }
}

}  // namespace
}  // namespace chipmesh
