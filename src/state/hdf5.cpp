// The HDF5 C API is used directly (Debian's libhdf5-dev, serial): the C++ API
// adds little, and the C API's hid_t handles wrap cleanly in one RAII type.
#include "kintsugi/state/hdf5.hpp"

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <mutex>

#include "kintsugi/common/error.hpp"
#include "kintsugi/common/input_file.hpp"

namespace kintsugi::h5 {

namespace fs = std::filesystem;

void silence_errors() {
  static std::once_flag once;
  std::call_once(once, [] { H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr); });
}

void Id::reset() {
  if (id_ >= 0 && closer_) closer_(id_);
  id_ = -1;
}

void Id::close(const std::string& what) {
  if (id_ < 0) return;
  const herr_t rc = closer_(id_);
  id_ = -1;
  if (rc < 0) throw_runtime("{}: HDF5 failed to close", what);
}

std::string Loc::child(const std::string& name) const {
  return path == "/" ? "/" + name : path + "/" + name;
}

namespace {

[[noreturn]] void write_fail(const Loc& loc, const std::string& name, const char* what) {
  throw_runtime("{}: {}: HDF5 failed to {}", loc.file, loc.child(name), what);
}

[[noreturn]] void read_fail(const Loc& loc, const std::string& name, const std::string& what) {
  throw_input("{}: {}: {}", loc.file, loc.child(name), what);
}

// Strings are written fixed-length (UTF-8, NUL-padded, as long as the longest
// one): they live in the dataset's own storage or the object header, never in
// HDF5's global heap, whose blocks carry no checksum (a corrupted global heap
// crashes libhdf5 1.10 inside H5HG_read).
Id fixed_string_type(size_t len) {
  Id t(H5Tcopy(H5T_C_S1), H5Tclose);
  if (t.get() < 0 || H5Tset_size(t.get(), std::max<size_t>(len, 1)) < 0 ||
      H5Tset_strpad(t.get(), H5T_STR_NULLPAD) < 0 || H5Tset_cset(t.get(), H5T_CSET_UTF8) < 0)
    throw_runtime("HDF5: cannot make a string type");
  return t;
}

Id simple_space(const std::vector<hsize_t>& dims) {
  hid_t s = dims.empty() ? H5Screate(H5S_SCALAR)
                         : H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr);
  if (s < 0) throw_runtime("HDF5: cannot make a dataspace");
  return Id(s, H5Sclose);
}

size_t element_count(const std::vector<hsize_t>& dims) {
  size_t n = 1;
  for (hsize_t d : dims) n *= static_cast<size_t>(d);
  return n;
}

// The size of the file holding `obj` (0 when HDF5 cannot tell).
uint64_t file_size_of(hid_t obj) {
  Id f(H5Iget_file_id(obj), H5Fclose);
  hsize_t size = 0;
  if (f.get() < 0 || H5Fget_filesize(f.get(), &size) < 0) return 0;
  return size;
}

// Elements of a dataset or attribute about to be read: every dimension and
// their product must fit in what the file can store (8 bytes a value at most
// is what states hold; data is never compressed), with room for a string's
// pointer. Anything larger is a corrupt or foreign shape.
size_t checked_count(const Loc& loc, const std::string& name, hid_t obj,
                     const std::vector<hsize_t>& dims) {
  const uint64_t limit = file_size_of(obj) + 4096;
  uint64_t n = 1;
  for (hsize_t d : dims) {
    if (d > limit || (d != 0 && n > limit / d))
      throw_input("{}: {}: shape claims more values than the file can hold (corrupt state?)",
                  loc.file, loc.child(name));
    n *= d;
  }
  if (n > limit)
    throw_input("{}: {}: shape claims more values than the file can hold (corrupt state?)",
                loc.file, loc.child(name));
  return static_cast<size_t>(n);
}

Id open_dataset(const Loc& loc, const std::string& name) {
  if (!exists(loc, name)) read_fail(loc, name, "missing");
  Id d(H5Dopen2(loc.id, name.c_str(), H5P_DEFAULT), H5Dclose);
  if (d.get() < 0) read_fail(loc, name, "is not a readable dataset");
  return d;
}

Id open_attr(const Loc& loc, const std::string& name) {
  if (!has_attr(loc, name))
    throw_input("{}: {}: attribute {} is missing", loc.file, loc.path, name);
  Id a(H5Aopen(loc.id, name.c_str(), H5P_DEFAULT), H5Aclose);
  if (a.get() < 0) throw_input("{}: {}: attribute {} is unreadable", loc.file, loc.path, name);
  return a;
}

