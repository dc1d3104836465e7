// Package onnxpb holds the Go types generated from ONNX's onnx.proto (onnx 1.12, IR version 8).
//
// onnx.proto is copied verbatim from Debian's python3-onnx with a go_package option added;
// scripts/gen-onnx-proto.sh regenerates onnx.pb.go. Code outside package onnx should prefer the
// wrappers in github.com/modelrt/modelrt/onnx.
package onnxpb
