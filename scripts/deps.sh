#!/usr/bin/env bash
# Installs the Debian packages chipmesh needs to build and test, only those
# that are missing. Quiet and idempotent when everything is present.
set -euo pipefail

# The Python package builds against Debian's interpreter (/usr/bin/python3),
# where python3-numpy and python3-pytest install.
packages=(cmake ninja-build g++ libgtest-dev libcli11-dev nlohmann-json3-dev
          openmpi-bin libopenmpi-dev iproute2
          pybind11-dev python3-dev python3-numpy python3-pytest)

missing=()
for pkg in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
  if [[ "$status" != "install ok installed" ]]; then
    missing+=("$pkg")
  fi
done

if ((${#missing[@]} == 0)); then
  exit 0
fi

echo "deps.sh: installing ${missing[*]}" >&2
if [[ $(id -u) -eq 0 ]]; then
  sudo=()
elif command -v sudo >/dev/null 2>&1; then
  sudo=(sudo)
else
  echo "deps.sh: missing packages (${missing[*]}) and not root, no sudo; install them and retry" >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
