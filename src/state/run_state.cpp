// RunState <-> HDF5 (layout in docs/state.md).
#include "kintsugi/state/run_state.hpp"

#include <fmt/format.h>
#include <unistd.h>

#include "kintsugi/common/error.hpp"
#include "kintsugi/io/atomic_file.hpp"
#include "kintsugi/search/uniform_distance.hpp"
#include "kintsugi/state/hdf5.hpp"
#include "kintsugi/state/record_io.hpp"

namespace kintsugi {

namespace fs = std::filesystem;

// ---- tables -------------------------------------------------------------

void EvalTable::append(std::span<const double> z_row, std::span<const double> w_row,
                       std::span<const double> score_row, double objective_value, EvalStatus st,
                       std::string error_text, int64_t generation_index, double secs,
                       double merge_secs, double score_secs, double first_pass) {
  KS_CHECK(z_row.size() == dims, fmt::format("z has {} values, dims is {}", z_row.size(), dims));
  KS_CHECK(w_row.size() == n_weights,
           fmt::format("weights has {} values, n_weights is {}", w_row.size(), n_weights));
  KS_CHECK(score_row.size() == n_tasks,
           fmt::format("scores has {} values, n_tasks is {}", score_row.size(), n_tasks));
  z.insert(z.end(), z_row.begin(), z_row.end());
  weights.insert(weights.end(), w_row.begin(), w_row.end());
  scores.insert(scores.end(), score_row.begin(), score_row.end());
  objective.push_back(objective_value);
  status.push_back(static_cast<int64_t>(st));
  error.push_back(std::move(error_text));
  generation.push_back(generation_index);
  seconds.push_back(secs);
  merge_seconds.push_back(merge_secs);
  score_seconds.push_back(score_secs);
  first_pass_objective.push_back(first_pass);
}

void EvalTable::truncate(size_t e) {
  if (e >= size()) return;
  z.resize(e * dims);
  weights.resize(e * n_weights);
  scores.resize(e * n_tasks);
  objective.resize(e);
  status.resize(e);
  error.resize(e);
  generation.resize(e);
  seconds.resize(e);
  merge_seconds.resize(e);
  score_seconds.resize(e);
  first_pass_objective.resize(e);
}

void EvalTable::check() const {
  const size_t e = size();
  KS_CHECK(z.size() == e * dims && weights.size() == e * n_weights &&
               scores.size() == e * n_tasks && status.size() == e && error.size() == e &&
               generation.size() == e && seconds.size() == e && merge_seconds.size() == e &&
               score_seconds.size() == e && first_pass_objective.size() == e,
           fmt::format("evaluation columns disagree for {} rows", e));
}

size_t ExampleTable::columns() const {
  size_t x = 0;
  for (int64_t c : counts) x += static_cast<size_t>(c);
  return x;
}

void ExampleTable::append(size_t rows_before, const std::vector<ExampleScores>& row) {
  if (row.empty()) {
    if (empty()) return;
    values.resize(values.size() + columns(), std::nan(""));
    weights.resize(weights.size() + columns(), std::nan(""));
    return;
  }
  std::vector<int64_t> c, t;
  for (const auto& s : row) {
    c.push_back(static_cast<int64_t>(s.size()));
    t.push_back(static_cast<int64_t>(s.transform));
  }
  if (empty()) {
    counts = c;
    transforms = t;
    values.assign(rows_before * columns(), std::nan(""));
    weights.assign(rows_before * columns(), std::nan(""));
  } else if (c != counts || t != transforms) {
    throw_runtime("per-example results of {} tasks do not match the {} recorded before", row.size(),
                  counts.size());
  }
  for (const auto& s : row) {
    values.insert(values.end(), s.value.begin(), s.value.end());
    if (s.weight.empty())
      weights.insert(weights.end(), s.size(), 1.0);
    else
      weights.insert(weights.end(), s.weight.begin(), s.weight.end());
  }
}

std::vector<ExampleScores> ExampleTable::row(size_t r) const {
  std::vector<ExampleScores> out;
  const size_t x = columns();
  if (empty() || (r + 1) * x > values.size()) return out;
  size_t at = r * x;
  for (size_t k = 0; k < counts.size(); ++k) {
    ExampleScores s;
    s.transform = static_cast<ExampleScores::Transform>(transforms[k]);
    const auto n = static_cast<size_t>(counts[k]);
    s.value.assign(values.begin() + static_cast<std::ptrdiff_t>(at),
                   values.begin() + static_cast<std::ptrdiff_t>(at + n));
    s.weight.assign(weights.begin() + static_cast<std::ptrdiff_t>(at),
                    weights.begin() + static_cast<std::ptrdiff_t>(at + n));
    at += n;
    if (std::any_of(s.value.begin(), s.value.end(), [](double v) { return std::isnan(v); }))
      return {};
    if (s.transform == ExampleScores::Transform::Mean &&
        std::all_of(s.weight.begin(), s.weight.end(), [](double w) { return w == 1.0; }))
      s.weight.clear();
    out.push_back(std::move(s));
  }
  return out;
}

void ExampleTable::check(size_t rows) const {
  KS_CHECK(counts.size() == transforms.size() && values.size() == rows * columns() &&
               weights.size() == values.size(),
           fmt::format("per-example columns disagree for {} rows", rows));
}

void Baselines::append(std::string name, std::string recipe, std::span<const double> w_row,
                       std::span<const double> score_row, std::span<const double> test_row,
                       double objective_value, double test_objective_value,
                       const std::vector<ExampleScores>& test_example_row) {
  KS_CHECK(w_row.size() == n_weights, "baseline weights have the wrong length");
  KS_CHECK(score_row.size() == n_tasks && test_row.size() == n_tasks,
           "baseline scores have the wrong length");
  names.push_back(std::move(name));
  recipes.push_back(std::move(recipe));
  weights.insert(weights.end(), w_row.begin(), w_row.end());
  scores.insert(scores.end(), score_row.begin(), score_row.end());
  test_scores.insert(test_scores.end(), test_row.begin(), test_row.end());
  test_examples.append(names.size() - 1, test_example_row);
  objective.push_back(objective_value);
  test_objective.push_back(test_objective_value);
  validation_scores.insert(validation_scores.end(), n_tasks, std::nan(""));
  validation_objective.push_back(std::nan(""));
}

void Baselines::set_validation(size_t b, std::span<const double> score_row,
                               double objective_value) {
  KS_CHECK(b < size() && score_row.size() == n_tasks, "baseline validation row out of range");
  std::copy(score_row.begin(), score_row.end(),
            validation_scores.begin() + static_cast<std::ptrdiff_t>(b * n_tasks));
  validation_objective[b] = objective_value;
}

void Baselines::check() const {
  const size_t b = size();
  KS_CHECK(recipes.size() == b && weights.size() == b * n_weights && scores.size() == b * n_tasks &&
               test_scores.size() == b * n_tasks && objective.size() == b &&
               test_objective.size() == b && validation_scores.size() == b * n_tasks &&
               validation_objective.size() == b,
           fmt::format("baseline columns disagree for {} rows", b));
  test_examples.check(b);
}

void TestScores::check() const {
  const size_t m = size();
  KS_CHECK(scores.size() == m * n_tasks && objective.size() == m,
           fmt::format("test-score columns disagree for {} rows", m));
  examples.check(m);
}

// ---- writing ------------------------------------------------------------

namespace {

void write_meta(const h5::Loc& root, const StateMeta& m) {
  h5::Id g = h5::create_group(root, "meta");
  const h5::Loc loc{g.get(), root.file, "/meta"};
  h5::write_attr(loc, "format_version", m.format_version);
  h5::write_attr(loc, "kintsugi_version", m.kintsugi_version);
  h5::write_attr(loc, "config", m.config);
  h5::write_attr(loc, "config_hash", m.config_hash);
  h5::write_attr(loc, "seed", m.seed);
  h5::write_attr(loc, "created", m.created);
  h5::write_attr(loc, "job_file", m.job_file);
  if (!m.run_status.empty()) h5::write_attr(loc, "run_status", m.run_status);
  h5::write_strings(loc, "pool_names", m.pool_names);
  h5::write_strings(loc, "pool_fingerprints", m.pool_fingerprints);
  h5::write_strings(loc, "task_names", m.task_names);
  std::vector<std::string> keys, values;
  for (const auto& [k, v] : m.settings) {
    keys.push_back(k);
    values.push_back(v);
  }
  h5::write_strings(loc, "settings_keys", keys);
  h5::write_strings(loc, "settings_values", values);
}

void write_evals(const h5::Loc& root, const EvalTable& t) {
  t.check();
  h5::Id g = h5::create_group(root, "evals");
  const h5::Loc loc{g.get(), root.file, "/evals"};
  const hsize_t e = t.size();
  h5::write_f64(loc, "z", t.z, {e, t.dims});
  h5::write_f64(loc, "weights", t.weights, {e, t.n_weights});
  h5::write_f64(loc, "scores", t.scores, {e, t.n_tasks});
  h5::write_f64(loc, "objective", t.objective, {e});
  h5::write_i64(loc, "status", t.status, {e});
  h5::write_strings(loc, "error", t.error);
  h5::write_i64(loc, "generation", t.generation, {e});
  h5::write_f64(loc, "seconds", t.seconds, {e});
  h5::write_f64(loc, "merge_seconds", t.merge_seconds, {e});
  h5::write_f64(loc, "score_seconds", t.score_seconds, {e});
  h5::write_f64(loc, "first_pass_objective", t.first_pass_objective, {e});
}

// A table's per-example results as PREFIX{counts,transforms,values,weights};
// nothing when it has none.
void write_examples(const h5::Loc& loc, const std::string& prefix, const ExampleTable& t,
                    size_t rows) {
  if (t.empty()) return;
  const hsize_t k = t.counts.size(), x = t.columns();
  h5::write_i64(loc, prefix + "counts", t.counts, {k});
  h5::write_i64(loc, prefix + "transforms", t.transforms, {k});
  h5::write_f64(loc, prefix + "values", t.values, {rows, x});
  h5::write_f64(loc, prefix + "weights", t.weights, {rows, x});
}

void write_baselines(const h5::Loc& root, const Baselines& b) {
  b.check();
  h5::Id g = h5::create_group(root, "baselines");
  const h5::Loc loc{g.get(), root.file, "/baselines"};
  const hsize_t n = b.size();
  h5::write_strings(loc, "names", b.names);
  h5::write_strings(loc, "recipes", b.recipes);
  h5::write_f64(loc, "weights", b.weights, {n, b.n_weights});
  h5::write_f64(loc, "scores", b.scores, {n, b.n_tasks});
  h5::write_f64(loc, "test_scores", b.test_scores, {n, b.n_tasks});
  h5::write_f64(loc, "objective", b.objective, {n});
  h5::write_f64(loc, "test_objective", b.test_objective, {n});
  h5::write_f64(loc, "validation_scores", b.validation_scores, {n, b.n_tasks});
  h5::write_f64(loc, "validation_objective", b.validation_objective, {n});
  write_examples(loc, "test_example_", b.test_examples, n);
}

void write_test(const h5::Loc& root, const TestScores& t, const std::string& group = "test") {
  t.check();
  h5::Id g = h5::create_group(root, group);
  const h5::Loc loc{g.get(), root.file, "/" + group};
  const hsize_t m = t.size();
  h5::write_i64(loc, "eval_index", t.eval_index, {m});
  h5::write_f64(loc, "scores", t.scores, {m, t.n_tasks});
  h5::write_f64(loc, "objective", t.objective, {m});
  write_examples(loc, "example_", t.examples, m);
}

// The state's bytes: an HDF5 file built in memory.
std::string state_image(const std::string& name, const RunState& s) {
  h5::Id f = h5::create_memory_file(name);
  const h5::Loc root{f.get(), name, "/"};
  write_meta(root, s.meta);
  write_evals(root, s.evals);
  write_record(root, "optimizer", s.optimizer);
  write_baselines(root, s.baselines);
  {
    h5::Id g = h5::create_group(root, "pareto");
    h5::write_i64({g.get(), name, "/pareto"}, "indices", s.pareto, {s.pareto.size()});
  }
  write_test(root, s.test);
  if (s.validation.size() > 0) write_test(root, s.validation, "validation");
  std::string bytes = h5::file_image(f.get(), name);
  f.close(name);
  return bytes;
}

// ---- reading ------------------------------------------------------------

[[noreturn]] void bad(const h5::Loc& loc, const std::string& name, const std::string& what) {
  throw_input("{}: {}: {}", loc.file, loc.child(name), what);
}

// A 2-D float dataset with `rows` rows (cols returned).
std::vector<double> read_matrix(const h5::Loc& loc, const std::string& name, size_t rows,
                                size_t* cols) {
  std::vector<hsize_t> dims;
  std::vector<double> v = h5::read_f64(loc, name, 2, &dims);
  if (dims[0] != rows) bad(loc, name, fmt::format("has {} rows, expected {}", dims[0], rows));
  *cols = static_cast<size_t>(dims[1]);
  return v;
}

std::vector<double> read_vector(const h5::Loc& loc, const std::string& name, size_t n) {
  std::vector<double> v = h5::read_f64(loc, name, 1);
  if (v.size() != n) bad(loc, name, fmt::format("has {} values, expected {}", v.size(), n));
  return v;
}

std::vector<int64_t> read_ivector(const h5::Loc& loc, const std::string& name, size_t n) {
  std::vector<int64_t> v = h5::read_i64(loc, name, 1);
  if (v.size() != n) bad(loc, name, fmt::format("has {} values, expected {}", v.size(), n));
  return v;
}

StateMeta read_meta(const h5::Loc& root) {
  h5::Id g = h5::open_group(root, "meta");
  const h5::Loc loc{g.get(), root.file, "/meta"};
  StateMeta m;
  m.format_version = h5::read_attr_int(loc, "format_version");
  if (m.format_version != kStateFormatVersion)
    throw_input("{}: state format_version {} is not supported (this kintsugi reads version {})",
                root.file, m.format_version, kStateFormatVersion);
  m.kintsugi_version = h5::read_attr_string(loc, "kintsugi_version");
  m.config = h5::read_attr_string(loc, "config");
  m.config_hash = h5::read_attr_string(loc, "config_hash");
  m.seed = h5::read_attr_uint(loc, "seed");
  m.created = h5::read_attr_string(loc, "created");
  m.job_file = h5::read_attr_string(loc, "job_file");
  m.run_status = h5::has_attr(loc, "run_status") ? h5::read_attr_string(loc, "run_status") : "";
  m.pool_names = h5::read_strings(loc, "pool_names");
  m.pool_fingerprints = h5::read_strings(loc, "pool_fingerprints");
  if (m.pool_fingerprints.size() != m.pool_names.size())
    bad(loc, "pool_fingerprints", "does not match pool_names in length");
  m.task_names = h5::read_strings(loc, "task_names");
  const auto keys = h5::read_strings(loc, "settings_keys");
  const auto values = h5::read_strings(loc, "settings_values");
  if (keys.size() != values.size())
    bad(loc, "settings_values", "does not match settings_keys in length");
  for (size_t i = 0; i < keys.size(); ++i) m.settings.emplace_back(keys[i], values[i]);
  return m;
}

EvalTable read_evals(const h5::Loc& root, size_t n_tasks) {
  h5::Id g = h5::open_group(root, "evals");
  const h5::Loc loc{g.get(), root.file, "/evals"};
  EvalTable t;
  t.objective = h5::read_f64(loc, "objective", 1);
  const size_t e = t.objective.size();
  t.z = read_matrix(loc, "z", e, &t.dims);
  t.weights = read_matrix(loc, "weights", e, &t.n_weights);
  t.scores = read_matrix(loc, "scores", e, &t.n_tasks);
  if (t.n_tasks != n_tasks)
    bad(loc, "scores", fmt::format("has {} columns for {} tasks", t.n_tasks, n_tasks));
  t.status = read_ivector(loc, "status", e);
  for (int64_t s : t.status)
    if (s != 0 && s != 1) bad(loc, "status", fmt::format("holds {}, expected 0 or 1", s));
  t.error = h5::read_strings(loc, "error");
  if (t.error.size() != e)
    bad(loc, "error", fmt::format("has {} values, expected {}", t.error.size(), e));
  t.generation = read_ivector(loc, "generation", e);
  t.seconds = read_vector(loc, "seconds", e);
  // Added after format 1 was first written: older states read as unknown.
  for (auto [name, column] :
       {std::pair{"merge_seconds", &t.merge_seconds}, std::pair{"score_seconds", &t.score_seconds},
        std::pair{"first_pass_objective", &t.first_pass_objective}})
    *column =
        h5::exists(loc, name) ? read_vector(loc, name, e) : std::vector<double>(e, std::nan(""));
  return t;
}

// What write_examples wrote (absent in older states: an empty table).
ExampleTable read_examples(const h5::Loc& loc, const std::string& prefix, size_t rows,
                           size_t n_tasks) {
  ExampleTable t;
  if (!h5::exists(loc, prefix + "counts")) return t;
  t.counts = read_ivector(loc, prefix + "counts", n_tasks);
  t.transforms = read_ivector(loc, prefix + "transforms", n_tasks);
  for (int64_t c : t.counts)
    if (c < 0) bad(loc, prefix + "counts", fmt::format("holds {}", c));
  for (int64_t v : t.transforms)
    if (v < 0 || v > 2) bad(loc, prefix + "transforms", fmt::format("holds {}, expected 0-2", v));
  size_t x = 0;
  t.values = read_matrix(loc, prefix + "values", rows, &x);
  if (x != t.columns())
    bad(loc, prefix + "values", fmt::format("has {} columns for {} examples", x, t.columns()));
  t.weights = read_matrix(loc, prefix + "weights", rows, &x);
  if (x != t.columns())
    bad(loc, prefix + "weights", fmt::format("has {} columns for {} examples", x, t.columns()));
  return t;
}

Baselines read_baselines(const h5::Loc& root, size_t n_tasks) {
  h5::Id g = h5::open_group(root, "baselines");
  const h5::Loc loc{g.get(), root.file, "/baselines"};
  Baselines b;
  b.names = h5::read_strings(loc, "names");
  const size_t n = b.names.size();
  b.recipes = h5::read_strings(loc, "recipes");
  if (b.recipes.size() != n) bad(loc, "recipes", "does not match names in length");
  b.weights = read_matrix(loc, "weights", n, &b.n_weights);
  b.scores = read_matrix(loc, "scores", n, &b.n_tasks);
  size_t k2 = 0;
  b.test_scores = read_matrix(loc, "test_scores", n, &k2);
  if (b.n_tasks != n_tasks || k2 != n_tasks)
    bad(loc, "scores", fmt::format("has {} columns for {} tasks", b.n_tasks, n_tasks));
  b.objective = read_vector(loc, "objective", n);
  b.test_objective = read_vector(loc, "test_objective", n);
  // States written before references were scored on validation have none.
  if (h5::exists(loc, "validation_scores")) {
    size_t k3 = 0;
    b.validation_scores = read_matrix(loc, "validation_scores", n, &k3);
    if (k3 != n_tasks)
      bad(loc, "validation_scores", fmt::format("has {} columns for {} tasks", k3, n_tasks));
    b.validation_objective = read_vector(loc, "validation_objective", n);
  } else {
    b.validation_scores.assign(n * n_tasks, std::nan(""));
    b.validation_objective.assign(n, std::nan(""));
  }
  b.test_examples = read_examples(loc, "test_example_", n, n_tasks);
  return b;
}

TestScores read_test(const h5::Loc& root, size_t n_tasks, size_t n_evals,
                     const std::string& group = "test") {
  h5::Id g = h5::open_group(root, group);
  const h5::Loc loc{g.get(), root.file, "/" + group};
  TestScores t;
  t.eval_index = h5::read_i64(loc, "eval_index", 1);
  for (int64_t i : t.eval_index)
    if (i < 0 || static_cast<size_t>(i) >= n_evals)
      bad(loc, "eval_index", fmt::format("index {} is outside the {} evaluations", i, n_evals));
  t.scores = read_matrix(loc, "scores", t.eval_index.size(), &t.n_tasks);
  if (t.n_tasks != n_tasks)
    bad(loc, "scores", fmt::format("has {} columns for {} tasks", t.n_tasks, n_tasks));
  t.objective = read_vector(loc, "objective", t.eval_index.size());
  t.examples = read_examples(loc, "example_", t.eval_index.size(), n_tasks);
  return t;
}

// What the readers above cannot see one dataset at a time: the tables agree
// with the pool and the tasks (an empty pool, or weight rows that do not
// split into checkpoints, would reach the verbs as a division by zero or an
// internal check).
void check_consistent(const h5::Loc& root, const RunState& s) {
  const std::string meta = root.file + ": /meta/";
  const size_t n = s.meta.pool_names.size();
  if (n == 0) throw_input("{}pool_names: empty (a state names at least one checkpoint)", meta);
  if (s.meta.task_names.empty())
    throw_input("{}task_names: empty (a state names at least one task)", meta);
  const auto weights_ok = [n](size_t w) { return w >= n && w % n == 0; };
  if (!weights_ok(s.evals.n_weights))
    throw_input("{}: /evals/weights: {} columns, not a positive multiple of the {} checkpoints",
                root.file, s.evals.n_weights, n);
  if (!weights_ok(s.baselines.n_weights))
    throw_input("{}: /baselines/weights: {} columns, not a positive multiple of the {} checkpoints",
                root.file, s.baselines.n_weights, n);
  if (s.evals.size() > 0 && s.evals.dims == 0)
    throw_input("{}: /evals/z: 0 columns for {} evaluations", root.file, s.evals.size());
  if (s.evals.dims > s.evals.n_weights)
    throw_input("{}: /evals/z: {} columns, more than the {} weights", root.file, s.evals.dims,
                s.evals.n_weights);
  for (size_t e = 0; e < s.evals.size(); ++e)
    if (s.evals.generation[e] < 0)
      throw_input("{}: /evals/generation: {} at row {} is negative", root.file,
                  s.evals.generation[e], e);
}

}  // namespace

void save_state(const fs::path& path, const RunState& state) {
  const std::string name = path.string();
  // Built whole in memory first, then written with every write, fsync, close
  // and rename checked: a full disk fails the save with one line, and the
  // previous state stays as it was.
  write_file_atomic(path, state_image(name, state), KeepPrevious::Yes);
}

void check_state_writable(const fs::path& path, const RunState& state) {
  const std::string name = path.string();
  const std::string bytes = state_image(name, state);
  const fs::path probe = create_unique_file(resolve_write_target(path), "tmp");
  try {
    write_file_synced(probe, bytes);
  } catch (...) {
    ::unlink(probe.c_str());
    throw;
  }
  ::unlink(probe.c_str());
}

RunState load_state(const fs::path& path) {
  h5::Id f = h5::open_file_read(path);
  const h5::Loc root{f.get(), path.string(), "/"};
  RunState s;
  s.meta = read_meta(root);
  const size_t k = s.meta.task_names.size();
  s.evals = read_evals(root, k);
  s.optimizer = read_record(root, "optimizer");
  s.baselines = read_baselines(root, k);
  {
    h5::Id g = h5::open_group(root, "pareto");
    const h5::Loc loc{g.get(), root.file, "/pareto"};
    s.pareto = h5::read_i64(loc, "indices", 1);
    for (int64_t i : s.pareto)
      if (i < 0 || static_cast<size_t>(i) >= s.evals.size())
        bad(loc, "indices",
            fmt::format("index {} is outside the {} evaluations", i, s.evals.size()));
  }
  s.test = read_test(root, k, s.evals.size());
  s.validation.n_tasks = k;
  if (h5::exists(root, "validation"))
    s.validation = read_test(root, k, s.evals.size(), "validation");
  check_consistent(root, s);
  return s;
}

int64_t best_evaluation(const RunState& state) {
  const TestScores& v = state.validation;
  int64_t row = -1;
  for (size_t i = 0; i < v.size(); ++i)
    if (std::isfinite(v.objective[i]) &&
        (row < 0 || v.objective[i] > v.objective[static_cast<size_t>(row)]))
      row = static_cast<int64_t>(i);
  if (row >= 0) return v.eval_index[static_cast<size_t>(row)];
  return best_on_search(state);
}

double search_fitness(const RunState& state, size_t e) {
  double lambda = 0.0;
  for (const auto& [k, v] : state.meta.settings)
    if (k == "search.uniform_penalty") lambda = std::strtod(v.c_str(), nullptr);
  const double obj = state.evals.objective[e];
  if (!(lambda > 0)) return obj;
  const size_t w = state.evals.n_weights;
  return obj - lambda * search::uniform_distance(
                            std::span<const double>(state.evals.weights).subspan(e * w, w),
                            state.meta.pool_names.size());
}

bool selectable(const RunState& state, size_t e) {
  if (state.evals.status[e] != static_cast<int64_t>(EvalStatus::Ok)) return false;
  for (const auto& [k, v] : state.meta.settings)
    if (k == "search.rescore_top") return state.evals.rescored(e);
  return true;
}

int64_t best_on_search(const RunState& state) {
  int64_t best = -1;
  double best_fit = 0.0;
  for (size_t e = 0; e < state.evals.size(); ++e) {
    if (!selectable(state, e)) continue;
    const double f = search_fitness(state, e);
    if (best < 0 || f > best_fit) {
      best = static_cast<int64_t>(e);
      best_fit = f;
    }
  }
  return best;
}

}  // namespace kintsugi
