// Opening input files: regular files only, refused before any read.
#include "kintsugi/common/input_file.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "kintsugi/common/error.hpp"

namespace kintsugi {

namespace fs = std::filesystem;

namespace {

const char* kind_of(mode_t m) {
  if (S_ISDIR(m)) return "a folder";
  if (S_ISFIFO(m)) return "a FIFO";
  if (S_ISCHR(m)) return "a character device";
  if (S_ISBLK(m)) return "a block device";
  if (S_ISSOCK(m)) return "a socket";
  return "not a regular file";
}

}  // namespace

InputFile InputFile::open(const fs::path& path, std::string_view what) {
  const std::string p = path.string();
  // O_NONBLOCK: opening a FIFO for reading must not wait for a writer;
  // O_NOCTTY: a terminal device never becomes the controlling terminal.
  const int fd = ::open(p.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
  if (fd < 0) {
    const int err = errno;
    if (err == ENOENT) throw_input("{}: cannot open the {}: no such file", p, what);
    throw_input("{}: cannot open the {}: {}", p, what, std::strerror(err));
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    throw_input("{}: cannot stat the {}: {}", p, what, std::strerror(err));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    throw_input("{}: the {} is {}, not a regular file; refused before reading", p, what,
                kind_of(st.st_mode));
  }
  const int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0 || ::fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) < 0) {
    const int err = errno;
    ::close(fd);
    throw_runtime("{}: cannot make the {} blocking: {}", p, what, std::strerror(err));
  }
  return InputFile(fd, static_cast<uint64_t>(st.st_size), path);
}

InputFile::~InputFile() {
  if (fd_ >= 0) ::close(fd_);
}

InputFile::InputFile(InputFile&& o) noexcept
    : fd_(std::exchange(o.fd_, -1)), size_(o.size_), path_(std::move(o.path_)) {}

std::string InputFile::read_all(uint64_t max_bytes) {
  if (size_ > max_bytes)
    throw_input("{}: {} bytes, more than the limit of {} bytes for this kind of file",
                path_.string(), size_, max_bytes);
  std::string out(static_cast<size_t>(size_), '\0');
  size_t done = 0;
  while (done < out.size()) {
    const ssize_t n = ::pread(fd_, out.data() + done, out.size() - done, static_cast<off_t>(done));
    if (n < 0) {
      if (errno == EINTR) continue;
      throw_runtime("{}: read failed: {}", path_.string(), std::strerror(errno));
    }
    if (n == 0) break;  // shrank since open: what is there
    done += static_cast<size_t>(n);
  }
  out.resize(done);
  return out;
}

std::string read_input_file(const fs::path& path, std::string_view what, uint64_t max_bytes) {
  return InputFile::open(path, what).read_all(max_bytes);
}

uint64_t check_input_file(const fs::path& path, std::string_view what) {
  return InputFile::open(path, what).size();
}

std::string json_problem(const char* what) {
  std::string s(what);
  if (s.rfind("[json.exception.", 0) == 0) {
    const size_t end = s.find("] ");
    if (end != std::string::npos) s.erase(0, end + 2);
  }
  return s;
}

}  // namespace kintsugi
