#pragma once
// Thin MPI helpers: a check macro that names file and line, and the world's
// rank and size. Every process of kintsugi initializes MPI once in main();
// a plain `kintsugi …` without mpirun is a world of one (MPI singleton).
#include <mpi.h>

#include <cstdint>
#include <string>

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

int world_rank();
int world_size();

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

}  // namespace kintsugi

#define MPI_CHECK(call)                                                                           \
  do {                                                                                            \
    const int mpi_check_rc_ = (call);                                                             \
    if (mpi_check_rc_ != MPI_SUCCESS)                                                             \
      throw ::kintsugi::RuntimeError(::fmt::format("{}:{}: {} failed: {}", __FILE__, __LINE__,    \
                                                   #call,                                         \
                                                   ::kintsugi::mpi_error_string(mpi_check_rc_))); \
  } while (0)
