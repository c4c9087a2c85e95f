// `kintsugi bench optimizer` end to end: the JSON line and the usage errors.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "test_support.hpp"

using kintsugi::test::run_kintsugi;

TEST_CASE("bench optimizer reports evaluations to target as JSON", "[search][cli]") {
  const auto r = run_kintsugi("bench optimizer --function sphere --dim 10 --runs 5 --json");
  REQUIRE(r.exit_code == 0);
  const auto last = r.out.substr(r.out.rfind('\n', r.out.size() - 2) + 1);
  const auto j = nlohmann::json::parse(last);
  CHECK(j["function"] == "sphere");
  CHECK(j["dim"] == 10);
  CHECK(j["runs"] == 5);
  CHECK(j["successes"] == 5);
  // An independent implementation of the tutorial's defaults needs about 1,650.
  CHECK(j["median_evals"].get<double>() > 1300);
  CHECK(j["median_evals"].get<double>() < 2000);
}

TEST_CASE("bench optimizer rejects unknown functions and methods", "[search][cli]") {
  const auto r = run_kintsugi("bench optimizer --function rastrigin");
  CHECK(r.exit_code == 2);
  CHECK(r.err.find("rastrigin") != std::string::npos);
  CHECK(run_kintsugi("bench optimizer --function sphere --method nelder-mead").exit_code == 2);
}
