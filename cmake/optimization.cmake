# Optimization levels of a Release build. CMake's Release default, -O3, stays
# on the library (kintsugi_core: the kernels, the merge engine, the evaluator,
# the tokenizer). The CLI's own code (CLI11 parsing, the verbs' drivers)
# gains nothing from -O3 over -O2 but compiles much slower at it (GCC 12, CPU
# seconds: the CLI unit 57 -> 33); the unit tests build at -O0 (below).
# kintsugi_optimize(TARGET LEVEL): the target's code at -O<LEVEL> in Release
# builds: the CLI at 2; the unit tests at 0 (below). The roofline benchmark's
# reference loops in the CLI (triad, naive merge) are `omp simd` loops,
# vectorized at either level.
# Measured before choosing: the library at -O2 ran the evaluator 3-8% slower
# (bench eval, AMD EPYC), so it stays at -O3. The unit tests call the library
# for everything they measure; their own loops are small references. Measured
# alone (GCC 12, AMD EPYC Zen 5): the test objects compile in 86 CPU-s at -O0
# instead of 132 at -O2, and the unit and MPI tests then run in 57 CPU-s
# instead of 54. Other build types keep their own flags (Debug -O0, the
# sanitizer build -O0: scripts/build.sh).
function(kintsugi_optimize target level)
  target_compile_options(${target} PRIVATE
    $<$<AND:$<CONFIG:Release>,$<COMPILE_LANGUAGE:CXX>>:-O${level}>)
endfunction()
