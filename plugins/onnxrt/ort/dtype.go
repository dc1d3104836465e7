package ort

import (
	ortgo "github.com/yalue/onnxruntime_go"
)

// dtypes maps ONNX element types to the names used by sdk tensors (docs/sdk.md#tasks-and-tensors).
var dtypes = []struct {
	t    ortgo.TensorElementDataType
	name string
	size int
}{
	{ortgo.TensorElementDataTypeFloat, "float32", 4},
	{ortgo.TensorElementDataTypeDouble, "float64", 8},
	{ortgo.TensorElementDataTypeFloat16, "float16", 2},
	{ortgo.TensorElementDataTypeBFloat16, "bfloat16", 2},
	{ortgo.TensorElementDataTypeInt8, "int8", 1},
	{ortgo.TensorElementDataTypeUint8, "uint8", 1},
	{ortgo.TensorElementDataTypeInt16, "int16", 2},
	{ortgo.TensorElementDataTypeUint16, "uint16", 2},
	{ortgo.TensorElementDataTypeInt32, "int32", 4},
	{ortgo.TensorElementDataTypeUint32, "uint32", 4},
	{ortgo.TensorElementDataTypeInt64, "int64", 8},
	{ortgo.TensorElementDataTypeUint64, "uint64", 8},
	{ortgo.TensorElementDataTypeBool, "bool", 1},
}

// dtypeName returns the short name of t ("float32", "int64", ...), or ONNX Runtime's enum name
// for types this package does not carry (strings, complex, float8, int4).
func dtypeName(t ortgo.TensorElementDataType) string {
	for _, d := range dtypes {
		if d.t == t {
			return d.name
		}
	}
	return t.String()
}

// dtypeByName returns the element type and size in bytes of a short name; ok is false for names
// this package does not carry.
func dtypeByName(name string) (t ortgo.TensorElementDataType, size int, ok bool) {
	for _, d := range dtypes {
		if d.name == name {
			return d.t, d.size, true
		}
	}
	return 0, 0, false
}
