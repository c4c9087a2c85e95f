#include "kintsugi/dist/mpi.hpp"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <thread>

namespace kintsugi {

std::string mpi_error_string(int code) {
  char buf[MPI_MAX_ERROR_STRING];
  int len = 0;
  if (MPI_Error_string(code, buf, &len) != MPI_SUCCESS) return fmt::format("MPI error {}", code);
  return std::string(buf, static_cast<size_t>(len));
}

bool started_by_launcher() {
  // Open MPI's mpirun, PMIx (mpirun, srun --mpi=pmix) and PMI-1/2 (srun,
  // MPICH's hydra) each leave one of these in every rank's environment.
  for (const char* v : {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "PMI_SIZE"})
    if (std::getenv(v)) return true;
  return false;
}

MpiSession::MpiSession(int* argc, char*** argv) {
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (initialized) return;
  if (!started_by_launcher()) {
    // A singleton talks to no other process, yet with Open MPI's defaults the
    // UCX messaging layer probes every transport of the host first (0.2 s of
    // a 0.4 s start). The ob1 layer starts at once. Only a default: a value
    // the user set wins, and other MPIs ignore the name. (Open MPI's isolated
    // singletons, which skip the helper daemon too, failed in orte_init now
    // and then when two started at once: not used.)
    setenv("OMPI_MCA_pml", "ob1", 0);
  }
  int provided = 0;
  MPI_CHECK(MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided));
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
}

MpiSession::~MpiSession() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized) MPI_Finalize();
}

bool mpi_started() {
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  return initialized && !finalized;
}

int world_rank() {
  if (!mpi_started()) return 0;
  int r = 0;
  MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &r));
  return r;
}

int world_size() {
  if (!mpi_started()) return 1;
  int s = 1;
  MPI_CHECK(MPI_Comm_size(MPI_COMM_WORLD, &s));
  return s;
}

int comm_rank(MPI_Comm comm) {
  if (!mpi_started()) return 0;
  int r = 0;
  MPI_CHECK(MPI_Comm_rank(comm, &r));
  return r;
}

int comm_size(MPI_Comm comm) {
  if (!mpi_started()) return 1;
  int s = 1;
  MPI_CHECK(MPI_Comm_size(comm, &s));
  return s;
}

std::string broadcast_string(const std::string& text, MPI_Comm comm, int root) {
  if (!mpi_started()) return text;
  uint64_t size = text.size();
  MPI_CHECK(MPI_Bcast(&size, 1, MPI_UINT64_T, root, comm));
  std::string out = text;
  out.resize(size);
  // MPI counts are ints: long texts travel in pieces.
  constexpr uint64_t kPiece = uint64_t{1} << 30;
  for (uint64_t at = 0; at < size; at += kPiece)
    MPI_CHECK(MPI_Bcast(out.data() + at, static_cast<int>(std::min(kPiece, size - at)), MPI_CHAR,
                        root, comm));
  return out;
}

bool broadcast_flag(bool flag, MPI_Comm comm, int root) {
  if (!mpi_started()) return flag;
  int v = flag ? 1 : 0;
  MPI_CHECK(MPI_Bcast(&v, 1, MPI_INT, root, comm));
  return v != 0;
}

std::vector<std::string> gather_strings(const std::string& mine, MPI_Comm comm, int root) {
  if (!mpi_started()) return {mine};
  const int size = comm_size(comm);
  const bool at_root = comm_rank(comm) == root;
  if (mine.size() > static_cast<size_t>(std::numeric_limits<int>::max()))
    throw_runtime("gather_strings: {} bytes from one rank, at most 2 GiB", mine.size());
  const int len = static_cast<int>(mine.size());
  std::vector<int> lens(static_cast<size_t>(size)), displs(static_cast<size_t>(size));
  MPI_CHECK(MPI_Gather(&len, 1, MPI_INT, lens.data(), 1, MPI_INT, root, comm));
  int64_t total = 0;
  for (int i = 0; i < size; ++i) {
    displs[static_cast<size_t>(i)] = static_cast<int>(total);
    total += lens[static_cast<size_t>(i)];
  }
  if (total > std::numeric_limits<int>::max())
    throw_runtime("gather_strings: {} bytes in all, at most 2 GiB", total);
  std::string all(at_root ? static_cast<size_t>(total) : 0, '\0');
  MPI_CHECK(MPI_Gatherv(mine.data(), len, MPI_CHAR, all.data(), lens.data(), displs.data(),
                        MPI_CHAR, root, comm));
  std::vector<std::string> out;
  if (at_root)
    for (int i = 0; i < size; ++i)
      out.push_back(all.substr(static_cast<size_t>(displs[static_cast<size_t>(i)]),
                               static_cast<size_t>(lens[static_cast<size_t>(i)])));
  return out;
}

