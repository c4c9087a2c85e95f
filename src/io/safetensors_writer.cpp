// Writing safetensors files: a pre-sized temporary file filled in order
// (streaming) or at planned offsets (positional, possibly from several
// processes), fsynced and renamed into place.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "kintsugi/common/error.hpp"
#include "kintsugi/io/atomic_file.hpp"
#include "kintsugi/io/safetensors.hpp"

namespace kintsugi {

namespace {

void pwrite_all(int fd, const void* data, uint64_t n, uint64_t offset,
                const std::filesystem::path& p) {
  const auto* c = static_cast<const char*>(data);
  while (n > 0) {
    const size_t chunk = static_cast<size_t>(std::min<uint64_t>(n, 1u << 30));
    const ssize_t w = ::pwrite(fd, c, chunk, static_cast<off_t>(offset));
    if (w < 0) {
      if (errno == EINTR) continue;
      throw_runtime("{}: write failed: {}", p.string(), std::strerror(errno));
    }
    c += w;
    n -= static_cast<uint64_t>(w);
    offset += static_cast<uint64_t>(w);
  }
}

// The place of bytes [offset, offset+n) of tensor `name` in the file.
uint64_t place(const SafetensorsLayout& layout, std::string_view name, uint64_t offset, uint64_t n,
               const std::filesystem::path& p) {
  const TensorInfo* t = layout.find(name);
  if (!t) throw_runtime("{}: tensor {} is not in this file's layout", p.string(), name);
  KS_CHECK(offset <= t->nbytes() && n <= t->nbytes() - offset,
           fmt::format("write of {} bytes at {} outside tensor {} ({} bytes)", n, offset, name,
                       t->nbytes()));
  return layout.data_offset + t->begin + offset;
}

}  // namespace

std::filesystem::path safetensors_temp_path(const std::filesystem::path& path) {
  return std::filesystem::path(path.string() + ".tmp");
}

SafetensorsWriter::SafetensorsWriter(std::filesystem::path path, SafetensorsLayout layout,
                                     SafetensorsFill fill)
    : path_(std::move(path)),
      tmp_(safetensors_temp_path(path_)),
      layout_(std::move(layout)),
      positional_(fill == SafetensorsFill::Positional) {
  KS_CHECK(layout_.data_offset == 8 + layout_.header.size(), "inconsistent layout");
  fd_ = ::open(tmp_.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd_ < 0) throw_runtime("{}: cannot create: {}", tmp_.string(), std::strerror(errno));
  if (::ftruncate(fd_, static_cast<off_t>(layout_.file_size)) != 0) {
    const int e = errno;
    ::close(fd_);
    fd_ = -1;
    ::unlink(tmp_.c_str());
    throw_runtime("{}: cannot size to {} bytes: {}", tmp_.string(), layout_.file_size,
                  std::strerror(e));
  }
  unsigned char len[8];
  uint64_t n = layout_.header.size();
  for (auto& b : len) {
    b = static_cast<unsigned char>(n & 0xff);
    n >>= 8;
  }
  pwrite_all(fd_, len, 8, 0, tmp_);
  pwrite_all(fd_, layout_.header.data(), layout_.header.size(), 8, tmp_);
}

SafetensorsWriter::~SafetensorsWriter() {
  if (fd_ >= 0) ::close(fd_);
  if (!committed_) ::unlink(tmp_.c_str());
}

void SafetensorsWriter::write(std::string_view name, std::span<const std::byte> data) {
  KS_CHECK(!positional_, "streaming write after positional writes");
  KS_CHECK(next_ < layout_.tensors.size(),
           fmt::format("{}: more tensors than planned", path_.string()));
  const TensorInfo& t = layout_.tensors[next_];
  KS_CHECK(t.name == name,
           fmt::format("{}: expected tensor {} next, got {}", path_.string(), t.name, name));
  KS_CHECK(data.size() == t.nbytes(),
           fmt::format("tensor {}: {} bytes given, {} planned", t.name, data.size(), t.nbytes()));
  pwrite_all(fd_, data.data(), data.size(), layout_.data_offset + t.begin, tmp_);
  ++next_;
}

void SafetensorsWriter::pwrite(std::string_view name, uint64_t offset,
                               std::span<const std::byte> data) {
  KS_CHECK(positional_, "positional write to a streaming writer");
  pwrite_all(fd_, data.data(), data.size(), place(layout_, name, offset, data.size(), tmp_), tmp_);
}

void SafetensorsWriter::commit() {
  KS_CHECK(!committed_ && fd_ >= 0, "commit twice");
  KS_CHECK(
      positional_ || next_ == layout_.tensors.size(),
      fmt::format("{}: {} of {} tensors written", path_.string(), next_, layout_.tensors.size()));
  if (::fsync(fd_) != 0) throw_runtime("{}: fsync failed: {}", tmp_.string(), std::strerror(errno));
  const int rc = ::close(fd_);
  fd_ = -1;
  if (rc != 0) throw_runtime("{}: close failed: {}", tmp_.string(), std::strerror(errno));
  publish(tmp_, path_);
  committed_ = true;
}

SafetensorsRangeWriter::SafetensorsRangeWriter(const std::filesystem::path& path,
                                               SafetensorsLayout layout)
    : tmp_(safetensors_temp_path(path)), layout_(std::move(layout)) {
  fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd_ < 0)
    throw_runtime("{}: cannot open for writing: {}", tmp_.string(), std::strerror(errno));
  struct stat st {};
  if (::fstat(fd_, &st) != 0 || static_cast<uint64_t>(st.st_size) != layout_.file_size) {
    ::close(fd_);
    fd_ = -1;
    throw_runtime("{}: not the pre-sized file of {} bytes a SafetensorsWriter creates",
                  tmp_.string(), layout_.file_size);
  }
}

SafetensorsRangeWriter::~SafetensorsRangeWriter() {
  if (fd_ >= 0) ::close(fd_);
}

void SafetensorsRangeWriter::pwrite(std::string_view name, uint64_t offset,
                                    std::span<const std::byte> data) {
  KS_CHECK(fd_ >= 0, "write after close");
  pwrite_all(fd_, data.data(), data.size(), place(layout_, name, offset, data.size(), tmp_), tmp_);
}

void SafetensorsRangeWriter::close() {
  if (fd_ < 0) return;
  const int s = ::fsync(fd_);
  const int c = ::close(fd_);
  fd_ = -1;
  if (s != 0 || c != 0)
    throw_runtime("{}: fsync/close failed: {}", tmp_.string(), std::strerror(errno));
}

void write_safetensors(const std::filesystem::path& path, const std::vector<TensorData>& tensors,
                       const Metadata& metadata) {
  std::vector<TensorSpec> specs;
  specs.reserve(tensors.size());
  for (const auto& t : tensors) specs.push_back(t.spec);
  SafetensorsWriter w(path, plan_safetensors(specs, metadata));
  for (size_t i = 0; i < tensors.size(); ++i) {
    const auto& t = tensors[i];
    const uint64_t need = w.layout().tensors[i].nbytes();
    if (t.bytes.size() != need)
      throw_input("tensor {}: {} bytes given but its dtype {} and shape need {}", t.spec.name,
                  t.bytes.size(), dtype_name(t.spec.dtype), need);
    w.write(t.spec.name, t.bytes);
  }
  w.commit();
}

}  // namespace kintsugi
