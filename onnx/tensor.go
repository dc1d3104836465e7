package onnx

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"github.com/modelrt/modelrt/onnx/onnxpb"
)

// ErrDataType reports a tensor element type that an operation does not handle.
var ErrDataType = errors.New("onnx: unsupported data type")

// DataType is an ONNX tensor element type (TensorProto.DataType).
type DataType = onnxpb.TensorProto_DataType

// DTypeName returns the short name used in summaries and errors: float32, int64, bool, ...
func DTypeName(dt DataType) string {
	switch dt {
	case onnxpb.TensorProto_FLOAT:
		return "float32"
	case onnxpb.TensorProto_DOUBLE:
		return "float64"
	case onnxpb.TensorProto_FLOAT16:
		return "float16"
	case onnxpb.TensorProto_BFLOAT16:
		return "bfloat16"
	case onnxpb.TensorProto_INT8:
		return "int8"
	case onnxpb.TensorProto_INT16:
		return "int16"
	case onnxpb.TensorProto_INT32:
		return "int32"
	case onnxpb.TensorProto_INT64:
		return "int64"
	case onnxpb.TensorProto_UINT8:
		return "uint8"
	case onnxpb.TensorProto_UINT16:
		return "uint16"
	case onnxpb.TensorProto_UINT32:
		return "uint32"
	case onnxpb.TensorProto_UINT64:
		return "uint64"
	case onnxpb.TensorProto_BOOL:
		return "bool"
	case onnxpb.TensorProto_STRING:
		return "string"
	case onnxpb.TensorProto_COMPLEX64:
		return "complex64"
	case onnxpb.TensorProto_COMPLEX128:
		return "complex128"
	}
	return fmt.Sprintf("dtype(%d)", int32(dt))
}

// ElemSize returns the size in bytes of one element of dt, or 0 for strings and unknown types.
func ElemSize(dt DataType) int {
	switch dt {
	case onnxpb.TensorProto_BOOL, onnxpb.TensorProto_INT8, onnxpb.TensorProto_UINT8:
		return 1
	case onnxpb.TensorProto_INT16, onnxpb.TensorProto_UINT16, onnxpb.TensorProto_FLOAT16, onnxpb.TensorProto_BFLOAT16:
		return 2
	case onnxpb.TensorProto_INT32, onnxpb.TensorProto_UINT32, onnxpb.TensorProto_FLOAT:
		return 4
	case onnxpb.TensorProto_INT64, onnxpb.TensorProto_UINT64, onnxpb.TensorProto_DOUBLE, onnxpb.TensorProto_COMPLEX64:
		return 8
	case onnxpb.TensorProto_COMPLEX128:
		return 16
	}
	return 0
}

// NumElements returns the product of dims (1 for a scalar), or -1 if a dim is negative or the
// product overflows.
func NumElements(dims []int64) int64 {
	n := int64(1)
	for _, d := range dims {
		if d < 0 || (d > 0 && n > math.MaxInt64/d) {
			return -1
		}
		n *= d
	}
	return n
}

// RawData returns the little-endian bytes of an inline tensor: raw_data as stored, or the typed
// repeated fields (float_data, int32_data, ...) re-encoded. Strings and external tensors are an
// error (see Model.TensorBytes for the latter). The length is checked against dims.
func RawData(t *onnxpb.TensorProto) ([]byte, error) {
	dt := DataType(t.GetDataType())
	size := ElemSize(dt)
	if size == 0 {
		return nil, fmt.Errorf("%w: tensor %q: %s", ErrDataType, t.GetName(), DTypeName(dt))
	}
	if isExternal(t) {
		return nil, fmt.Errorf("%w: tensor %q is stored in an external file", ErrExternalData, t.GetName())
	}
	n := NumElements(t.Dims)
	if n < 0 || n > math.MaxInt32 {
		return nil, fmt.Errorf("onnx: tensor %q: bad dims %v", t.GetName(), t.Dims)
	}
	if t.RawData != nil {
		if int64(len(t.RawData)) != n*int64(size) {
			return nil, fmt.Errorf("onnx: tensor %q: raw_data has %d bytes, dims %v of %s need %d", t.GetName(), len(t.RawData), t.Dims, DTypeName(dt), n*int64(size))
		}
		return t.RawData, nil
	}
	out := make([]byte, 0, n*int64(size))
	le := binary.LittleEndian
	var count int
	switch dt {
	case onnxpb.TensorProto_FLOAT, onnxpb.TensorProto_COMPLEX64:
		for _, v := range t.FloatData {
			out = le.AppendUint32(out, math.Float32bits(v))
		}
		count = len(t.FloatData)
		if dt == onnxpb.TensorProto_COMPLEX64 {
			count /= 2
		}
	case onnxpb.TensorProto_DOUBLE, onnxpb.TensorProto_COMPLEX128:
		for _, v := range t.DoubleData {
			out = le.AppendUint64(out, math.Float64bits(v))
		}
		count = len(t.DoubleData)
		if dt == onnxpb.TensorProto_COMPLEX128 {
			count /= 2
		}
	case onnxpb.TensorProto_INT64:
		for _, v := range t.Int64Data {
			out = le.AppendUint64(out, uint64(v))
		}
		count = len(t.Int64Data)
	case onnxpb.TensorProto_UINT32, onnxpb.TensorProto_UINT64:
		for _, v := range t.Uint64Data {
			if size == 4 {
				out = le.AppendUint32(out, uint32(v))
			} else {
				out = le.AppendUint64(out, v)
			}
		}
		count = len(t.Uint64Data)
	default: // 8/16-bit ints, bool, float16, bfloat16 and int32 live in int32_data
		for _, v := range t.Int32Data {
			switch size {
			case 1:
				out = append(out, byte(v))
			case 2:
				out = le.AppendUint16(out, uint16(v))
			default:
				out = le.AppendUint32(out, uint32(v))
			}
		}
		count = len(t.Int32Data)
	}
	if int64(count) != n {
		return nil, fmt.Errorf("onnx: tensor %q: %d values, dims %v need %d", t.GetName(), count, t.Dims, n)
	}
	return out, nil
}

