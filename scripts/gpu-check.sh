#!/usr/bin/env bash
# One command on a GPU machine (no Node, no network): build the core, the native benchmark, the
# parity runner (and the addon, when its headers travel) against the machine's Python torch, run
# the golden-fixture parity on the device in float32, float16 and bfloat16, run the quick native
# benchmark, print one summary table. Stops at the first failure with a line saying which step and
# why; exits 0 only when every step passed. README.md ("Check a GPU machine") says how to run it.
#
#   scripts/gpu-check.sh [--device cuda|cpu] [--dtypes "float32 float16 bfloat16"] [--build-dir DIR]
#                        [--core-lib libovam_core.a] [--deps DIR] [--no-addon] [--time-limit SECONDS]
#   scripts/gpu-check.sh --pack-deps DIR      (here: pack what a bare machine lacks, see pack_deps)
set -uo pipefail

device=cuda
dtypes="float32 float16 bfloat16"
build=build-gpu-check
core_lib=""
deps=""
addon=1
limit=480  # the issue's budget: 8 minutes for the whole check
root=$(cd "$(dirname "$0")/.." && pwd)
started=$SECONDS

# ICU (the tokenizer's Unicode clean-up) and nlohmann_json, for a machine without their -dev
# packages: the ICU headers the core includes, ICU's common library as a static archive (its
# normalisation and case data are compiled in) and a stub for ICU's data library (31 MB, not
# needed by those calls; ICU's own stubdata does the same), nlohmann_json's headers and CMake
# config. About 6 MB; carry DIR.
pack_deps() {
  local dir=$1 icu_inc icu_lib headers
  icu_inc=$(pkg-config --variable=includedir icu-uc) && icu_lib=$(pkg-config --variable=libdir icu-uc) ||
    { echo "gpu-check: --pack-deps needs ICU's development files here (apt-get install libicu-dev)" >&2; return 1; }
  [ -f "$icu_lib/libicuuc.a" ] || { echo "gpu-check: no $icu_lib/libicuuc.a (libicu-dev ships it)" >&2; return 1; }
  [ -d /usr/include/nlohmann ] && [ -d /usr/share/cmake/nlohmann_json ] ||
    { echo "gpu-check: --pack-deps needs nlohmann-json3-dev here" >&2; return 1; }
  rm -rf "$dir" && mkdir -p "$dir/include/unicode" "$dir/lib" "$dir/share/cmake" "$dir/src" || return 1
  # Every ICU header the core's ICU includes pull in (the compiler lists them), and the stub's.
  headers=$( (grep -rhoE '#include <unicode/[a-z0-9_]+\.h>' "$root/native/core"; echo '#include <unicode/udata.h>') | sort -u |
    c++ -M -x c++ -I"$icu_inc" - 2>/dev/null | tr ' \\' '\n\n' | grep "$icu_inc/unicode/")
  [ -n "$headers" ] || { echo "gpu-check: could not list the ICU headers" >&2; return 1; }
  cp $headers "$dir/include/unicode/" && cp "$icu_lib/libicuuc.a" "$dir/lib/" &&
    cp -r /usr/include/nlohmann "$dir/include/" && cp -r /usr/share/cmake/nlohmann_json "$dir/share/cmake/" || return 1
  cat >"$dir/src/icu-stubdata.c" <<'EOF'
/* ICU's data library reduced to its table of contents with no entries (ICU's stubdata): the
   calls the tokenizer makes use data compiled into the common library. */
#include <unicode/udata.h>
#include <unicode/utypes.h>
typedef struct {
  uint16_t headerSize;
  uint8_t magic1, magic2;
  UDataInfo info;
  char padding[8];
  uint32_t count, reserved;
  struct { const char* name; const void* data; } toc[1];
  int fake[4];
} IcuDataHeader;
const IcuDataHeader U_ICUDATA_ENTRY_POINT __attribute__((aligned(16))) = {
  32, 0xda, 0x27,
  {sizeof(UDataInfo), 0, U_IS_BIG_ENDIAN, U_CHARSET_FAMILY, sizeof(UChar), 0, {0x54, 0x6f, 0x43, 0x50}, {1, 0, 0, 0}, {0, 0, 0, 0}},
  {0}, 0, 0, {{0, 0}}, {0}};
EOF
  echo "gpu-check: packed ICU $(pkg-config --modversion icu-uc) (static) and nlohmann_json into $dir ($(du -sh "$dir" | cut -f1)); carry it"
}

