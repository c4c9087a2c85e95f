# Precompiled headers: the third-party headers that most translation units
# parse (nlohmann/json, fmt, spdlog, Eigen, MPI, CLI11, Catch2) are parsed once
# per target instead of once per file, which is most of the compile time of a
# light file (CI runs on two cores). Every target gets its own PCH: their
# compile definitions differ, so REUSE_FROM would not match. The headers of
# the PCH become visible in every file of its target, so a missing #include of
# one of them goes unnoticed here; scripts/fuzz.sh compiles the io sources
# without it, and KINTSUGI_PCH=OFF builds without any.
option(KINTSUGI_PCH "Precompile the heavy third-party headers" ON)

set(KINTSUGI_PCH_COMMON
  <algorithm> <cmath> <cstring> <filesystem> <map> <memory> <string> <vector>
  <fmt/format.h> <nlohmann/json.hpp> <mpi.h> <Eigen/Dense>)

# kintsugi_precompile(TARGET [HEADERS ...]): the common headers plus HEADERS.
function(kintsugi_precompile target)
  if(KINTSUGI_PCH)
    target_precompile_headers(${target} PRIVATE ${KINTSUGI_PCH_COMMON} ${ARGN})
  endif()
endfunction()
