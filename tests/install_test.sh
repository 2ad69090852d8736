#!/usr/bin/env bash
# The installed package, used as a user would use it: `cmake --install` into a temporary prefix, the installed
# `ringmoe --version`, then tests/install_consumer built against that prefix twice, with
# find_package(ringmoe CONFIG) and with pkg-config, each run on the tiny test model. Registered with ctest by
# tests/CMakeLists.txt:
#   tests/install_test.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build="$(cd "$1" && pwd)"
source_dir="$(cd "$2" && pwd)"
work="$(mktemp -d "${TMPDIR:-/tmp}/ringmoe_install_test.XXXXXX")"
trap 'rm -rf "${work}"' EXIT
prefix="${work}/prefix"
consumer="${source_dir}/tests/install_consumer"
model="${source_dir}/tests/data/models/tiny-qwen3-moe"
# The first 8 of golden.json's greedy tokens after the prompt ids {399} (computed in f32, as the consumer does).
expected="tokens: 182 382 706 250 358 889 255 748"

# Runs a consumer binary on the model and checks its tokens.
check_consumer() {
  local name="$1" binary="$2" output
  output="$("${binary}" "${model}")"
  echo "${name}: ${output//$'\n'/; }"
  if ! grep -qxF "${expected}" <<<"${output}"; then
    echo "install_test: ${name} consumer printed other tokens than '${expected}'" >&2
    exit 1
  fi
}

cmake --install "${build}" --prefix "${prefix}" >/dev/null
version="$("${prefix}/bin/ringmoe" --version)"
echo "installed: ${version}"
if ! grep -qE '^ringmoe [0-9]+\.[0-9]+\.[0-9]+ \(git [0-9a-z]+, CUDA built in: (yes|no)\)$' <<<"${version}"; then
  echo "install_test: unexpected --version line" >&2
  exit 1
fi

# CMake: find_package(ringmoe CONFIG REQUIRED) and ringmoe::runtime, found through CMAKE_PREFIX_PATH.
cmake -S "${consumer}" -B "${work}/cmake-consumer" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="${prefix}" >"${work}/cmake-configure.log" || { cat "${work}/cmake-configure.log"; exit 1; }
# The package must be the one just installed, not one under /usr or /usr/local.
ringmoe_dir="$(sed -n 's/^ringmoe_DIR:PATH=//p' "${work}/cmake-consumer/CMakeCache.txt")"
if [[ "${ringmoe_dir}" != "${prefix}"/* ]]; then
  echo "install_test: find_package(ringmoe) found ${ringmoe_dir}, not the package in ${prefix}" >&2
  exit 1
fi
cmake --build "${work}/cmake-consumer" >"${work}/cmake-build.log" || { cat "${work}/cmake-build.log"; exit 1; }
check_consumer find_package "${work}/cmake-consumer/install_consumer"

# pkg-config: the flags of ringmoe.pc alone, with the compiler CMake used. A sysroot (PKG_CONFIG_SYSROOT_DIR, as
# the GPU machine's staged dependencies set) would be put before every path of ringmoe.pc too, the temporary
# prefix and CUDA's included, so that half cannot be run there.
if [[ -n "${PKG_CONFIG_SYSROOT_DIR:-}" ]]; then
  echo "install_test: passed (pkg-config consumer not built: PKG_CONFIG_SYSROOT_DIR=${PKG_CONFIG_SYSROOT_DIR})"
  exit 0
fi
pc_file="$(find "${prefix}" -name ringmoe.pc)"
flags="$(PKG_CONFIG_PATH="$(dirname "${pc_file}")${PKG_CONFIG_PATH:+:${PKG_CONFIG_PATH}}" pkg-config --cflags --libs ringmoe)"
compiler="$(sed -n 's/^CMAKE_CXX_COMPILER:[A-Z]*=//p' "${build}/CMakeCache.txt")"
# shellcheck disable=SC2086  # the flags are separate words
"${compiler:-c++}" -std=c++20 -O2 "${consumer}/main.cc" -o "${work}/pkg-config-consumer" ${flags}
check_consumer pkg-config "${work}/pkg-config-consumer"
echo "install_test: passed"
