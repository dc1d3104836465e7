#!/usr/bin/env bash
# Installs the pinned ONNX Runtime CPU library (1.30.0) into .deps/onnxruntime/ of this repository.
#
# Route: ONNX Runtime has no Debian package; the official CPU build ships inside the npm package
# onnxruntime-node. `npm pack` fetches the tarball without running its install scripts (a plain
# `npm install` would run a postinstall that downloads CUDA parts). The library is checked against a
# pinned sha256 before it is used.
#
# Usage: scripts/install-onnxruntime.sh [DEST_DIR]   (default: <repo>/.deps/onnxruntime)
# The Go side finds it through ONNXRUNTIME_SHARED_LIBRARY_PATH, then this default (docs/onnxruntime.md).
set -euo pipefail

ORT_VERSION=1.30.0
ORT_SHA256=ffb75a925ba05e47b235bb66e3e3911714a80b328a9c9425539feb204aa32a23
ORT_MEMBER=package/bin/napi-v6/linux/x64/libonnxruntime.so.1

repo=$(cd "$(dirname "$0")/.." && pwd)
dest=${1:-$repo/.deps/onnxruntime}
lib=$dest/libonnxruntime.so.1

have_sha() { [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$ORT_SHA256" ]; }

if have_sha "$lib"; then
  echo "onnxruntime $ORT_VERSION already installed at $lib"
  exit 0
fi
case "$(uname -sm)" in
  "Linux x86_64") ;;
  *) echo "install-onnxruntime: only linux/x86_64 is pinned here (got $(uname -sm))" >&2; exit 1 ;;
esac
command -v npm >/dev/null || { echo "install-onnxruntime: npm is required (apt-get install -y npm)" >&2; exit 1; }

work=$(mktemp -d "$repo/.deps/ort-download.XXXXXX" 2>/dev/null || { mkdir -p "$repo/.deps"; mktemp -d "$repo/.deps/ort-download.XXXXXX"; })
trap 'rm -rf "$work"' EXIT
echo "fetching onnxruntime-node@$ORT_VERSION with npm pack (about 113 MB)..."
(cd "$work" && npm pack --silent "onnxruntime-node@$ORT_VERSION" >/dev/null)
tar -xzf "$work/onnxruntime-node-$ORT_VERSION.tgz" -C "$work" "$ORT_MEMBER"
if ! have_sha "$work/$ORT_MEMBER"; then
  echo "install-onnxruntime: sha256 mismatch for $ORT_MEMBER (want $ORT_SHA256)" >&2
  exit 1
fi
mkdir -p "$dest"
install -m 0644 "$work/$ORT_MEMBER" "$lib"
echo "installed onnxruntime $ORT_VERSION at $lib"