std::vector<hsize_t> space_dims(hid_t space) {
  const int rank = H5Sget_simple_extent_ndims(space);
  if (rank < 0) return {};
  std::vector<hsize_t> dims(static_cast<size_t>(rank));
  if (rank > 0) H5Sget_simple_extent_dims(space, dims.data(), nullptr);
  return dims;
}

// Variable-length strings would be read from HDF5's global heap, which has
// no checksum: refused (kintsugi writes fixed-length strings).
bool is_variable_string(hid_t type) {
  return H5Tis_variable_str(type) != 0;
}

constexpr const char* kVariableStrings =
    "variable-length strings are not read (HDF5 keeps them in its global heap, which has no "
    "checksum); states hold fixed-length strings";

Kind kind_of(hid_t type) {
  switch (H5Tget_class(type)) {
    case H5T_FLOAT:
      return Kind::Float;
    case H5T_INTEGER:
      return Kind::Integer;
    case H5T_STRING:
      return Kind::String;
    default:
      return Kind::Other;
  }
}

// Reads `n` strings from a dataset (is_attr false) or an attribute of type `ftype`.
// Returns false when the HDF5 read fails.
bool read_string_elements(hid_t obj, bool is_attr, hid_t ftype, hid_t space, size_t n,
                          std::vector<std::string>& out) {
  out.clear();
  if (n == 0) return true;
  (void)space;
  // Variable-length strings are refused by the callers (is_variable_string).
  if (H5Tis_variable_str(ftype) != 0) return false;
  const size_t size = H5Tget_size(ftype);
  if (size == 0 || size > (size_t{1} << 30) || n > (size_t{1} << 34) / size) return false;
  Id mem(H5Tcopy(H5T_C_S1), H5Tclose);
  const H5T_str_t pad = H5Tget_strpad(ftype);
  // The file's character set too: HDF5 converts no string between ASCII and UTF-8.
  const H5T_cset_t cset = H5Tget_cset(ftype);
  if (mem.get() < 0 || cset < 0 || H5Tset_size(mem.get(), size) < 0 ||
      H5Tset_strpad(mem.get(), pad) < 0 || H5Tset_cset(mem.get(), cset) < 0)
    return false;
  std::vector<char> buf(n * size);
  const herr_t rc = is_attr ? H5Aread(obj, mem.get(), buf.data())
                            : H5Dread(obj, mem.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, buf.data());
  if (rc < 0) return false;
  for (size_t i = 0; i < n; ++i) {
    const char* p = buf.data() + i * size;
    size_t len = size;
    if (pad == H5T_STR_SPACEPAD) {
      while (len > 0 && p[len - 1] == ' ') --len;
    } else {
      len = static_cast<size_t>(std::find(p, p + size, '\0') - p);
    }
    out.emplace_back(p, len);
  }
  return true;
}

template <typename T>
void write_numeric(const Loc& loc, const std::string& name, const std::vector<T>& data,
                   const std::vector<hsize_t>& dims, hid_t file_type, hid_t mem_type) {
  KS_CHECK(element_count(dims) == data.size(),
           fmt::format("{}: {} values for a shape of {} elements", loc.child(name), data.size(),
                       element_count(dims)));
  Id space = simple_space(dims);
  Id d(H5Dcreate2(loc.id, name.c_str(), file_type, space.get(), H5P_DEFAULT, H5P_DEFAULT,
                  H5P_DEFAULT),
       H5Dclose);
  if (d.get() < 0) write_fail(loc, name, "create the dataset");
  if (!data.empty() && H5Dwrite(d.get(), mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data.data()) < 0)
    write_fail(loc, name, "write the dataset");
}

template <typename T>
std::vector<T> read_numeric(const Loc& loc, const std::string& name, int rank,
                            std::vector<hsize_t>* dims_out, Kind want, hid_t mem_type,
                            const char* what) {
  Id d = open_dataset(loc, name);
  Id type(H5Dget_type(d.get()), H5Tclose);
  Id space(H5Dget_space(d.get()), H5Sclose);
  if (type.get() < 0 || space.get() < 0) read_fail(loc, name, "unreadable");
  if (kind_of(type.get()) != want) read_fail(loc, name, fmt::format("expected {}", what));
  if (H5Sget_simple_extent_type(space.get()) == H5S_NULL)
    read_fail(loc, name, "has no dataspace (a null dataset)");
  const std::vector<hsize_t> dims = space_dims(space.get());
  if (rank >= 0 && static_cast<int>(dims.size()) != rank)
    read_fail(loc, name, fmt::format("expected {} dimension(s), got {}", rank, dims.size()));
  std::vector<T> data(checked_count(loc, name, d.get(), dims));
  if (!data.empty() && H5Dread(d.get(), mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data.data()) < 0)
    read_fail(loc, name, "cannot read the data (corrupt file?)");
  if (dims_out) *dims_out = dims;
  return data;
}

