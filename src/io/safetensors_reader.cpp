// The safetensors reader: maps the whole file read-only and hands out
// zero-copy views. Every byte offset is validated by parse_safetensors_header
// before any view exists, so no access can leave the mapping.
#include <fcntl.h>
#include <omp.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>
#include <vector>

#include "kintsugi/common/error.hpp"
#include "kintsugi/common/input_file.hpp"
#include "kintsugi/io/safetensors.hpp"

namespace kintsugi {

std::shared_ptr<const SafetensorsFile> SafetensorsFile::open(const std::filesystem::path& path) {
  const std::string p = path.string();
  const InputFile f = InputFile::open(path, "safetensors file");
  const uint64_t size = f.size();
  if (size < 8)
    throw_input("{}: file is {} bytes, too short to hold the 8-byte header length", p, size);

  unsigned char len_bytes[8];
  if (::pread(f.fd(), len_bytes, 8, 0) != 8)
    throw_input("{}: cannot read the header length: {}", p, std::strerror(errno));
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | len_bytes[i];
  if (n > kMaxHeaderBytes)
    throw_input("{}: header length {} exceeds the limit of {} bytes", p, n, kMaxHeaderBytes);
  if (n > size - 8)
    throw_input("{}: header length {} runs past the end of the file ({} bytes, so at most {})", p,
                n, size, size - 8);

  std::shared_ptr<SafetensorsFile> file(new SafetensorsFile());
  file->path_ = path;
  file->file_size_ = size;
  file->data_offset_ = 8 + n;
  void* m = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, f.fd(), 0);
  if (m == MAP_FAILED) throw_runtime("{}: cannot map {} bytes: {}", p, size, std::strerror(errno));
  file->map_ = static_cast<const std::byte*>(m);
  file->map_size_ = size;

  const std::string_view header(reinterpret_cast<const char*>(file->map_) + 8, n);
  ParsedHeader h = parse_safetensors_header(header, size - 8 - n, p);
  file->tensors_ = std::move(h.tensors);
  file->metadata_ = std::move(h.metadata);
  for (size_t i = 0; i < file->tensors_.size(); ++i)
    file->index_.emplace(file->tensors_[i].name, i);
  return file;
}

void SafetensorsFile::drop_pages(std::span<const SafetensorsFile* const> files) {
  constexpr size_t kPiece = size_t{8} << 20;  // page-aligned, as every mapping is
  std::vector<std::pair<std::byte*, size_t>> pieces;
  for (const SafetensorsFile* f : files)
    for (size_t o = 0; f->map_ && o < f->map_size_; o += kPiece)
      pieces.emplace_back(const_cast<std::byte*>(f->map_) + o, std::min(kPiece, f->map_size_ - o));
  const auto n = static_cast<long long>(pieces.size());
  // Only a cost is at stake: a piece that fails stays mapped until munmap.
#pragma omp parallel for schedule(dynamic) if (n > 1 && !omp_in_parallel())
  for (long long i = 0; i < n; ++i)
    (void)::madvise(pieces[static_cast<size_t>(i)].first, pieces[static_cast<size_t>(i)].second,
                    MADV_DONTNEED);
}

SafetensorsFile::~SafetensorsFile() {
  if (map_) ::munmap(const_cast<std::byte*>(map_), map_size_);
}

const TensorInfo* SafetensorsFile::find(std::string_view name) const {
  const auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

std::span<const std::byte> SafetensorsFile::bytes(const TensorInfo& t) const {
  return bytes(t, 0, t.nbytes());
}

std::span<const std::byte> SafetensorsFile::bytes(const TensorInfo& t, uint64_t b,
                                                  uint64_t n) const {
  KS_CHECK(b <= t.nbytes() && n <= t.nbytes() - b, "byte range outside the tensor");
  KS_CHECK(data_offset_ + t.end <= map_size_, "tensor outside the mapped file");
  if (n == 0) return {};
  return {map_ + data_offset_ + t.begin + b, n};
}

void SafetensorsFile::read_f32(const TensorInfo& t, uint64_t first, uint64_t count,
                               float* out) const {
  if (!dtype_is_float(t.dtype))
    throw_input("{}: tensor {}: dtype {} is not a floating type; it cannot be read as F32",
                path_.string(), t.name, dtype_name(t.dtype));
  const uint64_t es = dtype_size(t.dtype);
  KS_CHECK(first <= t.numel() && count <= t.numel() - first, "element range outside the tensor");
  if (count == 0) return;
  const auto view = bytes(t, first * es, count * es);
  convert_to_f32(t.dtype, view.data(), out, count);
}

}  // namespace kintsugi
