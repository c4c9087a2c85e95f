// The safetensors header parser is linear in the number of tensors (issue #15,
// class 6): the parse-with-callback it used rescanned the top-level object
// after every tensor (40,000 tensors: 20 s on an idle machine; 100,000 would
// take about 2 min). Linear, 100,000 take about 2 s on a loaded 2-core machine.
#include <catch2/catch.hpp>
#include <chrono>
#include <string>

#include "kintsugi/common/error.hpp"
#include "kintsugi/io/safetensors.hpp"
#include "test_support.hpp"

using namespace kintsugi;

namespace {

std::string header_of(size_t n, uint64_t* data_size, const std::string& dup = "") {
  std::string h = "{\"__metadata__\":{\"format\":\"pt\"}";
  uint64_t off = 0;
  for (size_t i = 0; i < n; ++i) {
    h += ",\"t" + std::to_string(i) + "\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[" +
         std::to_string(off) + "," + std::to_string(off + 8) + "]}";
    off += 8;
  }
  h += dup + "}";
  *data_size = off;
  return h;
}

}  // namespace

TEST_CASE("safetensors header: parsing is linear in the number of tensors", "[io]") {
#if defined(KINTSUGI_TEST_ASAN)
  // The sanitizer build checks memory safety, which 10,000 tensors show as
  // well as 100,000 (50 s there, at -O0); the release build checks the time.
  constexpr size_t kTensors = 10000;
#else
  constexpr size_t kTensors = 100000;
#endif
  uint64_t size = 0;
  const std::string h = header_of(kTensors, &size);
  const auto t0 = std::chrono::steady_clock::now();
  const ParsedHeader p = parse_safetensors_header(h, size, "big");
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  CHECK(p.tensors.size() == kTensors);
  CHECK(p.tensors.back().end == size);
  // Linear: seconds; quadratic: minutes (a bound that a loaded machine never
  // reaches by noise, and a quadratic parser always does).
  INFO(s << " s for " << kTensors << " tensors");
  CHECK(s < 60);
  // Duplicates are still found, at the end of a long header too.
  const std::string d = header_of(50000, &size, ",\"t7\":{}");
  CHECK_THROWS_WITH(parse_safetensors_header(d, size, "dup"),
                    Catch::Contains("tensor \"t7\": duplicate tensor name in header"));
}
