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
// How the last run on the state ended (StateMeta::run_status): "running",
// "stopped by signal N", "finished", or "unknown" for states from before it
// was recorded. `report --status` prints it; the Slurm templates read it.
std::string run_status_text(const RunState& state);

}  // namespace kintsugi
