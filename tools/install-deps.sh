#!/usr/bin/env bash
# Installs what llama31 needs to build and test on Debian 12 (run as root, or with sudo available).
set -euo pipefail
packages=(build-essential cmake ninja-build pkg-config googletest libgtest-dev libbenchmark-dev
  nlohmann-json3-dev libabsl-dev libpcre2-dev libcli11-dev libfmt-dev libomp-dev python3 python3-jinja2
  libcpp-httplib-dev libssl-dev zlib1g-dev libbrotli-dev curl chromium)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "install-deps: installing ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "install-deps: all Debian packages present"
fi
