# The CMake install rules (deploy recipes rely on them).
kintsugi_cli_test(NAME install SCRIPT ${CMAKE_CURRENT_SOURCE_DIR}/e2e/install.sh LABELS install)
