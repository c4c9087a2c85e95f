// `kintsugi bench merge|eval|optimizer …`: throughput and search-efficiency
// harnesses. Each one lives in src/cli/bench_<name>.cpp.
#include <algorithm>
#include <memory>

#include "kintsugi/cli/bench.hpp"
#include "kintsugi/cli/verb.hpp"
#include "kintsugi/common/error.hpp"

namespace kintsugi::cli {

std::vector<Bench>& bench_registry() {
  static std::vector<Bench> benches;
  return benches;
}

std::string peer_output(const std::string& cmd, const std::string& what) {
  std::unique_ptr<FILE, int (*)(FILE*)> p(popen(cmd.c_str(), "r"), pclose);
  if (!p) throw_runtime("bench: cannot start {}", what);
  std::string out;
  char buf[1 << 16];
  for (size_t n; (n = std::fread(buf, 1, sizeof buf, p.get())) > 0;) out.append(buf, n);
  const int status = pclose(p.release());
  if (status != 0 || out.empty()) throw_runtime("bench: {} failed (status {})", what, status);
  return out;
}

namespace {

VerbRegistration bench_verb{
    {"bench", "Measure merge throughput, evaluation speed, optimizer efficiency", 80,
     [](CLI::App& sub) {
       sub.require_subcommand(1);
       auto chosen = std::make_shared<std::function<int()>>();
       auto& benches = bench_registry();
       std::sort(benches.begin(), benches.end(),
                 [](const Bench& a, const Bench& b) { return a.name < b.name; });
       for (auto& b : benches) {
         CLI::App* s = sub.add_subcommand(b.name, b.help);
         auto act = std::make_shared<std::function<int()>>(b.setup(*s));
         s->callback([act, chosen] { *chosen = *act; });
       }
       return std::function<int()>([chosen] { return (*chosen)(); });
     }}};

}  // namespace
}  // namespace kintsugi::cli
