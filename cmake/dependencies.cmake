# Every dependency comes from Debian's packages (scripts/install-deps.sh).
find_package(Threads REQUIRED)
find_package(MPI REQUIRED COMPONENTS CXX)
find_package(OpenMP REQUIRED COMPONENTS CXX)
# HDF5 is linked statically. Debian's shared libhdf5 needs libcurl (for its
# S3 driver, which kintsugi does not use) and through it gnutls, OpenSSL,
# Kerberos, LDAP...: 39 libraries whose loading and constructors cost every
# kintsugi process about 11 ms, most of its start (bench/RESULTS.md). From
# the static archive only the objects kintsugi calls are linked; the S3
# driver is not among them, and --as-needed (below) then drops the libraries
# that FindHDF5 lists for it.
set(HDF5_USE_STATIC_LIBRARIES ON)
find_package(HDF5 REQUIRED COMPONENTS C)
add_link_options(LINKER:--as-needed)
find_package(yaml-cpp REQUIRED)
find_package(nlohmann_json REQUIRED)
find_package(fmt REQUIRED)
find_package(spdlog REQUIRED)
find_package(CLI11 REQUIRED)
find_package(Eigen3 REQUIRED NO_MODULE)
# The tokenizer: PCRE2 for tokenizer.json's regexes, ICU for Unicode normalization.
find_package(PkgConfig REQUIRED)
pkg_check_modules(PCRE2 REQUIRED IMPORTED_TARGET libpcre2-8)
pkg_check_modules(ICU REQUIRED IMPORTED_TARGET icu-uc)
# FindHDF5's own hdf5::hdf5 target names the static archive without the
# libraries it needs (zlib, libsz): this one names them all.
add_library(kintsugi_hdf5 INTERFACE IMPORTED)
target_include_directories(kintsugi_hdf5 INTERFACE ${HDF5_C_INCLUDE_DIRS})
target_compile_definitions(kintsugi_hdf5 INTERFACE ${HDF5_C_DEFINITIONS})
target_link_libraries(kintsugi_hdf5 INTERFACE ${HDF5_C_LIBRARIES})

# CUDA: optional. AUTO turns it on only when nvcc is present.
set(KINTSUGI_WITH_CUDA OFF)
if(NOT KINTSUGI_CUDA STREQUAL "OFF")
  if(NOT CMAKE_CUDA_COMPILER AND EXISTS /usr/local/cuda/bin/nvcc)
    set(CMAKE_CUDA_COMPILER /usr/local/cuda/bin/nvcc)
  endif()
  include(CheckLanguage)
  check_language(CUDA)
  if(CMAKE_CUDA_COMPILER)
    enable_language(CUDA)
    find_package(CUDAToolkit REQUIRED)
    set(KINTSUGI_WITH_CUDA ON)
  elseif(KINTSUGI_CUDA STREQUAL "ON")
    message(FATAL_ERROR "KINTSUGI_CUDA=ON but no CUDA compiler was found")
  endif()
endif()
message(STATUS "kintsugi: CUDA kernels ${KINTSUGI_WITH_CUDA}")