void check_no_nul(const Loc& loc, const std::string& name, const std::string& s) {
  if (s.find('\0') != std::string::npos)
    throw_runtime("{}: {}: a string with a NUL byte cannot be stored", loc.file, loc.child(name));
}

void write_attr_raw(const Loc& loc, const std::string& name, hid_t file_type, hid_t mem_type,
                    const void* value) {
  Id space = simple_space({});
  if (has_attr(loc, name)) H5Adelete(loc.id, name.c_str());
  Id a(H5Acreate2(loc.id, name.c_str(), file_type, space.get(), H5P_DEFAULT, H5P_DEFAULT),
       H5Aclose);
  if (a.get() < 0 || H5Awrite(a.get(), mem_type, value) < 0)
    throw_runtime("{}: {}: HDF5 failed to write attribute {}", loc.file, loc.path, name);
}

template <typename T>
T read_attr_numeric(const Loc& loc, const std::string& name, Kind want, hid_t mem_type) {
  Id a = open_attr(loc, name);
  Id type(H5Aget_type(a.get()), H5Tclose);
  Id space(H5Aget_space(a.get()), H5Sclose);
  if (type.get() < 0 || space.get() < 0 || kind_of(type.get()) != want ||
      H5Sget_simple_extent_npoints(space.get()) != 1)
    throw_input("{}: {}: attribute {} has the wrong type", loc.file, loc.path, name);
  T v{};
  if (H5Aread(a.get(), mem_type, &v) < 0)
    throw_input("{}: {}: attribute {} is unreadable", loc.file, loc.path, name);
  return v;
}

}  // namespace

Id create_memory_file(const std::string& name) {
  silence_errors();
  Id fapl(H5Pcreate(H5P_FILE_ACCESS), H5Pclose);
  // The 1.10 file format or later: superblock version 3 and every piece of
  // metadata checksummed, so a corrupted byte is an error and not a crash.
  // The core driver without a backing store keeps the file in memory: libhdf5
  // never writes to disk, so a full disk can never leave it holding a
  // half-flushed open file (which crashed it at exit); the caller writes the
  // image with checked writes.
  if (fapl.get() < 0 || H5Pset_fclose_degree(fapl.get(), H5F_CLOSE_STRONG) < 0 ||
      H5Pset_libver_bounds(fapl.get(), H5F_LIBVER_V110, H5F_LIBVER_LATEST) < 0 ||
      H5Pset_fapl_core(fapl.get(), size_t{1} << 20, false) < 0)
    throw_runtime("HDF5: cannot make file access properties");
  Id f(H5Fcreate(name.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, fapl.get()), H5Fclose);
  if (f.get() < 0) throw_runtime("{}: cannot create the HDF5 file in memory", name);
  return f;
}

namespace {

// Bob Jenkins' lookup3 hashlittle(), the checksum of HDF5's metadata
// (H5_checksum_lookup3 with an initial value of 0).
uint32_t lookup3(const unsigned char* k, size_t length) {
  auto rot = [](uint32_t x, int r) { return (x << r) | (x >> (32 - r)); };
  auto word = [](const unsigned char* p) {
    return uint32_t{p[0]} | uint32_t{p[1]} << 8 | uint32_t{p[2]} << 16 | uint32_t{p[3]} << 24;
  };
  uint32_t a = 0xdeadbeef + static_cast<uint32_t>(length), b = a, c = a;
  while (length > 12) {
    a += word(k);
    b += word(k + 4);
    c += word(k + 8);
    a -= c, a ^= rot(c, 4), c += b;
    b -= a, b ^= rot(a, 6), a += c;
    c -= b, c ^= rot(b, 8), b += a;
    a -= c, a ^= rot(c, 16), c += b;
    b -= a, b ^= rot(a, 19), a += c;
    c -= b, c ^= rot(b, 4), b += a;
    length -= 12;
    k += 12;
  }
  if (length == 0) return c;
  unsigned char tail[12] = {};
  std::memcpy(tail, k, length);
  a += word(tail);
  b += word(tail + 4);
  c += word(tail + 8);
  c ^= b, c -= rot(b, 14);
  a ^= c, a -= rot(c, 11);
  b ^= a, b -= rot(a, 25);
  c ^= b, c -= rot(b, 16);
  a ^= c, a -= rot(c, 4);
  b ^= a, b -= rot(a, 14);
  c ^= b, c -= rot(b, 24);
  return c;
}

}  // namespace

