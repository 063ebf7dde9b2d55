#!/usr/bin/env bash
# The NEON kernels (AArch64), cross-built on an x86-64 Debian 12 machine and tested under qemu: the
# kernels stage, util and the kernel tests alone (tools/kernel-tests, cmake/aarch64-linux-gnu.cmake), run
# twice, on qemu's 'max' CPU (the SDOT int8 kernels) and on a Cortex-A53 (no dot product: the widening
# ones). Every test compares each level the CPU lists (neon, scalar) against the scalar twins and float64.
# Not part of tools/test.sh. Installs g++-aarch64-linux-gnu and qemu-user when missing (root or sudo).
# LLAMA31_NEON_BUILD sets the build folder (build/neon); LLAMA31_NEON_CPUS the qemu CPU models.
set -euo pipefail
cd "$(dirname "$0")/.."
packages=(g++-aarch64-linux-gnu qemu-user googletest libfmt-dev cmake ninja-build)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "test-neon: installing ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
build=${LLAMA31_NEON_BUILD:-build/neon}
launcher=()
if command -v ccache >/dev/null; then
  launcher=(-DCMAKE_C_COMPILER_LAUNCHER=ccache -DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
fi
cmake -S tools/kernel-tests -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_TOOLCHAIN_FILE="$PWD/cmake/aarch64-linux-gnu.cmake" "${launcher[@]}"
cmake --build "$build" -j "$(nproc)"
for cpu in ${LLAMA31_NEON_CPUS:-max cortex-a53}; do
  echo "test-neon: kernel tests under qemu-aarch64 -cpu $cpu"
  QEMU_CPU=$cpu ctest --test-dir "$build" -j "$(nproc)" --output-on-failure
done
