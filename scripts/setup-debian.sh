#!/usr/bin/env bash
# One-time set-up on Debian 12 (bookworm) with Node >= 18: the system packages the addon builds
# against, then `npm ci`, which compiles the addon (cmake-js) and the TypeScript.
# Runs as root or through sudo. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -eq 0 ]; then SUDO=(); else SUDO=(sudo); fi
export DEBIAN_FRONTEND=noninteractive

# libopenblas0-pthread: Debian's libtorch calls the generic BLAS, ~27x slower without OpenBLAS.
# make: cmake does not pull a build tool. nlohmann-json3-dev: config and safetensors headers.
# libicu-dev: the CLIP tokenizer's Unicode clean-up. redis-server: the dataset queue's tests
# start a real one (BullMQ); openssl makes the certificate of their TLS (rediss://) one.
# chromium: the studio's browser tests (puppeteer-core drives it).
PACKAGES=(libtorch-dev libopenblas0-pthread cmake make g++ nlohmann-json3-dev libicu-dev redis-server openssl chromium)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ "${#missing[@]}" -eq 0 ]; then
  echo "setup: system packages already installed"
else
  "${SUDO[@]}" apt-get update -q
  "${SUDO[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

export npm_config_fund=false npm_config_audit=false npm_config_update_notifier=false
npm ci
