#pragma once
// A flat record of named arrays and strings that round-trips exactly. The
// optimizer's state and other resumable state save themselves as a Record; the
// HDF5 state module stores each entry as one dataset, so nothing is lost to text
// formatting and the file stays readable with h5py.
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace kintsugi {

struct Record {
  std::map<std::string, std::vector<double>> reals;
  std::map<std::string, std::vector<int64_t>> ints;
  std::map<std::string, std::string> strings;

  bool operator==(const Record&) const = default;
};

}  // namespace kintsugi
