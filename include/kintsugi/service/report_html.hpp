#pragma once
// `kintsugi report STATE --html OUT.html` and `optimize --html FILE`: the
// report as one self-contained HTML page (docs/service.md, "The HTML
// report"). The page holds report_json() inline and draws it with Vega-Lite
// (vega, vega-lite and vega-embed from npm, tools/report-web, pinned by its
// lockfile and inlined at build time with their licences): it opens from a
// file:// URL with no network access.
#include <filesystem>
#include <string>
#include <vector>

#include "kintsugi/io/atomic_file.hpp"
#include "kintsugi/state/run_state.hpp"

namespace kintsugi {

// Whether this build holds the page's scripts (CMake found the npm packages:
// scripts/install-deps.sh installs them).
bool report_html_available();

// The page for `state`. RuntimeError when the build has no page scripts.
std::string report_html(const RunState& state);

// The checks a page's output path gets before any work is done: InputError
// (one line naming the path) when its folder does not exist, it is a
// folder, it is one of `inputs` (the state, its previous copy, the job file,
// a task file: never written over), or this build has no page scripts.
void check_report_html_target(const std::filesystem::path& path,
                              const std::vector<NamedPath>& inputs = {});

// Writes report_html(state) to `path` atomically (a reader sees the old page
// or the new one, never a torn file).
void write_report_html(const std::filesystem::path& path, const RunState& state);

}  // namespace kintsugi
