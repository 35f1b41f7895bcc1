#!/usr/bin/env bash
# Installs the Debian packages moesim needs, and only those that are missing.
# Called by `make run`, `make test` and `make bench`; needs root to install, else prints the apt-get line.
set -euo pipefail

packages=(
  cmake make g++ pkg-config
  libboost-graph-dev libboost-program-options-dev
  libprotobuf-dev protobuf-compiler
  catch2 libbenchmark-dev
  libopenblas-dev
  gnuplot-nox
  clang libclang-rt-14-dev
  libsimgrid-dev  # test-only: SimGrid, the independent max-min oracle of tests/simgrid
)
# Extra packages for optional test tiers, e.g. MOESIM_EXTRA_PACKAGES="chromium".
if [[ -n "${MOESIM_EXTRA_PACKAGES:-}" ]]; then
  read -r -a extra <<<"$MOESIM_EXTRA_PACKAGES"
  packages+=("${extra[@]}")
fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [[ ${#missing[@]} -eq 0 ]]; then
  exit 0
fi

cmd=(apt-get install -y --no-install-recommends "${missing[@]}")
if [[ $(id -u) -ne 0 ]]; then
  echo "moesim: missing Debian packages: ${missing[*]}" >&2
  echo "moesim: install them as root with:" >&2
  echo "  apt-get update && ${cmd[*]}" >&2
  exit 1
fi

echo "moesim: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
"${cmd[@]}" >/dev/null
