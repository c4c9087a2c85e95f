# The service (optimize, baselines, export, report) end to end on the demo pool.
foreach(t determinism resume errors export failures command command_failures validation rescore vocab)
  kintsugi_cli_test(NAME service_${t} SCRIPT ${CMAKE_CURRENT_SOURCE_DIR}/e2e/service_${t}.sh LABELS service)
endforeach()
# The HTML report in headless Chromium (issue #18).
kintsugi_cli_test(NAME report_html SCRIPT ${CMAKE_CURRENT_SOURCE_DIR}/e2e/report_html.sh LABELS service)
