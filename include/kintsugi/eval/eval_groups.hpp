#pragma once
// Splitting the world into evaluation groups and collecting their results:
// P ranks with tensor_parallel T make G = P / T groups of T consecutive ranks;
// models are dealt to groups round-robin (model m goes to group m % G), so
// every score is computed the same way whatever P is.
#include <mpi.h>

#include <string>
#include <vector>

namespace kintsugi {

struct EvalGroups {
  int tp_size = 1;     // T
  int num_groups = 1;  // G
  int group = 0;       // this rank's group
  int tp_rank = 0;     // this rank within it
  MPI_Comm comm = MPI_COMM_NULL;

  // Collective over MPI_COMM_WORLD. InputError when T does not divide P.
  explicit EvalGroups(int tp_size);
  ~EvalGroups();
  EvalGroups(const EvalGroups&) = delete;
  EvalGroups& operator=(const EvalGroups&) = delete;

  bool owns(size_t model_index) const {
    return static_cast<int>(model_index % static_cast<size_t>(num_groups)) == group;
  }
};

}  // namespace kintsugi
