// A Record through HDF5: exact round trip, and files written by h5py (an
// independent writer) read back; what we write checked bit for bit by h5py.
#include <catch2/catch.hpp>
#include <cmath>
#include <fstream>
#include <limits>

#include "kintsugi/common/error.hpp"
#include "kintsugi/state/hdf5.hpp"
#include "kintsugi/state/record_io.hpp"
#include "test_state_support.hpp"
#include "test_support.hpp"

using namespace kintsugi;
using kintsugi::test::same_bits;

namespace {

Record awkward_record() {
  using L = std::numeric_limits<double>;
  Record r;
  r.reals["special"] = {
      0.0,
      -0.0,
      L::infinity(),
      -L::infinity(),
      L::quiet_NaN(),
      std::bit_cast<double>(uint64_t{0x7ff8000000000123}),  // NaN with payload
      std::bit_cast<double>(uint64_t{0xfff0000000000001}),  // negative signalling NaN
      L::denorm_min(),
      -L::denorm_min(),
      std::bit_cast<double>(uint64_t{0x000fffffffffffff}),  // largest denormal
      L::min(),
      L::max(),
      L::lowest(),
      L::epsilon(),
      0.1,
      1.0 / 3.0};
  r.reals["empty"] = {};
  r.reals["one"] = {42.5};
  std::vector<double> big(10000);
  for (size_t i = 0; i < big.size(); ++i) big[i] = std::sin(static_cast<double>(i)) * 1e-300;
  r.reals["big"] = big;
  r.ints["extremes"] = {std::numeric_limits<int64_t>::min(), -1, 0, 1,
                        std::numeric_limits<int64_t>::max()};
  r.ints["none"] = {};
  r.strings["blank"] = "";
  r.strings["text"] = "kind: cmaes\nnote: ünïcödé ✓\t\"quoted\"";
  r.strings["long"] = std::string(100000, 'x');
  // Keys that are awkward but legal HDF5 names.
  r.reals["with space.and.dots"] = {1, 2};
  r.ints["C[0,1]"] = {7};
  return r;
}

Record round_trip(const Record& r, const std::filesystem::path& file) {
  {
    h5::Id f = h5::create_memory_file(file.string());
    write_record({f.get(), file.string(), "/"}, "rec", r);
    test::write_file(file, h5::file_image(f.get(), file.string()));
  }
  h5::Id f = h5::open_file_read(file);
  return read_record({f.get(), file.string(), "/"}, "rec");
}

}  // namespace

TEST_CASE("state: a Record round-trips bit for bit", "[state]") {
  test::TempDir tmp;
  const Record r = awkward_record();
  const Record back = round_trip(r, tmp / "r.h5");
  CHECK(same_bits(back, r));
  CHECK(back.reals.at("empty").empty());
  CHECK(back.ints.at("none").empty());
  CHECK(back.strings.at("blank").empty());
  CHECK(back.reals.count("empty") == 1);
  CHECK(back.ints.count("empty") == 0);  // "empty" exists only among the reals here

  // An empty record is an empty group.
  const Record e = round_trip(Record{}, tmp / "e.h5");
  CHECK(e == Record{});
}

TEST_CASE("state: Record keys that HDF5 cannot hold are refused", "[state]") {
  test::TempDir tmp;
  Record r;
  r.reals["a/b"] = {1};
  CHECK_THROWS_AS(round_trip(r, tmp / "a.h5"), RuntimeError);
  Record twice;
  twice.reals["x"] = {1};
  twice.ints["x"] = {1};
  CHECK_THROWS_WITH(round_trip(twice, tmp / "b.h5"), Catch::Contains("\"x\" is used by two kinds"));
  Record nul;
  nul.strings["s"] = std::string("a\0b", 3);
  CHECK_THROWS_WITH(round_trip(nul, tmp / "c.h5"), Catch::Contains("NUL byte"));
}

