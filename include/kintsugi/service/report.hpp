#pragma once
// `kintsugi report STATE [--json | --csv]`: what the search found, from the
// state file alone: every checkpoint, every baseline and the best optimized
// merge on the search and test splits, the optimized weights, the Pareto front
// and its hypervolume.
#include <nlohmann/json.hpp>
#include <string>

#include "kintsugi/state/run_state.hpp"

namespace kintsugi {

enum class ReportFormat { Text, Json, Csv };

// The report as JSON: {"checkpoints", "baselines", "best", "pareto",
// "hypervolume", "hypervolume_reference", "search"}.
nlohmann::json report_json(const RunState& state);
std::string report_text(const RunState& state);
std::string report_csv(const RunState& state);

}  // namespace kintsugi
