#!/usr/bin/env bash
# Regenerates onnx/onnxpb/onnx.pb.go from onnx/onnxpb/onnx.proto.
#
# onnx/onnxpb/onnx.proto is onnx 1.12's onnx.proto (IR version 8), copied from Debian's python3-onnx
# (/usr/lib/python3/dist-packages/onnx/onnx.proto) with one line added: the go_package option.
# Pass --refresh to copy it again from that path (or from $ONNX_PROTO) before generating.
#
# Needs: protoc (Debian package protobuf-compiler: apt-get install -y protobuf-compiler) and
# protoc-gen-go on PATH (go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12, the
# version of google.golang.org/protobuf in go.mod).
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
dir=$repo/onnx/onnxpb
src=${ONNX_PROTO:-/usr/lib/python3/dist-packages/onnx/onnx.proto}

if [ "${1:-}" = "--refresh" ]; then
  [ -f "$src" ] || { echo "gen-onnx-proto: $src not found (apt-get install -y python3-onnx, or set ONNX_PROTO)" >&2; exit 1; }
  # Insert the go_package option right after the package line.
  sed 's|^package onnx;$|package onnx;\n\noption go_package = "github.com/modelrt/modelrt/onnx/onnxpb";|' "$src" >"$dir/onnx.proto"
fi

command -v protoc >/dev/null || { echo "gen-onnx-proto: protoc not found (apt-get install -y protobuf-compiler)" >&2; exit 1; }
command -v protoc-gen-go >/dev/null || { echo "gen-onnx-proto: protoc-gen-go not found (go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12)" >&2; exit 1; }

cd "$dir"
protoc --proto_path=. --go_out=. --go_opt=paths=source_relative onnx.proto
echo "generated $dir/onnx.pb.go with $(protoc --version) and $(protoc-gen-go --version)"
