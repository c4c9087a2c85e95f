#!/usr/bin/env bash
# Installs every Debian package that the build, the tests and the demo need.
# Idempotent: prints nothing and touches nothing when all are present.
set -euo pipefail

packages=(
  build-essential cmake pkg-config ninja-build git
  openmpi-bin libopenmpi-dev
  libhdf5-dev hdf5-tools
  libyaml-cpp-dev nlohmann-json3-dev catch2 libfmt-dev libspdlog-dev libcli11-dev
  libeigen3-dev libbenchmark-dev libopenblas-dev libopenblas0-openmp
  clang clang-format libclang-rt-14-dev
  python3 python3-numpy python3-h5py python3-yaml python3-torch
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
[[ ${#missing[@]} -eq 0 ]] && exit 0

echo "install-deps: installing ${missing[*]}" >&2
sudo_cmd=()
[[ $(id -u) -ne 0 ]] && sudo_cmd=(sudo)
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -qq >&2
"${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
