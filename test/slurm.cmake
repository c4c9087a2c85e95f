# slurm/optimize.sbatch (signal, requeue, resume) and slurm/merge.sbatch against
# a real one-node Slurm on localhost (needs root, slurm-wlm and munge from
# scripts/install-deps.sh).
kintsugi_cli_test(NAME slurm_jobs SCRIPT ${CMAKE_CURRENT_SOURCE_DIR}/e2e/slurm_jobs.sh LABELS slurm)
# Most of its three minutes is Slurm holding the requeued job back;
# scripts/test.sh runs it beside the other tests rather than in a ctest slot,
# and for a plain `ctest -j` a high cost starts it first so the other tests run
# during that wait.
set_tests_properties(slurm_jobs PROPERTIES COST 1000)
