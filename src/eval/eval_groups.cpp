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
  MPI_CHECK(MPI_Comm_split(MPI_COMM_WORLD, group, world_rank(), &comm));
  MPI_CHECK(MPI_Comm_rank(comm, &tp_rank));
}

EvalGroups::~EvalGroups() {
  if (comm != MPI_COMM_NULL) MPI_Comm_free(&comm);
}

std::vector<std::string> gather_strings(const std::string& mine, MPI_Comm comm) {
  int size = 0, rank = 0;
  MPI_CHECK(MPI_Comm_size(comm, &size));
  MPI_CHECK(MPI_Comm_rank(comm, &rank));
  const int len = static_cast<int>(mine.size());
  std::vector<int> lens(static_cast<size_t>(size)), displs(static_cast<size_t>(size));
  MPI_CHECK(MPI_Gather(&len, 1, MPI_INT, lens.data(), 1, MPI_INT, 0, comm));
  int total = 0;
  for (int i = 0; i < size; ++i) {
    displs[static_cast<size_t>(i)] = total;
    total += lens[static_cast<size_t>(i)];
  }
  std::string all(rank == 0 ? static_cast<size_t>(total) : 0, '\0');
  MPI_CHECK(MPI_Gatherv(mine.data(), len, MPI_CHAR, all.data(), lens.data(), displs.data(),
                        MPI_CHAR, 0, comm));
  std::vector<std::string> out;
  if (rank == 0)
    for (int i = 0; i < size; ++i)
      out.push_back(all.substr(static_cast<size_t>(displs[static_cast<size_t>(i)]),
                               static_cast<size_t>(lens[static_cast<size_t>(i)])));
  return out;
}

}  // namespace kintsugi