std::string file_image(hid_t file, const std::string& name) {
  if (H5Fflush(file, H5F_SCOPE_GLOBAL) < 0) throw_runtime("{}: HDF5 flush failed", name);
  const ssize_t n = H5Fget_file_image(file, nullptr, 0);
  if (n <= 0) throw_runtime("{}: HDF5 cannot give the file's image", name);
  std::string bytes(static_cast<size_t>(n), '\0');
  if (H5Fget_file_image(file, bytes.data(), bytes.size()) != n)
    throw_runtime("{}: HDF5 cannot give the file's image", name);
  // libhdf5 1.10 clears the "open for writing" flags in the image's superblock
  // (version 2 and later) but leaves the superblock's checksum as it was, so
  // the image would not open ("incorrect metadata checksum"). The checksum is
  // recomputed: the superblock is 12 bytes, then 4 addresses of the file's
  // offset size, then the checksum (HDF5 file format specification, "Version
  // 2 Superblock").
  auto* p = reinterpret_cast<unsigned char*>(bytes.data());
  if (bytes.size() >= 12 && p[8] >= 2) {
    const size_t covered = 12 + 4 * size_t{p[9]};
    if (covered + 4 > bytes.size()) throw_runtime("{}: HDF5 gave a truncated image", name);
    const uint32_t sum = lookup3(p, covered);
    for (int i = 0; i < 4; ++i) p[covered + i] = static_cast<unsigned char>(sum >> (8 * i));
  }
  return bytes;
}

int superblock_version(const fs::path& path) {
  InputFile in = InputFile::open(path, "state");
  static constexpr unsigned char kSignature[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};
  // The superblock is at 0, 512, 1024, 2048, ... (after a user block).
  for (uint64_t at = 0; at + 9 <= in.size(); at = at == 0 ? 512 : at * 2) {
    unsigned char b[9];
    if (::pread(in.fd(), b, 9, static_cast<off_t>(at)) != 9) return -1;
    if (std::memcmp(b, kSignature, 8) == 0) return b[8];
  }
  return -1;
}

Id open_file_read(const fs::path& path) {
  silence_errors();
  const int version = superblock_version(path);
  if (version < 0) throw_input("{}: not an HDF5 file", path.string());
  if (version < 2)
    throw_input(
        "{}: an HDF5 file without metadata checksums (superblock version {}); kintsugi reads "
        "states in the HDF5 1.10 format or later (convert with: h5repack --latest IN OUT)",
        path.string(), version);
  Id fapl(H5Pcreate(H5P_FILE_ACCESS), H5Pclose);
  if (fapl.get() < 0 || H5Pset_fclose_degree(fapl.get(), H5F_CLOSE_STRONG) < 0)
    throw_runtime("HDF5: cannot make file access properties");
  Id f(H5Fopen(path.c_str(), H5F_ACC_RDONLY, fapl.get()), H5Fclose);
  if (f.get() < 0)
    throw_input("{}: corrupt HDF5 file (cannot open it; a metadata checksum may not match)",
                path.string());
  H5G_info_t root;
  if (H5Gget_info(f.get(), &root) < 0)
    throw_input("{}: corrupt HDF5 file (the root group is unreadable)", path.string());
  if (root.storage_type == H5G_STORAGE_TYPE_DENSE)
    throw_input(
        "{}: the root group keeps its links in dense storage (a fractal heap without "
        "checksums); states keep them compact",
        path.string());
  return f;
}

Id create_group(const Loc& loc, const std::string& name) {
  // Links kept compact (in the checksummed object header) however many there
  // are: dense storage puts them in a fractal heap whose direct blocks carry
  // no checksum (a damaged one crashes libhdf5 1.10; the state fuzzer found it).
  Id gcpl(H5Pcreate(H5P_GROUP_CREATE), H5Pclose);
  if (gcpl.get() < 0 || H5Pset_link_phase_change(gcpl.get(), 65535, 65534) < 0)
    write_fail(loc, name, "set the group's link storage");
  Id g(H5Gcreate2(loc.id, name.c_str(), H5P_DEFAULT, gcpl.get(), H5P_DEFAULT), H5Gclose);
  if (g.get() < 0) write_fail(loc, name, "create the group");
  return g;
}

