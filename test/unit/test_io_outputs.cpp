// Outputs never touch what the run did not create: unique temporary and
// backup folders, outputs kept apart from inputs, symbolic links written
// through.
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <fstream>
#include <sstream>

#include "kintsugi/common/error.hpp"
#include "kintsugi/io/atomic_file.hpp"
#include "kintsugi/io/hf_checkpoint.hpp"
#include "test_support.hpp"

using namespace kintsugi;
namespace fs = std::filesystem;

namespace {

void put(const fs::path& p, const std::string& text) {
  fs::create_directories(p.parent_path());
  std::ofstream(p, std::ios::binary) << text;
}

// Entries of `dir` whose name starts with `prefix`.
std::vector<std::string> entries_with(const fs::path& dir, const std::string& prefix) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string n = e.path().filename().string();
    if (n.rfind(prefix, 0) == 0) out.push_back(n);
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::string refusal(const fs::path& out, const std::vector<NamedPath>& inputs) {
  try {
    check_output_apart("--out", out, inputs);
  } catch (const InputError& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("outputs: a user's DIR.partial and DIR.old survive merge outputs", "[io]") {
  test::TempDir tmp;
  put(tmp / "dir.partial/model.safetensors", "user data");
  put(tmp / "dir.old/notes.txt", "user notes");
  {
    HfFolderWriter w(tmp / "dir", false);
    CHECK(w.temp_dir().parent_path() == tmp.path());
    CHECK(w.temp_dir().filename().string().rfind("dir.partial-", 0) == 0);
    // Two writers at once never share a temporary folder.
    HfFolderWriter other(tmp / "dir", false);
    CHECK(other.temp_dir() != w.temp_dir());
    w.write_text("config.json", "{}");
    w.commit();
  }
  CHECK(test::slurp(tmp / "dir/config.json") == "{}");
  {
    HfFolderWriter w(tmp / "dir", true);
    w.write_text("config.json", "{\"v\": 2}");
    w.commit();
  }
  CHECK(test::slurp(tmp / "dir/config.json") == "{\"v\": 2}");
  CHECK_THROWS_AS(HfFolderWriter(tmp / "dir", false), InputError);  // it exists
  // --overwrite replaces a folder only, never a file.
  put(tmp / "file", "x");
  CHECK_THROWS_AS(HfFolderWriter(tmp / "file", true), InputError);
  CHECK(test::slurp(tmp / "file") == "x");
  // Nothing of ours is left, and what was there before is intact.
  CHECK(test::slurp(tmp / "dir.partial/model.safetensors") == "user data");
  CHECK(test::slurp(tmp / "dir.old/notes.txt") == "user notes");
  CHECK(entries_with(tmp.path(), "dir") ==
        std::vector<std::string>{"dir", "dir.old", "dir.partial"});
}

TEST_CASE("outputs: a folder that appears during the write is not replaced", "[io]") {
  test::TempDir tmp;
  HfFolderWriter w(tmp / "out", false);
  w.write_text("config.json", "{}");
  fs::create_directories(tmp / "out");  // someone else's, empty
  CHECK_THROWS_AS(w.commit(), RuntimeError);
  CHECK(fs::is_empty(tmp / "out"));
}

TEST_CASE("outputs: an output that is, contains or lies inside an input is refused", "[io]") {
  test::TempDir tmp;
  put(tmp / "pool/a/model.safetensors", "a");
  put(tmp / "pool/b/model.safetensors", "b");
  put(tmp / "job.yaml", "pool: {}");
  const std::vector<NamedPath> in = {{"checkpoint", tmp / "pool/a"},
                                     {"checkpoint", tmp / "pool/b"},
                                     {"job file", tmp / "job.yaml"},
                                     {"state", tmp / "missing.h5"}};
  const std::string a = (tmp / "pool/a").string();
  CHECK(refusal(tmp / "pool/a", in) ==
        "--out " + a + ": is the checkpoint " + a + "; refusing to write over an input");
  CHECK(refusal(tmp / "pool/a/", in).find(": is the checkpoint " + a) != std::string::npos);
  CHECK(refusal(tmp / "pool/b/../a", in).find(": is the checkpoint " + a) != std::string::npos);
  CHECK(refusal(tmp / "pool", in) == "--out " + (tmp / "pool").string() +
                                         ": contains the checkpoint " + a +
                                         "; refusing to write over an input");
  CHECK(refusal(tmp / "pool/a/merged", in) == "--out " + (tmp / "pool/a/merged").string() +
                                                  ": lies inside the checkpoint " + a +
                                                  "; refusing to write over an input");
  CHECK(refusal(tmp / "pool/a/x/y/z", in).find("lies inside the checkpoint " + a) !=
        std::string::npos);
  CHECK(refusal(tmp / "job.yaml", in).find("is the job file") != std::string::npos);
  // Aliases: a symbolic link to an input, a hard link to an input file.
  fs::create_directory_symlink(tmp / "pool/a", tmp / "alias");
  CHECK(refusal(tmp / "alias", in).find("is the checkpoint " + a) != std::string::npos);
  CHECK(refusal(tmp / "alias/sub", in).find("lies inside the checkpoint " + a) !=
        std::string::npos);
  fs::create_hard_link(tmp / "job.yaml", tmp / "hard.yaml");
  CHECK(refusal(tmp / "hard.yaml", in).find("is the job file") != std::string::npos);
  // Apart: a sibling, a new folder, a name that only starts like an input.
  CHECK(refusal(tmp / "merged", in).empty());
  CHECK(refusal(tmp / "pool/ab", in).empty());
  CHECK(refusal(tmp / "pool/a.partial", in).empty());
  CHECK(refusal(tmp / "missing.h5", in).empty());  // inputs that do not exist are skipped
}

TEST_CASE("outputs: a state behind a symbolic link is written through", "[io]") {
  test::TempDir tmp;
  put(tmp / "real/state.h5", "v1");
  fs::create_directories(tmp / "links");
  fs::create_symlink("../real/state.h5", tmp / "links/state.h5");  // relative link
  fs::create_symlink(tmp / "links/state.h5", tmp / "chain.h5");    // link to a link
  CHECK(fs::weakly_canonical(resolve_write_target(tmp / "chain.h5")) ==
        fs::weakly_canonical(tmp / "real/state.h5"));
  CHECK(resolve_write_target(tmp / "real/state.h5") == tmp / "real/state.h5");
  atomic_replace(
      tmp / "chain.h5", [](const fs::path& t) { write_file_synced(t, "v2"); }, KeepPrevious::Yes);
  CHECK(fs::is_symlink(tmp / "chain.h5"));
  CHECK(fs::is_symlink(tmp / "links/state.h5"));
  CHECK(test::slurp(tmp / "real/state.h5") == "v2");
  CHECK(test::slurp(tmp / "real/state.h5.prev") == "v1");
  CHECK_FALSE(fs::exists(tmp / "chain.h5.prev"));
  CHECK_FALSE(fs::exists(tmp / "links/state.h5.prev"));
  // A dangling link gets its target created.
  fs::create_symlink(tmp / "real/new.h5", tmp / "dangling.h5");
  write_file_atomic(tmp / "dangling.h5", "new");
  CHECK(fs::is_symlink(tmp / "dangling.h5"));
  CHECK(test::slurp(tmp / "real/new.h5") == "new");
  // A loop is refused.
  fs::create_symlink(tmp / "loop2", tmp / "loop1");
  fs::create_symlink(tmp / "loop1", tmp / "loop2");
  CHECK_THROWS_AS(resolve_write_target(tmp / "loop1"), InputError);
}

TEST_CASE("outputs: unique_dir_beside makes fresh folders only", "[io]") {
  test::TempDir tmp;
  const fs::path a = unique_dir_beside(tmp / "x", "old"), b = unique_dir_beside(tmp / "x", "old");
  CHECK(a != b);
  CHECK(fs::is_directory(a));
  CHECK(fs::is_empty(b));
  CHECK(a.filename().string().size() == std::string("x.old-XXXXXX").size());
  CHECK_THROWS_AS(unique_dir_beside(tmp / "no/such/folder/x", "old"), RuntimeError);
}
