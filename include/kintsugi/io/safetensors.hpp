#pragma once
// safetensors files: a validating, zero-copy (mmap) reader and a writer that
// lays out the whole file first, so a file can be written by one streaming
// writer or filled in parallel at precomputed offsets.
//
// Format: u64 little-endian header length N, N bytes of UTF-8 JSON
// {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {str: str}},
// then the data buffer; offsets are relative to the buffer's start.
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "kintsugi/io/dtype.hpp"

namespace kintsugi {

inline constexpr uint64_t kMaxHeaderBytes = 100'000'000;

struct TensorInfo {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  uint64_t begin = 0;  // byte offsets relative to the data buffer
  uint64_t end = 0;

  uint64_t numel() const;
  uint64_t nbytes() const { return end - begin; }
};

// A shape as every message and listing prints it: "[2, 3]" ("[]" for a scalar).
std::string shape_text(const std::vector<int64_t>& shape);

using Metadata = std::map<std::string, std::string>;

class SafetensorsFile {
 public:
  // Opens, maps and validates `path` as strictly as the reference
  // implementation. Throws InputError naming the file (and tensor) on any flaw.
  static std::shared_ptr<const SafetensorsFile> open(const std::filesystem::path& path);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::filesystem::path& path() const { return path_; }
  // Tensors in the order of their data offsets.
  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  // nullptr when absent.
  const TensorInfo* find(std::string_view name) const;
  const Metadata& metadata() const { return metadata_; }
  uint64_t data_offset() const { return data_offset_; }  // 8 + header length
  uint64_t file_size() const { return file_size_; }

  // Zero-copy view of a tensor's bytes (or of bytes [b, b+n) of it).
  std::span<const std::byte> bytes(const TensorInfo& t) const;
  std::span<const std::byte> bytes(const TensorInfo& t, uint64_t b, uint64_t n) const;
  // Elements [first, first+count) of a floating tensor converted to fp32.
  void read_f32(const TensorInfo& t, uint64_t first, uint64_t count, float* out) const;

  // Drops the page-table entries of these files' mappings, on all threads.
  // Unmapping a file that was read whole costs about as much as mapping it
  // (8 files of 64 MiB: 24-34 ms on one thread, a quarter of a CLI merge of
  // them) and munmap holds the address space's write lock, so the
  // destructors cannot share it out; madvise(MADV_DONTNEED) can (14-17 ms on
  // two threads), after which munmap is nearly free. The views stay valid: a
  // later read faults its page in again from the page cache.
  static void drop_pages(std::span<const SafetensorsFile* const> files);

 private:
  SafetensorsFile() = default;
  std::filesystem::path path_;
  std::vector<TensorInfo> tensors_;
  std::map<std::string, size_t, std::less<>> index_;
  Metadata metadata_;
  uint64_t data_offset_ = 0;
  uint64_t file_size_ = 0;
  const std::byte* map_ = nullptr;
  size_t map_size_ = 0;
};

// Parses and validates a header (the JSON bytes) against a data buffer of
// `data_size` bytes. `origin` names the file in errors. Exposed for the fuzzer.
struct ParsedHeader {
  std::vector<TensorInfo> tensors;  // sorted by begin offset
  Metadata metadata;
};
ParsedHeader parse_safetensors_header(std::string_view json, uint64_t data_size,
                                      const std::string& origin);

// What a file will hold, before any byte is written.
struct TensorSpec {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
};

// The complete layout of one file: its header bytes (JSON padded with spaces
// to a multiple of 8) and each tensor's place. Tensors keep the given order.
struct SafetensorsLayout {
  std::string header;               // JSON, padded
  std::vector<TensorInfo> tensors;  // offsets relative to the data buffer
  uint64_t data_offset = 0;         // 8 + header.size()
  uint64_t file_size = 0;
  const TensorInfo* find(std::string_view name) const;
};
SafetensorsLayout plan_safetensors(const std::vector<TensorSpec>& specs, const Metadata& metadata);

// The temporary name a writer fills before renaming: "<path>.tmp". Every MPI
// rank can compute it.
std::filesystem::path safetensors_temp_path(const std::filesystem::path& path);

// Writes one file to safetensors_temp_path(path), renames it to `path` on
// commit(); an unfinished writer removes its temporary file. The constructor
// creates the temporary file at its full size and writes the header, then:
//  - streaming: write(name, bytes) for each tensor in layout order;
//  - positional: pwrite() at any offset, here or from other processes that
//    open the temporary file with a SafetensorsRangeWriter (after this
//    constructor returned, e.g. behind a barrier); commit() after all of them
//    closed.
// How a SafetensorsWriter's file is filled: Streaming, every tensor whole and
// in layout order through write() (commit() checks that all were written);
// Positional, byte ranges through pwrite() from this and other processes
// (SafetensorsRangeWriter), where this process may write none of them.
enum class SafetensorsFill { Streaming, Positional };

class SafetensorsWriter {
 public:
  SafetensorsWriter(std::filesystem::path path, SafetensorsLayout layout,
                    SafetensorsFill fill = SafetensorsFill::Streaming);
  ~SafetensorsWriter();
  SafetensorsWriter(const SafetensorsWriter&) = delete;
  SafetensorsWriter& operator=(const SafetensorsWriter&) = delete;

