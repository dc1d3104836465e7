#!/usr/bin/env bash
# Regenerates runtime/server/kservepb from grpc_predict_v2.proto (KServe's v2 gRPC protocol).
# Needs protoc (apt-get install -y protobuf-compiler) and the Go plugins at the versions go.mod pins:
#   go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
#   go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.2
set -euo pipefail
cd "$(dirname "$0")/../runtime/server/kservepb"
protoc --go_out=. --go_opt=paths=source_relative \
  --go-grpc_out=. --go-grpc_opt=paths=source_relative grpc_predict_v2.proto