namespace dist_detail {

void share_outcome(Outcome outcome, const std::string& message, MPI_Comm comm, int root) {
  int code = static_cast<int>(outcome);
  if (mpi_started()) MPI_CHECK(MPI_Bcast(&code, 1, MPI_INT, root, comm));
  if (code == static_cast<int>(Outcome::Ok)) return;
  const std::string text = broadcast_string(message, comm, root);
  if (code == static_cast<int>(Outcome::Input)) throw InputError(text);
  throw RuntimeError(text);
}

void share_first_failure(Outcome outcome, const std::string& message, MPI_Comm comm) {
  const int size = comm_size(comm);
  int first = outcome == Outcome::Ok ? size : comm_rank(comm);
  allreduce_in_place(std::span<int>(&first, 1), MPI_MIN, comm);
  if (first == size) return;
  share_outcome(outcome, message, comm, first);
}

}  // namespace dist_detail

void sleeping_barrier(MPI_Comm comm) {
  if (!mpi_started()) return;
  MPI_Request request = MPI_REQUEST_NULL;
  MPI_CHECK(MPI_Ibarrier(comm, &request));
  int done = 0;
  while (true) {
    MPI_CHECK(MPI_Test(&request, &done, MPI_STATUS_IGNORE));
    if (done) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

void exscan_sum(std::span<const uint64_t> mine, std::span<uint64_t> before, MPI_Comm comm) {
  KS_CHECK(mine.size() == before.size(), "exscan_sum: one output per input");
  std::fill(before.begin(), before.end(), uint64_t{0});
  if (!mpi_started() || mine.empty()) return;
  MPI_CHECK(MPI_Exscan(mine.data(), before.data(), static_cast<int>(mine.size()), MPI_UINT64_T,
                       MPI_SUM, comm));
  // MPI leaves rank 0's buffer undefined.
  if (comm_rank(comm) == 0) std::fill(before.begin(), before.end(), uint64_t{0});
}

namespace {
void sum_i128(void* in, void* inout, int* len, MPI_Datatype*) {
  for (int k = 0; k < *len; ++k) {
    int128_t a, b;
    std::memcpy(&a, static_cast<const char*>(in) + 16 * k, 16);
    std::memcpy(&b, static_cast<const char*>(inout) + 16 * k, 16);
    b += a;
    std::memcpy(static_cast<char*>(inout) + 16 * k, &b, 16);
  }
}
}  // namespace

void allreduce_sum_i128(std::span<int128_t> data, MPI_Comm comm) {
  if (!mpi_started() || data.empty()) return;
  if (data.size() > static_cast<size_t>(std::numeric_limits<int>::max()))
    throw_runtime("allreduce_sum_i128: {} values, at most 2^31 - 1", data.size());
  MPI_Datatype type;
  MPI_CHECK(MPI_Type_contiguous(16, MPI_BYTE, &type));
  MPI_CHECK(MPI_Type_commit(&type));
  MPI_Op op;
  MPI_CHECK(MPI_Op_create(&sum_i128, 1, &op));
  const int rc =
      MPI_Allreduce(MPI_IN_PLACE, data.data(), static_cast<int>(data.size()), type, op, comm);
  MPI_Op_free(&op);
  MPI_Type_free(&type);
  MPI_CHECK(rc);
}

std::vector<std::byte> allgather_bytes(std::span<const std::byte> mine, MPI_Comm comm) {
  if (!mpi_started()) return {mine.begin(), mine.end()};
  if (mine.size() > static_cast<size_t>(std::numeric_limits<int>::max()))
    throw_runtime("allgather_bytes: {} bytes from one rank, at most 2 GiB", mine.size());
  const auto size = static_cast<size_t>(comm_size(comm));
  std::vector<std::byte> all(mine.size() * size);
  const int n = static_cast<int>(mine.size());
  MPI_CHECK(MPI_Allgather(mine.data(), n, MPI_BYTE, all.data(), n, MPI_BYTE, comm));
  return all;
}

}  // namespace kintsugi
