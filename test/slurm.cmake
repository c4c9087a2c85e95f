# slurm/optimize.sbatch against a real one-node Slurm on localhost (needs root,
# slurm-wlm and munge from scripts/install-deps.sh).
kintsugi_cli_test(NAME slurm_requeue SCRIPT ${CMAKE_CURRENT_SOURCE_DIR}/e2e/slurm_requeue.sh LABELS slurm)
