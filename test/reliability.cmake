# Issue 15, classes 1-3, end to end through the CLI: outputs never touch what
# the run did not create, one writer per state, identities checked.
foreach(t outputs lock identity)
  kintsugi_cli_test(NAME reliability_${t} SCRIPT ${CMAKE_CURRENT_SOURCE_DIR}/e2e/reliability_${t}.sh LABELS service)
endforeach()