// Float32s decodes a float32 (or float16/bfloat16/float64, converted) inline tensor.
func Float32s(t *onnxpb.TensorProto) ([]float32, error) {
	raw, err := RawData(t)
	if err != nil {
		return nil, err
	}
	return DecodeFloat32s(DataType(t.GetDataType()), raw, t.GetName())
}

// DecodeFloat32s converts little-endian raw bytes of a floating type to float32.
func DecodeFloat32s(dt DataType, raw []byte, name string) ([]float32, error) {
	le := binary.LittleEndian
	switch dt {
	case onnxpb.TensorProto_FLOAT:
		out := make([]float32, len(raw)/4)
		for i := range out {
			out[i] = math.Float32frombits(le.Uint32(raw[4*i:]))
		}
		return out, nil
	case onnxpb.TensorProto_DOUBLE:
		out := make([]float32, len(raw)/8)
		for i := range out {
			out[i] = float32(math.Float64frombits(le.Uint64(raw[8*i:])))
		}
		return out, nil
	case onnxpb.TensorProto_FLOAT16:
		out := make([]float32, len(raw)/2)
		for i := range out {
			out[i] = Float16ToFloat32(le.Uint16(raw[2*i:]))
		}
		return out, nil
	case onnxpb.TensorProto_BFLOAT16:
		out := make([]float32, len(raw)/2)
		for i := range out {
			out[i] = math.Float32frombits(uint32(le.Uint16(raw[2*i:])) << 16)
		}
		return out, nil
	}
	return nil, fmt.Errorf("%w: tensor %q: %s is not a floating type", ErrDataType, name, DTypeName(dt))
}

// Int64s decodes an integer or bool inline tensor, widening to int64.
func Int64s(t *onnxpb.TensorProto) ([]int64, error) {
	raw, err := RawData(t)
	if err != nil {
		return nil, err
	}
	dt := DataType(t.GetDataType())
	le := binary.LittleEndian
	size := ElemSize(dt)
	out := make([]int64, len(raw)/size)
	for i := range out {
		b := raw[size*i:]
		switch dt {
		case onnxpb.TensorProto_INT64, onnxpb.TensorProto_UINT64:
			out[i] = int64(le.Uint64(b))
		case onnxpb.TensorProto_INT32:
			out[i] = int64(int32(le.Uint32(b)))
		case onnxpb.TensorProto_UINT32:
			out[i] = int64(le.Uint32(b))
		case onnxpb.TensorProto_INT16:
			out[i] = int64(int16(le.Uint16(b)))
		case onnxpb.TensorProto_UINT16:
			out[i] = int64(le.Uint16(b))
		case onnxpb.TensorProto_INT8:
			out[i] = int64(int8(b[0]))
		case onnxpb.TensorProto_UINT8, onnxpb.TensorProto_BOOL:
			out[i] = int64(b[0])
		default:
			return nil, fmt.Errorf("%w: tensor %q: %s is not an integer type", ErrDataType, t.GetName(), DTypeName(dt))
		}
	}
	return out, nil
}

// Float16ToFloat32 converts IEEE 754 half-precision bits to float32 (exact).
func Float16ToFloat32(h uint16) float32 {
	sign := uint32(h>>15) << 31
	exp := uint32(h>>10) & 0x1f
	mant := uint32(h) & 0x3ff
	switch {
	case exp == 0x1f: // inf, nan
		return math.Float32frombits(sign | 0x7f800000 | mant<<13)
	case exp == 0:
		if mant == 0 {
			return math.Float32frombits(sign)
		}
		// subnormal: value = mant * 2^-24
		f := float32(mant) * (1.0 / (1 << 24))
		if sign != 0 {
			f = -f
		}
		return f
	}
	return math.Float32frombits(sign | (exp+112)<<23 | mant<<13)
}
