#pragma once
// Thin RAII layer over the HDF5 C API (serial; only rank 0 ever writes). Every
// call is checked: a failure while writing is a RuntimeError naming the file and
// the object, a failure while reading (a missing object, a wrong type or shape,
// a file that is not HDF5) is an InputError naming them. HDF5's own error-stack
// printing is switched off the first time any of this is used.
#include <hdf5.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

namespace kintsugi::h5 {

// Switches off HDF5's automatic error printing (idempotent).
void silence_errors();

// An owned HDF5 identifier, closed with the matching H5?close.
class Id {
 public:
  using Closer = herr_t (*)(hid_t);
  Id() = default;
  Id(hid_t id, Closer closer) : id_(id), closer_(closer) {}
  ~Id() { reset(); }
  Id(Id&& o) noexcept : id_(std::exchange(o.id_, -1)), closer_(o.closer_) {}
  Id& operator=(Id&& o) noexcept {
    if (this != &o) {
      reset();
      id_ = std::exchange(o.id_, -1);
      closer_ = o.closer_;
    }
    return *this;
  }
  Id(const Id&) = delete;
  Id& operator=(const Id&) = delete;
  hid_t get() const { return id_; }
  void reset();
  // Closes now and reports a failure (a file close flushes; that can fail).
  void close(const std::string& what);

 private:
  hid_t id_ = -1;
  Closer closer_ = nullptr;
};

// A location (file or group) together with the file name and object path used
// in error messages.
struct Loc {
  hid_t id;
  std::string file;  // for messages
  std::string path;  // "/", "/meta", ...
  std::string child(const std::string& name) const;
};

// Files. States are written in the HDF5 1.10 format or later (superblock
// version 3, every piece of metadata checksummed); open_file_read refuses
// anything that is not a regular file (before reading it) and any HDF5 file
// whose superblock is older than version 2 (no checksums: a corrupted byte
// could crash libhdf5 instead of failing a checksum).
int superblock_version(const std::filesystem::path& path);  // -1: no HDF5 signature
// A new file held in memory (`name` labels it in messages); file_image() gives
// its bytes, which the caller writes to disk with checked writes.
Id create_memory_file(const std::string& name);
std::string file_image(hid_t file, const std::string& name);
Id open_file_read(
    const std::filesystem::path& path);  // InputError when absent, not HDF5 or corrupt

// Groups.
Id create_group(const Loc& loc, const std::string& name);
Id open_group(const Loc& loc, const std::string& name);  // InputError when missing
bool exists(const Loc& loc, const std::string& name);
bool has_attr(const Loc& loc, const std::string& name);  // an attribute of the object at loc
std::vector<std::string> member_names(const Loc& loc);   // sorted by name

// Attributes (scalars).
void write_attr(const Loc& loc, const std::string& name, const std::string& value);
void write_attr(const Loc& loc, const std::string& name, int64_t value);
void write_attr(const Loc& loc, const std::string& name, uint64_t value);
void write_attr(const Loc& loc, const std::string& name, double value);
std::string read_attr_string(const Loc& loc, const std::string& name);
int64_t read_attr_int(const Loc& loc, const std::string& name);
uint64_t read_attr_uint(const Loc& loc, const std::string& name);
double read_attr_double(const Loc& loc, const std::string& name);

// Datasets. `dims` of rank 0 is a scalar; any dimension may be 0.
void write_f64(const Loc& loc, const std::string& name, const std::vector<double>& data,
               const std::vector<hsize_t>& dims);
void write_i64(const Loc& loc, const std::string& name, const std::vector<int64_t>& data,
               const std::vector<hsize_t>& dims);
// Variable-length UTF-8 strings: a 1-D dataset of strings, or one scalar string.
// Strings with an embedded NUL byte cannot be stored (RuntimeError).
void write_strings(const Loc& loc, const std::string& name, const std::vector<std::string>& data);
void write_string(const Loc& loc, const std::string& name, const std::string& value);

enum class Kind { Float, Integer, String, Other };
struct Info {
  Kind kind;
  std::vector<hsize_t> dims;
};
Info dataset_info(const Loc& loc, const std::string& name);

// Reads converting to double / int64 (any float / integer type). `rank` >= 0
// requires that rank; `dims` receives the shape.
std::vector<double> read_f64(const Loc& loc, const std::string& name, int rank,
                             std::vector<hsize_t>* dims = nullptr);
std::vector<int64_t> read_i64(const Loc& loc, const std::string& name, int rank,
                              std::vector<hsize_t>* dims = nullptr);
// Variable- or fixed-length strings (1-D, or a scalar read as one element).
std::vector<std::string> read_strings(const Loc& loc, const std::string& name);
std::string read_string(const Loc& loc, const std::string& name);  // a scalar string dataset

}  // namespace kintsugi::h5
