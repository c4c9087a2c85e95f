#include "kintsugi/service/report_html.hpp"

#include <fmt/format.h>

#include <cctype>
#include <string_view>
#include <utility>

#include "kintsugi/common/error.hpp"
#include "kintsugi/io/atomic_file.hpp"
#include "kintsugi/service/report.hpp"

// The page's assets, linked into the executable as bytes (the assembler's
// .incbin; paths from CMake, which rebuilds this file when they change): the
// page script and style (src/service/report_page.*), the three charting
// libraries and their licences. Each is NUL-terminated; NAME_end marks the
// byte after its text.
#if defined(KINTSUGI_HAVE_REPORT_WEB)
#define KINTSUGI_ASSET(sym, file)                                                           \
  __asm__(".pushsection .rodata\n.global " #sym "\n.global " #sym "_end\n.balign 16\n" #sym \
          ":\n.incbin \"" file "\"\n" #sym "_end:\n.byte 0\n.popsection\n");                \
  extern "C" const char sym[];                                                              \
  extern "C" const char sym##_end[];
KINTSUGI_ASSET(kintsugi_page_js, KINTSUGI_REPORT_PAGE_JS)
KINTSUGI_ASSET(kintsugi_page_css, KINTSUGI_REPORT_PAGE_CSS)
KINTSUGI_ASSET(kintsugi_vega_js, KINTSUGI_VEGA_JS)
KINTSUGI_ASSET(kintsugi_vega_lite_js, KINTSUGI_VEGA_LITE_JS)
KINTSUGI_ASSET(kintsugi_vega_embed_js, KINTSUGI_VEGA_EMBED_JS)
KINTSUGI_ASSET(kintsugi_vega_license, KINTSUGI_VEGA_LICENSE)
KINTSUGI_ASSET(kintsugi_vega_lite_license, KINTSUGI_VEGA_LITE_LICENSE)
KINTSUGI_ASSET(kintsugi_vega_embed_license, KINTSUGI_VEGA_EMBED_LICENSE)
#define KINTSUGI_ASSET_TEXT(sym) std::string_view(sym, static_cast<size_t>(sym##_end - sym))
#endif

namespace kintsugi {

namespace {

[[maybe_unused]] constexpr const char* kNoPageScripts =
    "this kintsugi was built without the HTML report's charting library (the npm packages in "
    "tools/report-web): run scripts/install-deps.sh, then rebuild";

#if defined(KINTSUGI_HAVE_REPORT_WEB)
// A script as it may sit inside <script>: without its source-map comment (a
// browser's developer tools would fetch the map: no network from the page),
// and refused if it could end the element early.
std::string inline_script(std::string_view js, std::string_view name) {
  std::string out(js);
  for (size_t at; (at = out.find("//# sourceMappingURL=")) != std::string::npos;) {
    const size_t end = out.find('\n', at);
    out.erase(at, end == std::string::npos ? std::string::npos : end - at);
  }
  std::string lower = out;
  for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (lower.find("</script") != std::string::npos || lower.find("<!--") != std::string::npos)
    throw RuntimeError(
        fmt::format("report page: {} holds '</script' or '<!--' and cannot be "
                    "inlined",
                    name));
  return out;
}

// Text inside <pre> or <title>: & < > escaped.
std::string html_text(std::string_view text) {
  std::string out;
  for (char c : text) {
    if (c == '&')
      out += "&amp;";
    else if (c == '<')
      out += "&lt;";
    else if (c == '>')
      out += "&gt;";
    else
      out.push_back(c);
  }
  return out;
}
#endif

}  // namespace

bool report_html_available() {
#if defined(KINTSUGI_HAVE_REPORT_WEB)
  return true;
#else
  return false;
#endif
}

std::string report_html(const RunState& state) {
#if defined(KINTSUGI_HAVE_REPORT_WEB)
  // The data as JSON inside <script type="application/json">: every "<"
  // written as "\u003c" (the same string to JSON.parse), so no text in it
  // ("</script>", "<!--<script>" in an error message) can end the element
  // or change how the browser reads it.
  std::string data = report_json(state).dump();
  for (size_t at = 0; (at = data.find('<', at)) != std::string::npos; at += 6)
    data.replace(at, 1, "\\u003c");
  // The page's constant parts (about 1 MB of style, libraries and licences),
  // checked and assembled once per process: `optimize --html` writes a page
  // after every generation.
  struct Parts {
    std::string head, body;
  };
  static const Parts parts = [] {
    Parts p;
    p.head += "<style>\n";
    p.head += KINTSUGI_ASSET_TEXT(kintsugi_page_css);
    p.head += "</style>\n";
    for (auto [js, name] : {std::pair{KINTSUGI_ASSET_TEXT(kintsugi_vega_js), "vega"},
                            std::pair{KINTSUGI_ASSET_TEXT(kintsugi_vega_lite_js), "vega-lite"},
                            std::pair{KINTSUGI_ASSET_TEXT(kintsugi_vega_embed_js), "vega-embed"}})
      p.head += "<script>\n" + inline_script(js, name) + "\n</script>\n";
    p.body += "<script>\n";
    p.body += inline_script(KINTSUGI_ASSET_TEXT(kintsugi_page_js), "report_page.js");
    p.body +=
        "\n</script>\n<footer id=\"licences\"><details><summary>Licences of the inlined "
        "libraries (vega, vega-lite, vega-embed)</summary><pre>";
    for (auto text : {KINTSUGI_ASSET_TEXT(kintsugi_vega_license),
                      KINTSUGI_ASSET_TEXT(kintsugi_vega_lite_license),
                      KINTSUGI_ASSET_TEXT(kintsugi_vega_embed_license)})
      p.body += html_text(text) + "\n";
    p.body += "</pre></details></footer>\n</body></html>\n";
    return p;
  }();
  const std::string job = std::filesystem::path(state.meta.job_file).filename().string();
  std::string page;
  page.reserve(data.size() + parts.head.size() + parts.body.size() + 1024);
  page += "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n";
  page += "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n";
  page += fmt::format("<title>kintsugi report{}</title>\n",
                      job.empty() ? std::string() : ": " + html_text(job));
  page += parts.head;
  page += "<script type=\"application/json\" id=\"kintsugi-report-data\">" + data + "</script>\n";
  page += "</head><body><main id=\"report\"></main>\n";
  page += parts.body;
  return page;
#else
  (void)state;
  throw RuntimeError(kNoPageScripts);
#endif
}

void check_report_html_target(const std::filesystem::path& path,
                              const std::vector<NamedPath>& inputs) {
  if (!report_html_available())
    throw_input("{}: cannot write the page: {}", path.string(), kNoPageScripts);
  std::error_code ec;
  const auto parent = path.parent_path().empty() ? std::filesystem::path(".") : path.parent_path();
  if (!std::filesystem::is_directory(parent, ec))
    throw_input("{}: cannot write the page: folder {} does not exist", path.string(),
                parent.string());
  if (std::filesystem::is_directory(path, ec))
    throw_input("{}: cannot write the page: it is a folder", path.string());
  check_output_apart("--html", path, inputs);
}

void write_report_html(const std::filesystem::path& path, const RunState& state) {
  check_report_html_target(path);
  write_file_atomic(path, report_html(state));
}

}  // namespace kintsugi