Id open_group(const Loc& loc, const std::string& name) {
  if (!exists(loc, name)) read_fail(loc, name, "missing");
  Id g(H5Gopen2(loc.id, name.c_str(), H5P_DEFAULT), H5Gclose);
  if (g.get() < 0) read_fail(loc, name, "is not a readable group");
  H5G_info_t info;
  if (H5Gget_info(g.get(), &info) < 0) read_fail(loc, name, "is not a readable group");
  if (info.storage_type == H5G_STORAGE_TYPE_DENSE)
    read_fail(loc, name,
              "keeps its links in dense storage (a fractal heap without checksums); states keep "
              "them compact");
  return g;
}

bool has_attr(const Loc& loc, const std::string& name) {
  return H5Aexists(loc.id, name.c_str()) > 0;
}

bool exists(const Loc& loc, const std::string& name) {
  if (name.empty() || name.find('/') != std::string::npos) return false;
  return H5Lexists(loc.id, name.c_str(), H5P_DEFAULT) > 0 &&
         H5Oexists_by_name(loc.id, name.c_str(), H5P_DEFAULT) > 0;
}

std::vector<std::string> member_names(const Loc& loc) {
  H5G_info_t info;
  if (H5Gget_info(loc.id, &info) < 0) throw_input("{}: {}: unreadable group", loc.file, loc.path);
  std::vector<std::string> names;
  for (hsize_t i = 0; i < info.nlinks; ++i) {
    const ssize_t len =
        H5Lget_name_by_idx(loc.id, ".", H5_INDEX_NAME, H5_ITER_INC, i, nullptr, 0, H5P_DEFAULT);
    if (len < 0) throw_input("{}: {}: unreadable group member", loc.file, loc.path);
    std::string name(static_cast<size_t>(len) + 1, '\0');
    H5Lget_name_by_idx(loc.id, ".", H5_INDEX_NAME, H5_ITER_INC, i, name.data(), name.size(),
                       H5P_DEFAULT);
    name.resize(static_cast<size_t>(len));
    names.push_back(std::move(name));
  }
  std::sort(names.begin(), names.end());
  return names;
}

void write_attr(const Loc& loc, const std::string& name, const std::string& value) {
  check_no_nul(loc, name, value);
  Id t = fixed_string_type(value.size());
  std::string buf = value;
  buf.resize(std::max<size_t>(value.size(), 1), '\0');
  write_attr_raw(loc, name, t.get(), t.get(), buf.data());
}

void write_attr(const Loc& loc, const std::string& name, int64_t value) {
  write_attr_raw(loc, name, H5T_STD_I64LE, H5T_NATIVE_INT64, &value);
}

void write_attr(const Loc& loc, const std::string& name, uint64_t value) {
  write_attr_raw(loc, name, H5T_STD_U64LE, H5T_NATIVE_UINT64, &value);
}

void write_attr(const Loc& loc, const std::string& name, double value) {
  write_attr_raw(loc, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &value);
}

std::string read_attr_string(const Loc& loc, const std::string& name) {
  Id a = open_attr(loc, name);
  Id type(H5Aget_type(a.get()), H5Tclose);
  Id space(H5Aget_space(a.get()), H5Sclose);
  std::vector<std::string> out;
  if (type.get() >= 0 && kind_of(type.get()) == Kind::String && is_variable_string(type.get()))
    throw_input("{}: {}: attribute {}: {}", loc.file, loc.path, name, kVariableStrings);
  if (type.get() < 0 || space.get() < 0 || kind_of(type.get()) != Kind::String ||
      H5Sget_simple_extent_npoints(space.get()) != 1 ||
      !read_string_elements(a.get(), true, type.get(), space.get(), 1, out))
    throw_input("{}: {}: attribute {} is not a readable string", loc.file, loc.path, name);
  return out[0];
}

int64_t read_attr_int(const Loc& loc, const std::string& name) {
  return read_attr_numeric<int64_t>(loc, name, Kind::Integer, H5T_NATIVE_INT64);
}

uint64_t read_attr_uint(const Loc& loc, const std::string& name) {
  return read_attr_numeric<uint64_t>(loc, name, Kind::Integer, H5T_NATIVE_UINT64);
}

