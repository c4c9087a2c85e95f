# Hostile input files and damaged states (issue #15, classes 6 and 7), end to end.
foreach(t inputs states)
  kintsugi_cli_test(NAME hostile_${t} SCRIPT ${CMAKE_CURRENT_SOURCE_DIR}/e2e/hostile_${t}.sh LABELS service)
endforeach()