TEST_CASE("state: h5py reads a written Record bit for bit", "[state]") {
  test::require_h5py();
  test::TempDir tmp;
  const auto file = tmp / "r.h5";
  {
    h5::Id f = h5::create_memory_file(file.string());
    write_record({f.get(), file.string(), "/"}, "rec", awkward_record());
    test::write_file(file, h5::file_image(f.get(), file.string()));
  }
  // The expected bit patterns are written out by hand (IEEE-754 binary64).
  const std::string script = R"PY(
import sys, h5py, numpy as np
f = h5py.File(sys.argv[1], "r")
g = f["rec"]
bits = g["special"][()].view(np.uint64).tolist()
want = [0x0, 0x8000000000000000, 0x7ff0000000000000, 0xfff0000000000000, 0x7ff8000000000000,
        0x7ff8000000000123, 0xfff0000000000001, 0x1, 0x8000000000000001, 0x000fffffffffffff,
        0x0010000000000000, 0x7fefffffffffffff, 0xffefffffffffffff, 0x3cb0000000000000,
        0x3fb999999999999a, 0x3fd5555555555555]
assert bits == want, [hex(b) for b in bits]
assert g["special"].dtype == np.float64
assert g["empty"].shape == (0,) and g["empty"].dtype == np.float64
assert g["none"].shape == (0,) and g["none"].dtype == np.int64
assert g["extremes"][()].tolist() == [-2**63, -1, 0, 1, 2**63 - 1]
assert g["one"][()].tolist() == [42.5]
assert g["big"].shape == (10000,)
assert g["text"][()].decode("utf-8") == 'kind: cmaes\nnote: \u00fcn\u00efc\u00f6d\u00e9 \u2713\t"quoted"'
assert g["long"][()] == b"x" * 100000
assert g["blank"][()] == b""
assert g["C[0,1]"][()].tolist() == [7]
assert sorted(g.keys()) == sorted(["special", "empty", "one", "big", "extremes", "none",
    "text", "long", "blank", "with space.and.dots", "C[0,1]"]), sorted(g.keys())
print("OK")
)PY";
  std::ofstream(tmp / "check.py") << script;
  const auto r =
      test::run_shell("/usr/bin/python3 " + (tmp / "check.py").string() + " " + file.string());
  INFO(r.output);
  CHECK(r.status == 0);
  CHECK(r.output == "OK\n");
}

TEST_CASE("state: a Record group written by h5py reads as expected", "[state]") {
  test::require_h5py();
  test::TempDir tmp;
  const auto file = tmp / "py.h5";
  const std::string script = R"PY(
import sys, h5py, numpy as np
with h5py.File(sys.argv[1], "w", libver="latest") as f:
    g = f.create_group("rec")
    g["mean"] = np.array([1.5, -2.25, np.inf], dtype=np.float64)
    g["f32"] = np.array([0.5, 3.0], dtype=np.float32)
    g["scalar"] = 2.0
    g["count"] = np.array([-(2**63), 2**63 - 1], dtype=np.int64)
    g["small"] = np.array([3, 4], dtype=np.int16)
    g["empty"] = np.zeros((0,), dtype=np.float64)
    g["name"] = np.bytes_("caf\u00e9".encode())
    g["fixed"] = np.bytes_(b"abc")
    f.create_group("bad")["matrix"] = np.zeros((2, 2))
    f.create_group("bad2")["list"] = np.array([b"a", b"b"])
    f.create_group("bad3")["vlen"] = "variable-length"
)PY";
  std::ofstream(tmp / "write.py") << script;
  const auto w =
      test::run_shell("/usr/bin/python3 " + (tmp / "write.py").string() + " " + file.string());
  INFO(w.output);
  REQUIRE(w.status == 0);

  h5::Id f = h5::open_file_read(file);
  const h5::Loc root{f.get(), file.string(), "/"};
  const Record r = read_record(root, "rec");
  CHECK(r.reals.at("mean") ==
        std::vector<double>{1.5, -2.25, std::numeric_limits<double>::infinity()});
  CHECK(r.reals.at("f32") == std::vector<double>{0.5, 3.0});
  CHECK(r.reals.at("scalar") == std::vector<double>{2.0});
  CHECK(r.reals.at("empty").empty());
  CHECK(r.ints.at("count") == std::vector<int64_t>{std::numeric_limits<int64_t>::min(),
                                                   std::numeric_limits<int64_t>::max()});
  CHECK(r.ints.at("small") == std::vector<int64_t>{3, 4});
  CHECK(r.strings.at("name") == "caf\xc3\xa9");
  CHECK(r.strings.at("fixed") == "abc");
  CHECK(r.reals.size() == 4);
  CHECK(r.ints.size() == 2);
  CHECK(r.strings.size() == 2);
  CHECK_THROWS_WITH(read_record(root, "bad"),
                    Catch::Contains("/bad/matrix: a record entry must have at most one dimension"));
  CHECK_THROWS_WITH(
      read_record(root, "bad2"),
      Catch::Contains("/bad2/list: a record string entry must hold one string, not 2"));
  CHECK_THROWS_WITH(read_record(root, "bad3"),
                    Catch::Contains("/bad3/vlen: variable-length strings are not read"));
  CHECK_THROWS_WITH(read_record(root, "missing"), Catch::Contains("/missing: missing"));
}