double read_attr_double(const Loc& loc, const std::string& name) {
  return read_attr_numeric<double>(loc, name, Kind::Float, H5T_NATIVE_DOUBLE);
}

void write_f64(const Loc& loc, const std::string& name, const std::vector<double>& data,
               const std::vector<hsize_t>& dims) {
  write_numeric(loc, name, data, dims, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE);
}

void write_i64(const Loc& loc, const std::string& name, const std::vector<int64_t>& data,
               const std::vector<hsize_t>& dims) {
  write_numeric(loc, name, data, dims, H5T_STD_I64LE, H5T_NATIVE_INT64);
}

void write_strings(const Loc& loc, const std::string& name, const std::vector<std::string>& data) {
  size_t len = 1;
  for (const auto& s : data) {
    check_no_nul(loc, name, s);
    len = std::max(len, s.size());
  }
  std::vector<char> buf(data.size() * len, '\0');
  for (size_t i = 0; i < data.size(); ++i)
    std::memcpy(buf.data() + i * len, data[i].data(), data[i].size());
  Id t = fixed_string_type(len);
  Id space = simple_space({data.size()});
  Id d(
      H5Dcreate2(loc.id, name.c_str(), t.get(), space.get(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT),
      H5Dclose);
  if (d.get() < 0) write_fail(loc, name, "create the dataset");
  if (!data.empty() && H5Dwrite(d.get(), t.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, buf.data()) < 0)
    write_fail(loc, name, "write the dataset");
}

void write_string(const Loc& loc, const std::string& name, const std::string& value) {
  check_no_nul(loc, name, value);
  Id t = fixed_string_type(value.size());
  Id space = simple_space({});
  Id d(
      H5Dcreate2(loc.id, name.c_str(), t.get(), space.get(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT),
      H5Dclose);
  if (d.get() < 0) write_fail(loc, name, "create the dataset");
  std::string buf = value;
  buf.resize(std::max<size_t>(value.size(), 1), '\0');
  if (H5Dwrite(d.get(), t.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, buf.data()) < 0)
    write_fail(loc, name, "write the dataset");
}

Info dataset_info(const Loc& loc, const std::string& name) {
  Id d = open_dataset(loc, name);
  Id type(H5Dget_type(d.get()), H5Tclose);
  Id space(H5Dget_space(d.get()), H5Sclose);
  if (type.get() < 0 || space.get() < 0) read_fail(loc, name, "unreadable");
  return {kind_of(type.get()), space_dims(space.get())};
}

std::vector<double> read_f64(const Loc& loc, const std::string& name, int rank,
                             std::vector<hsize_t>* dims) {
  return read_numeric<double>(loc, name, rank, dims, Kind::Float, H5T_NATIVE_DOUBLE,
                              "floating-point numbers");
}

std::vector<int64_t> read_i64(const Loc& loc, const std::string& name, int rank,
                              std::vector<hsize_t>* dims) {
  return read_numeric<int64_t>(loc, name, rank, dims, Kind::Integer, H5T_NATIVE_INT64, "integers");
}

std::vector<std::string> read_strings(const Loc& loc, const std::string& name) {
  Id d = open_dataset(loc, name);
  Id type(H5Dget_type(d.get()), H5Tclose);
  Id space(H5Dget_space(d.get()), H5Sclose);
  if (type.get() < 0 || space.get() < 0) read_fail(loc, name, "unreadable");
  if (kind_of(type.get()) != Kind::String) read_fail(loc, name, "expected strings");
  if (is_variable_string(type.get())) read_fail(loc, name, kVariableStrings);
  if (H5Sget_simple_extent_type(space.get()) == H5S_NULL)
    read_fail(loc, name, "has no dataspace (a null dataset)");
  const std::vector<hsize_t> dims = space_dims(space.get());
  if (dims.size() > 1) read_fail(loc, name, "expected a 1-D list of strings");
  std::vector<std::string> out;
  if (!read_string_elements(d.get(), false, type.get(), space.get(),
                            checked_count(loc, name, d.get(), dims), out))
    read_fail(loc, name, "cannot read the strings (corrupt file?)");
  return out;
}

std::string read_string(const Loc& loc, const std::string& name) {
  const Info info = dataset_info(loc, name);
  if (info.kind != Kind::String || !info.dims.empty()) read_fail(loc, name, "expected one string");
  return read_strings(loc, name)[0];
}

}  // namespace kintsugi::h5
