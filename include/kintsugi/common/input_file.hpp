#pragma once
// The one way kintsugi opens a file it reads (checkpoints, shards, indexes,
// config.json, tokenizer files, task files, job and recipe files, states).
// Anything that is not a regular file where a file is expected (a FIFO, a
// device, a socket, a folder, /dev/zero behind a symlink) is refused with an
// InputError naming the file before a single byte is read: the file is opened
// with O_NONBLOCK (so a FIFO with no writer cannot block the open) and checked
// with fstat on that same descriptor (no window between check and use).
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

namespace kintsugi {

// Size caps for files read whole into memory (InputError above them).
inline constexpr uint64_t kMaxTextFileBytes = uint64_t{64} << 20;   // job files, recipes
inline constexpr uint64_t kMaxJsonFileBytes = uint64_t{512} << 20;  // config/tokenizer/index JSON
inline constexpr uint64_t kMaxDataFileBytes = uint64_t{4} << 30;    // task files, JSONL inputs

// An open regular file (read-only, blocking reads), closed on destruction.
class InputFile {
 public:
  // `what` names the role in messages ("task file", "config.json", ...).
  static InputFile open(const std::filesystem::path& path, std::string_view what);
  ~InputFile();
  InputFile(InputFile&& o) noexcept;
  InputFile& operator=(InputFile&&) = delete;
  InputFile(const InputFile&) = delete;
  InputFile& operator=(const InputFile&) = delete;

  int fd() const { return fd_; }
  uint64_t size() const { return size_; }  // at open time
  const std::filesystem::path& path() const { return path_; }
  // Reads the whole file (at most its size at open time); InputError when it is
  // larger than max_bytes, RuntimeError when a read fails.
  std::string read_all(uint64_t max_bytes);

 private:
  InputFile(int fd, uint64_t size, std::filesystem::path path)
      : fd_(fd), size_(size), path_(std::move(path)) {}
  int fd_ = -1;
  uint64_t size_ = 0;
  std::filesystem::path path_;
};

// open(path, what).read_all(max_bytes).
std::string read_input_file(const std::filesystem::path& path, std::string_view what,
                            uint64_t max_bytes);

// For libraries that open by name themselves (HDF5): the same refusal, by
// opening and checking the file here first. Returns the size.
uint64_t check_input_file(const std::filesystem::path& path, std::string_view what);

// The problem a JSON library exception describes, without the library's
// "[json.exception.type_error.302] " prefix (for one-line user messages).
std::string json_problem(const char* what);

}  // namespace kintsugi