  const SafetensorsLayout& layout() const { return layout_; }
  const std::filesystem::path& temp_path() const { return tmp_; }
  // Streaming: the next tensor in layout order, whole.
  void write(std::string_view name, std::span<const std::byte> data);
  // Positional: bytes at `offset` within tensor `name`'s data.
  void pwrite(std::string_view name, uint64_t offset, std::span<const std::byte> data);
  // fsync, close, rename over `path`.
  void commit();

 private:
  std::filesystem::path path_, tmp_;
  SafetensorsLayout layout_;
  int fd_ = -1;
  size_t next_ = 0;
  bool positional_ = false;
  bool committed_ = false;
};

// Another process's handle on the temporary file a SafetensorsWriter created:
// writes byte ranges of tensors at their planned places; close() fsyncs.
class SafetensorsRangeWriter {
 public:
  SafetensorsRangeWriter(const std::filesystem::path& path, SafetensorsLayout layout);
  ~SafetensorsRangeWriter();
  SafetensorsRangeWriter(const SafetensorsRangeWriter&) = delete;
  SafetensorsRangeWriter& operator=(const SafetensorsRangeWriter&) = delete;
  // Bytes at `offset` within tensor `name`'s data.
  void pwrite(std::string_view name, uint64_t offset, std::span<const std::byte> data);
  void close();  // fsync and close (also done, errors ignored, by the destructor)

 private:
  std::filesystem::path tmp_;
  SafetensorsLayout layout_;
  int fd_ = -1;
};

// Writes a whole file from in-memory tensors (tests, small outputs).
struct TensorData {
  TensorSpec spec;
  std::vector<std::byte> bytes;
};
void write_safetensors(const std::filesystem::path& path, const std::vector<TensorData>& tensors,
                       const Metadata& metadata = {});

// Sharded output: tensors assigned in order to files of at most
// `max_shard_bytes` of data each (a larger tensor gets a file of its own),
// named model-0000k-of-0000n.safetensors; one shard is named model.safetensors.
struct ShardedPlan {
  std::vector<std::string> file_names;
  std::vector<SafetensorsLayout> layouts;
  std::map<std::string, size_t> shard_of;  // tensor name -> index into files
  uint64_t total_size = 0;                 // sum of tensor bytes
  // model.safetensors.index.json text ({"metadata": {"total_size"}, "weight_map"}),
  // empty when there is a single file.
  std::string index_json() const;
};
ShardedPlan plan_sharded(const std::vector<TensorSpec>& specs, const Metadata& metadata,
                         uint64_t max_shard_bytes);

// Parses sizes such as "5GB", "500MB", "2GiB", "1000" (bytes).
uint64_t parse_byte_size(std::string_view text);

}  // namespace kintsugi
