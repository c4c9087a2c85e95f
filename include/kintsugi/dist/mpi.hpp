#pragma once
// Thin MPI helpers: a check macro that names file and line, the world's rank
// and size, and the collectives the modules above use. A process starts MPI
// once in main() (cli/main.cpp), when its verb needs it or a launcher started
// it; a plain `kintsugi …` without mpirun is then a world of one (an MPI
// singleton). A verb that never starts MPI when run alone (`merge`) runs on
// these helpers alone: without MPI every communicator is a world of one, whose
// rank is 0 and whose collectives return the caller's own data.
#include <mpi.h>

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "kintsugi/common/error.hpp"

namespace kintsugi {

std::string mpi_error_string(int code);

// RAII for MPI_Init_thread / MPI_Finalize. Errors are returned, not fatal, so
// that MPI_CHECK can turn them into exceptions with context.
class MpiSession {
 public:
  MpiSession(int* argc, char*** argv);
  ~MpiSession();
  MpiSession(const MpiSession&) = delete;
  MpiSession& operator=(const MpiSession&) = delete;
};

// True when a launcher (mpirun, srun with PMI/PMIx) started this process as
// one rank of a job; false for a process started alone (an MPI singleton).
bool started_by_launcher();

// Whether MPI is initialized and not yet finalized.
bool mpi_started();

// Rank and size of MPI_COMM_WORLD, or of `comm`; 0 and 1 while MPI is not
// running (verbs that need no MPI never start it, see cli/main.cpp).
int world_rank();
int world_size();
int comm_rank(MPI_Comm comm);
int comm_size(MPI_Comm comm);

// The collectives on text and flags that the modules above need (commands,
// scores as JSON, folder names, error messages); no module writes its own.
// `text` as rank `root` has it, on every rank of `comm` (any length).
std::string broadcast_string(const std::string& text, MPI_Comm comm, int root = 0);
// `flag` as rank `root` has it, on every rank of `comm`.
bool broadcast_flag(bool flag, MPI_Comm comm, int root = 0);
// Every rank's `mine` in rank order on rank `root`; empty on the others.
std::vector<std::string> gather_strings(const std::string& mine, MPI_Comm comm, int root = 0);

// Runs `f` on rank `root` of `comm` and makes its outcome everyone's: when it
// throws, every rank throws the same error (InputError stays an InputError,
// anything else becomes a RuntimeError) with the same message.
template <typename F>
void run_on_root(MPI_Comm comm, F&& f, int root = 0);

// Runs `f` on every rank of `comm`; when it throws on any rank, every rank
// throws the error of the lowest such rank (kinds as in run_on_root). A
// collective step that may fail on one rank alone (a full disk) uses it, so
// that no rank is left waiting for the one that failed.
template <typename F>
void run_everywhere(MPI_Comm comm, F&& f);

// A barrier that sleeps between polls instead of spinning: ranks that wait
// for hours (on an external scorer) leave their cores to it.
void sleeping_barrier(MPI_Comm comm);

// `data` reduced element-wise with `op` over the ranks of `comm`, in place on
// every rank (MPI_Allreduce). T: a type with mpi_type<T>().
template <typename T>
void allreduce_in_place(std::span<T> data, MPI_Op op, MPI_Comm comm);
// before[i] = the sum of mine[i] over the ranks below this one (MPI_Exscan);
// zeros on rank 0.
void exscan_sum(std::span<const uint64_t> mine, std::span<uint64_t> before, MPI_Comm comm);
// 128-bit integers summed element-wise over the ranks of `comm`, in place on
// every rank (a user-defined MPI_Allreduce operation; integer sums are exact,
// so the result does not depend on the reduction order).
__extension__ typedef __int128 int128_t;
void allreduce_sum_i128(std::span<int128_t> data, MPI_Comm comm);
// Every rank's `mine` (the same size on every rank), concatenated in rank
// order, on every rank (MPI_Allgather).
std::vector<std::byte> allgather_bytes(std::span<const std::byte> mine, MPI_Comm comm);

// MPI datatype for a C++ type used in collectives.
template <typename T>
MPI_Datatype mpi_type();
template <>
inline MPI_Datatype mpi_type<float>() {
  return MPI_FLOAT;
}
template <>
inline MPI_Datatype mpi_type<double>() {
  return MPI_DOUBLE;
}
template <>
inline MPI_Datatype mpi_type<int>() {
  return MPI_INT;
}
template <>
inline MPI_Datatype mpi_type<int64_t>() {
  return MPI_INT64_T;
}
template <>
inline MPI_Datatype mpi_type<uint64_t>() {
  return MPI_UINT64_T;
}
template <>
inline MPI_Datatype mpi_type<uint8_t>() {
  return MPI_UINT8_T;
}

namespace dist_detail {
enum class Outcome : int { Ok = 0, Input = 1, Runtime = 2 };
// Broadcasts root's outcome and throws it on every rank.
void share_outcome(Outcome outcome, const std::string& message, MPI_Comm comm, int root);
// Every rank's outcome; the lowest failing rank's is thrown on every rank.
void share_first_failure(Outcome outcome, const std::string& message, MPI_Comm comm);
}  // namespace dist_detail

namespace dist_detail {
// Runs `f`, returning how it ended (its message in `message`).
template <typename F>
Outcome outcome_of(F&& f, std::string& message) {
  try {
    std::forward<F>(f)();
  } catch (const InputError& e) {
    message = e.what();
    return Outcome::Input;
  } catch (const std::exception& e) {
    message = e.what();
    return Outcome::Runtime;
  }
  return Outcome::Ok;
}
}  // namespace dist_detail

template <typename F>
void run_on_root(MPI_Comm comm, F&& f, int root) {
  std::string message;
  const auto outcome = comm_rank(comm) == root
                           ? dist_detail::outcome_of(std::forward<F>(f), message)
                           : dist_detail::Outcome::Ok;
  dist_detail::share_outcome(outcome, message, comm, root);
}

template <typename F>
void run_everywhere(MPI_Comm comm, F&& f) {
  std::string message;
  const auto outcome = dist_detail::outcome_of(std::forward<F>(f), message);
  dist_detail::share_first_failure(outcome, message, comm);
}

}  // namespace kintsugi

#define MPI_CHECK(call)                                                                           \
  do {                                                                                            \
    const int mpi_check_rc_ = (call);                                                             \
    if (mpi_check_rc_ != MPI_SUCCESS)                                                             \
      throw ::kintsugi::RuntimeError(::fmt::format("{}:{}: {} failed: {}", __FILE__, __LINE__,    \
                                                   #call,                                         \
                                                   ::kintsugi::mpi_error_string(mpi_check_rc_))); \
  } while (0)

namespace kintsugi {

template <typename T>
void allreduce_in_place(std::span<T> data, MPI_Op op, MPI_Comm comm) {
  if (!mpi_started() || data.empty()) return;
  MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, data.data(), static_cast<int>(data.size()), mpi_type<T>(),
                          op, comm));
}

}  // namespace kintsugi
