// `kintsugi bench merge|eval|optimizer …`: throughput and search-efficiency
// harnesses. Each one lives in src/cli/bench_<name>.cpp.
#include <algorithm>
#include <memory>

#include "kintsugi/cli/bench.hpp"
#include "kintsugi/cli/verb.hpp"

namespace kintsugi::cli {

std::vector<Bench>& bench_registry() {
  static std::vector<Bench> benches;
  return benches;
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
