# Merge engine: sharding invariance in-process (Catch2 under mpirun) and
# end-to-end through the CLI (byte-identical outputs for mpirun -np 1..4).
# CUDA against CPU kernels, bit for bit. Without a GPU (or without nvcc at
# configure time) it cannot run: ctest reports it "skipped", never passed.
kintsugi_unit_test(NAME merge_backends TAGS "[backends]" LABELS gpu)
set_tests_properties(merge_backends PROPERTIES SKIP_REGULAR_EXPRESSION
  "skipped: (this build has no CUDA kernels|no GPU on this machine)")
kintsugi_mpi_test(NAME merge_np2 NP 2 TAGS "[mpi][merge]")
kintsugi_mpi_test(NAME merge_np3 NP 3 TAGS "[mpi][merge]")
kintsugi_mpi_test(NAME merge_np4 NP 4 TAGS "[mpi][merge]")
kintsugi_cli_test(NAME merge_e2e SCRIPT ${CMAKE_CURRENT_SOURCE_DIR}/e2e/merge_invariance.sh LABELS merge)
# breadcrumbs, breadcrumbs_ties, nearswap, nuslerp, multislerp, karcher against a
# Python reference, np 1..3.
kintsugi_cli_test(NAME merge_methods SCRIPT ${CMAKE_CURRENT_SOURCE_DIR}/e2e/merge_methods.sh LABELS merge)
# slices: and passthrough (frankenmerges, gradients over slices), np 1..3.
kintsugi_cli_test(NAME merge_slices SCRIPT ${CMAKE_CURRENT_SOURCE_DIR}/e2e/merge_slices.sh LABELS merge)
# della, della_linear, sce against a Python reference (and DELLA's statistics), np 1..3.
kintsugi_cli_test(NAME merge_della SCRIPT ${CMAKE_CURRENT_SOURCE_DIR}/e2e/merge_della.sh LABELS merge)
# ram, ramplus_tl, arcee_fusion, lrp, cabs against a Python reference, np 1..3.
kintsugi_cli_test(NAME merge_ram SCRIPT ${CMAKE_CURRENT_SOURCE_DIR}/e2e/merge_ram.sh LABELS merge)
kintsugi_cli_test(NAME merge_errors SCRIPT ${CMAKE_CURRENT_SOURCE_DIR}/e2e/merge_errors.sh LABELS merge)
kintsugi_cli_test(NAME bench_merge SCRIPT ${CMAKE_CURRENT_SOURCE_DIR}/e2e/bench_merge.sh LABELS merge)
kintsugi_cli_test(NAME bench_host SCRIPT ${CMAKE_CURRENT_SOURCE_DIR}/e2e/bench_host.sh LABELS merge)
# Streaming: each rank under a data limit smaller than one tensor of a 640 MiB pool.
kintsugi_cli_test(NAME merge_bounded_memory SCRIPT ${CMAKE_CURRENT_SOURCE_DIR}/e2e/merge_bounded_memory.sh LABELS merge)
# Differing vocabularies (tokenizer_source / tokenizer:) against a Python reference of mergekit's rules.
kintsugi_cli_test(NAME merge_vocab SCRIPT ${CMAKE_CURRENT_SOURCE_DIR}/e2e/merge_vocab.sh LABELS merge)
# mergekit's own examples/ (test/data/mergekit_examples) against stand-in checkpoints of
# each model's layout: those kintsugi runs checked against a Python reference, the
# others refused with one line naming the part.
kintsugi_cli_test(NAME merge_mergekit_examples SCRIPT ${CMAKE_CURRENT_SOURCE_DIR}/e2e/merge_mergekit_examples.sh LABELS merge)
