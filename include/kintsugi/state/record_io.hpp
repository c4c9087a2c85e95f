#pragma once
// A Record (common/record.hpp) as one HDF5 group: one dataset per entry, named
// by the entry's key. reals -> 1-D float64, ints -> 1-D int64, strings -> one
// scalar variable-length UTF-8 string. The dataset's type says which map an
// entry belongs to, so a key may appear in only one of the three maps. Values
// round-trip bit for bit (NaN payloads, infinities, denormals, int64 extremes,
// empty arrays and empty strings included).
#include <string>

#include "kintsugi/common/record.hpp"
#include "kintsugi/state/hdf5.hpp"

namespace kintsugi {

// Creates group `name` under `parent` and writes `r` into it. RuntimeError for
// a key that HDF5 cannot name ("", ".", containing '/') or that appears in two
// maps, and for a string holding a NUL byte.
void write_record(const h5::Loc& parent, const std::string& name, const Record& r);

// Reads group `name` under `parent`. Any float dataset is read as reals, any
// integer dataset as ints (a scalar numeric dataset as one element), a string
// dataset holding one string as strings; anything else is an InputError.
Record read_record(const h5::Loc& parent, const std::string& name);

}  // namespace kintsugi
