# The HTML report's assets (src/service/report_html.cpp links them in as
# bytes): the page's own script and style, and the charting library from npm
# (vega, vega-lite, vega-embed: tools/report-web/package-lock.json pins them;
# scripts/install-deps.sh runs `npm ci` there). Without the npm packages the
# build goes on and `report --html` says how to get them; KINTSUGI_REPORT_WEB
# =ON makes their absence a configure error instead (CI sets nothing: its
# test of the page fails, never skips, when the page is missing).
set(KINTSUGI_REPORT_WEB_MODULES "${CMAKE_SOURCE_DIR}/tools/report-web/node_modules" CACHE PATH
    "node_modules holding vega, vega-lite and vega-embed (tools/report-web)")
set(KINTSUGI_REPORT_WEB "AUTO" CACHE STRING "Inline the HTML report's charting library: AUTO or ON")
set(_m "${KINTSUGI_REPORT_WEB_MODULES}")
set(_assets
  KINTSUGI_REPORT_PAGE_JS=${CMAKE_SOURCE_DIR}/src/service/report_page.js
  KINTSUGI_REPORT_PAGE_CSS=${CMAKE_SOURCE_DIR}/src/service/report_page.css
  KINTSUGI_VEGA_JS=${_m}/vega/build/vega.min.js
  KINTSUGI_VEGA_LITE_JS=${_m}/vega-lite/build/vega-lite.min.js
  KINTSUGI_VEGA_EMBED_JS=${_m}/vega-embed/build/vega-embed.min.js
  KINTSUGI_VEGA_LICENSE=${_m}/vega/LICENSE
  KINTSUGI_VEGA_LITE_LICENSE=${_m}/vega-lite/LICENSE
  KINTSUGI_VEGA_EMBED_LICENSE=${_m}/vega-embed/LICENSE)
set(_defs KINTSUGI_HAVE_REPORT_WEB=1)
set(_files)
set(_missing)
foreach(a IN LISTS _assets)
  string(REGEX REPLACE "^([A-Z_]+)=(.*)$" "\\1;\\2" pair "${a}")
  list(GET pair 0 name)
  list(GET pair 1 file)
  if(NOT EXISTS "${file}")
    list(APPEND _missing "${file}")
  endif()
  list(APPEND _defs "${name}=\"${file}\"")
  list(APPEND _files "${file}")
endforeach()
if(_missing)
  if(KINTSUGI_REPORT_WEB STREQUAL "ON")
    message(FATAL_ERROR "HTML report: missing ${_missing}; run scripts/install-deps.sh")
  endif()
  message(WARNING "HTML report: missing ${_missing}; `report --html` will say so "
                  "(run scripts/install-deps.sh, then reconfigure)")
else()
  set_source_files_properties(src/service/report_html.cpp PROPERTIES
    COMPILE_DEFINITIONS "${_defs}" OBJECT_DEPENDS "${_files}")
endif()
