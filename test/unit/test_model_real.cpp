// Real-vocabulary models (Llama/Mistral with the 32000-token SentencePiece BPE
// vocabulary, Qwen2 with 151936 rows) through the model half of the chain:
// HF folder -> load_model_shard (tensor-parallel over the world) -> forward
// -> log_probs, on token ids from Hugging Face's own tokenizer, against
// tools/real_models_reference.py's float64 PyTorch forward pass. Driven by
// test/real_models/run.sh (ctest real_models), which writes the models and
// the reference and names the reference file in KINTSUGI_REAL_MODELS_REFERENCE.
// Tagged [mpi] so the plain `unit` run (~[mpi]~[slow]) leaves it out; run
// without the variable it fails.
#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <span>
#include <string>
#include <vector>

#include "kintsugi/dist/mpi.hpp"
#include "kintsugi/model/transformer.hpp"
#include "kintsugi/pool/shard_loader.hpp"

using namespace kintsugi;

TEST_CASE("real-vocabulary models match the PyTorch reference within 1e-3 per token",
          "[mpi][real_models]") {
  const char* ref_path = std::getenv("KINTSUGI_REAL_MODELS_REFERENCE");
  INFO(
      "KINTSUGI_REAL_MODELS_REFERENCE names tools/real_models_reference.py's output "
      "(test/real_models/run.sh sets it)");
  REQUIRE(ref_path != nullptr);
  std::ifstream in(ref_path);
  REQUIRE(in.good());
  const auto ref = nlohmann::json::parse(in);
  REQUIRE(ref.at("dtype") == "float64");
  REQUIRE(!ref.at("models").empty());
  const int T = world_size();
  const int rank = world_rank();
  for (const auto& model : ref["models"]) {
    const std::string folder = model.at("folder").get<std::string>();
    INFO(folder << " at T = " << T);
    const ModelShard shard = load_model_shard(HfCheckpoint::open(folder), rank, T);
    Transformer m(shard, MPI_COMM_WORLD);
    const auto& seqs = model.at("sequences");
    REQUIRE(!seqs.empty());
    double worst = 0;
    size_t scored = 0;
    // Ragged batches of up to 4 sequences (one forward call each).
    constexpr size_t batch = 4;
    for (size_t s0 = 0; s0 < seqs.size(); s0 += batch) {
      const size_t n = std::min(batch, seqs.size() - s0);
      std::vector<std::vector<int32_t>> ids(n);
      std::vector<SeqCache> caches;
      caches.reserve(n);
      std::vector<ForwardRequest> req;
      std::vector<int32_t> targets;
      std::vector<double> want;
      for (size_t k = 0; k < n; ++k) {
        const auto& s = seqs[s0 + k];
        ids[k] = s.at("ids").get<std::vector<int32_t>>();
        const auto lp = s.at("logprobs").get<std::vector<double>>();
        REQUIRE(ids[k].size() >= 2);
        REQUIRE(lp.size() == ids[k].size() - 1);
        caches.push_back(m.new_cache());
        ForwardRequest r{
            &caches.back(), std::span<const int32_t>(ids[k]).first(ids[k].size() - 1), {}};
        for (size_t i = 0; i + 1 < ids[k].size(); ++i) {
          r.logits_at.push_back(static_cast<int32_t>(i));
          targets.push_back(ids[k][i + 1]);
          want.push_back(lp[i]);
        }
        req.push_back(std::move(r));
      }
      m.forward(req);
      std::vector<double> got(targets.size());
      m.log_probs({}, targets, got);
      for (size_t i = 0; i < got.size(); ++i) {
        INFO("batch from text " << seqs[s0]["text"] << ", scored token " << i << ": kintsugi "
                                << got[i] << ", PyTorch " << want[i]);
        CHECK(std::abs(got[i] - want[i]) < 1e-3);
        worst = std::max(worst, std::abs(got[i] - want[i]));
      }
      scored += got.size();
    }
    if (rank == 0)
      WARN(folder << " (T = " << T << "): " << seqs.size() << " texts, " << scored
                  << " tokens, max |kintsugi - PyTorch| log-prob " << worst);
  }
}
