# The CMake install rules (deploy recipes rely on them).
kintsugi_cli_test(NAME install SCRIPT ${CMAKE_CURRENT_SOURCE_DIR}/e2e/install.sh LABELS install)
# The sources with x86-specific code compile for aarch64 (cross compiler).
kintsugi_cli_test(NAME aarch64_build SCRIPT ${CMAKE_CURRENT_SOURCE_DIR}/e2e/aarch64_build.sh LABELS install)