while [ $# -gt 0 ]; do
  case $1 in
    --device) device=$2; shift 2 ;;
    --dtypes) dtypes=$2; shift 2 ;;
    --build-dir) build=$2; shift 2 ;;
    --core-lib) core_lib=$(realpath "$2"); shift 2 ;;
    --deps) deps=$(realpath "$2"); shift 2 ;;
    --no-addon) addon=0; shift ;;
    --time-limit) limit=$2; shift 2 ;;
    --pack-deps) pack_deps "$2"; exit $? ;;
    *) echo "gpu-check: unknown option $1 (see the header of scripts/gpu-check.sh)" >&2; exit 2 ;;
  esac
done

cd "$root" || exit 2
mkdir -p "$build/logs" || exit 2
build=$(realpath "$build")
[ -z "$deps" ] && [ -d .gpu-deps ] && deps=$(realpath .gpu-deps)

rows=()
summary() {
  printf '\n%-28s %-6s %8s  %s\n' "step" "result" "seconds" "detail"
  local r
  for r in "${rows[@]}"; do printf '%s\n' "$r"; done
  # The device machine returns what is written under $OUT.
  if [ -n "${OUT:-}" ] && [ -d "${OUT:-}" ]; then cp "$build"/logs/*.log "$OUT/" 2>/dev/null; fi
}
row() { rows+=("$(printf '%-28s %-6s %8s  %s' "$1" "$2" "$3" "$4")"); }
fail() {
  row "$1" FAIL "$2" "$3"
  summary
  echo
  echo "gpu-check: FAILED at \"$1\": $3 (log: $build/logs/$4.log)"
  exit 1
}

# step NAME LOG DETAIL-COMMAND -- COMMAND...: runs COMMAND with what is left of the time limit,
# its output to the terminal and the log; DETAIL-COMMAND turns the log into the row's detail.
step() {
  local name=$1 log=$2 detail=$3 t0=$SECONDS left rc
  shift 4
  left=$((limit - (SECONDS - started)))
  [ "$left" -gt 0 ] || fail "$name" 0 "the time limit of ${limit} s was spent before this step" "$log"
  echo "== $name"
  timeout "$left" "$@" 2>&1 | tee "$build/logs/$log.log"
  rc=${PIPESTATUS[0]}
  local took=$((SECONDS - t0)) what
  what=$($detail "$build/logs/$log.log")
  [ "$rc" -eq 124 ] && fail "$name" "$took" "stopped at the time limit of ${limit} s" "$log"
  [ "$rc" -eq 0 ] || fail "$name" "$took" "exit $rc: ${what:-$(tail -n 1 "$build/logs/$log.log")}" "$log"
  row "$name" ok "$took" "$what"
}

# Row details read from each step's log.
torch_line() { paste -sd ";" "$1"; }
configure_line() { grep -o 'ovam: libtorch .*' "$1" | tail -n 1; }
build_line() { echo "$(ls "$build"/ovam_parity "$build"/ovam_bench "$build"/ovam.node 2>/dev/null | xargs -n1 basename | tr '\n' ' ')"; }
# The verdict line, and the first failure under it.
parity_line() { grep -A1 -E '^ovam_parity .*(passed|FAILED)' "$1" | sed 's/^ovam_parity //; s/^ *//' | paste -sd " "; }
bench_line() {
  python3 - "$build/logs/bench.json" <<'EOF' 2>/dev/null
import json, sys
r = json.load(open(sys.argv[1]))
ms = {x["model"] + " " + x["case"]: x["median_s"] * 1e3 for x in r["cases"]}
sgemm = r["ceilings"]["sgemm_gflops"]
unet = ms.get("tiny-sd1 UNet step (CFG batch 2), capture off", 0)
attribute = ms.get("tiny-sd1 attribute 1-token, softmax, 30 steps", 0)
print(f"SGEMM {sgemm:.0f} GFLOP/s, tiny-sd1 UNet step {unet:.2f} ms, 1-token map {attribute:.2f} ms")
EOF
}

# libtorch: the machine's Python torch unless LIBTORCH or LIBTORCH_USE_PYTORCH says otherwise.
python=${LIBTORCH_PYTHON:-python3}
if [ -z "${LIBTORCH:-}" ] && [ -z "${LIBTORCH_USE_PYTORCH:-}" ] && "$python" -c 'import torch' 2>/dev/null; then
  export LIBTORCH_USE_PYTORCH=1
fi
# find_package(Torch) of a CUDA build looks for the CUDA toolkit through nvcc.
if [ -z "${CUDACXX:-}" ] && ! command -v nvcc >/dev/null && [ -x /usr/local/cuda/bin/nvcc ]; then export PATH=/usr/local/cuda/bin:$PATH; fi

probe='
  if [ "${LIBTORCH_USE_PYTORCH:-}" = 1 ]; then
    "${LIBTORCH_PYTHON:-python3}" -c "import torch; print(f\"python torch {torch.__version__}, CUDA {torch.version.cuda}, cuda available: {torch.cuda.is_available()}, C++11 ABI: {torch.compiled_with_cxx11_abi()}\")"
  else
    echo "libtorch from ${LIBTORCH:-the system}"
  fi'
[ "$device" = cpu ] || probe+='; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader'
step "libtorch" torch torch_line -- bash -c "$probe"

config=(-S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DOVAM_BUILD_BENCH=ON -DOVAM_BUILD_PARITY=ON)
[ -n "$core_lib" ] && config+=("-DOVAM_PREBUILT_CORE=$core_lib")
if [ -n "$deps" ]; then
  # ICU and nlohmann_json from the packed folder; the ICU data stub joins every link.
  cc -c "$deps/src/icu-stubdata.c" -I"$deps/include" -o "$build/icu-stubdata.o" ||
    fail "configure" 0 "could not compile $deps/src/icu-stubdata.c" configure
  config+=("-DCMAKE_PREFIX_PATH=$deps" "-DICU_ROOT=$deps" "-DCMAKE_CXX_STANDARD_LIBRARIES=$build/icu-stubdata.o -ldl -lpthread")
fi
targets=(ovam_parity ovam_bench)
# The addon compiles without Node from the Node-API headers (node_modules/node-api-headers and
# node-addon-api, carried); loading it needs Node.
if [ "$addon" = 1 ] && [ -d node_modules/node-api-headers/include ] && [ -d node_modules/node-addon-api ] && [ -z "$core_lib" ]; then
  config+=(-DCMAKE_JS_VERSION=gpu-check "-DCMAKE_JS_INC=$root/node_modules/node-api-headers/include"
           "-DNODE_ADDON_API_DIR=$root/node_modules/node-addon-api" "-DCMAKE_LIBRARY_OUTPUT_DIRECTORY=$build")
  targets+=(ovam_addon)
fi
step "configure" configure configure_line -- cmake "${config[@]}"
step "build ${targets[*]}" build build_line -- cmake --build "$build" --parallel "$(nproc)" --target "${targets[@]}"

for dtype in $dtypes; do
  step "parity $device $dtype" "parity-$dtype" parity_line -- "$build/ovam_parity" --device "$device" --dtype "$dtype" --root "$root"
done
step "bench $device --quick" bench bench_line -- "$build/ovam_bench" --device "$device" --quick --runs 3 --json "$build/logs/bench.json"

summary
echo
echo "gpu-check: all steps passed in $((SECONDS - started)) s"
