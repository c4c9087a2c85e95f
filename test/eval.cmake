# The evaluator's tensor-parallel tests: T = 1, 2 and 4 within one world.
kintsugi_mpi_test(NAME eval_tp_np4 NP 4 TAGS "[mpi][eval]")
kintsugi_mpi_test(NAME eval_tp_np2 NP 2 TAGS "[mpi][eval]")
# The CLI under mpirun: scores do not depend on P or T (demo pool).
kintsugi_cli_test(NAME eval_groups SCRIPT ${CMAKE_CURRENT_SOURCE_DIR}/e2e/eval_groups.sh LABELS eval)
# `bench eval` checks its own scores across T and refuses a missing job.
kintsugi_cli_test(NAME bench_eval SCRIPT ${CMAKE_CURRENT_SOURCE_DIR}/e2e/bench_eval.sh LABELS eval)
