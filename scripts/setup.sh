#!/usr/bin/env bash
# Installs what a fresh machine lacks for modelrt's tests: the Debian packages the tests use and
# the pinned ONNX Runtime library. Idempotent; prints what it does.
#
#   libonnx-testdata  ONNX's backend node tests, run through ONNX Runtime as a sanity suite
#   npm               fetches the ONNX Runtime library (scripts/install-onnxruntime.sh)
#   chromium          the headless browser the playground test drives (runtime/server/ui_test.go)
set -euo pipefail
cd "$(dirname "$0")/.."

command -v go >/dev/null || { echo "setup: Go 1.26 is required (https://go.dev/dl)" >&2; exit 1; }

need=()
[ -d /usr/share/libonnx-testdata/data/node ] || need+=(libonnx-testdata)
command -v npm >/dev/null || need+=(npm)
command -v chromium >/dev/null || need+=(chromium)
if [ ${#need[@]} -gt 0 ]; then
  sudo=""
  if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null; then sudo=sudo; else
      echo "setup: please install as root: apt-get install -y ${need[*]}" >&2; exit 1
    fi
  fi
  echo "setup: installing ${need[*]} with apt-get"
  $sudo apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q "${need[@]}" >/dev/null
fi

scripts/install-onnxruntime.sh
go mod download
