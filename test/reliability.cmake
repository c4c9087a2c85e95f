# Issue 15 end to end through the CLI: classes 1-3 (outputs never touch what
# the run did not create, one writer per state, identities checked) and 4, 5,
# 8, 9 (recipes written as data, numbers sane, writes checked, messages).
foreach(t outputs lock identity values)
  kintsugi_cli_test(NAME reliability_${t} SCRIPT ${CMAKE_CURRENT_SOURCE_DIR}/e2e/reliability_${t}.sh LABELS service)
endforeach()
