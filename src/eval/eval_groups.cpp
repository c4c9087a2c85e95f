#include "kintsugi/eval/eval_groups.hpp"

#include "kintsugi/common/error.hpp"
#include "kintsugi/dist/mpi.hpp"

namespace kintsugi {

EvalGroups::EvalGroups(int tp) : tp_size(tp) {
  const int P = world_size();
  if (tp < 1 || P % tp != 0)
    throw_input("parallel.tensor_parallel {} does not divide the {} MPI ranks", tp, P);
  num_groups = P / tp;
  group = world_rank() / tp;
  if (!mpi_started()) {  // run alone (`kintsugi eval` without a launcher): one group of one
    comm = MPI_COMM_SELF;
    tp_rank = 0;
    return;
  }
  MPI_CHECK(MPI_Comm_split(MPI_COMM_WORLD, group, world_rank(), &comm));
  MPI_CHECK(MPI_Comm_rank(comm, &tp_rank));
}

EvalGroups::~EvalGroups() {
  if (comm != MPI_COMM_NULL && comm != MPI_COMM_SELF) MPI_Comm_free(&comm);
}

}  // namespace kintsugi
