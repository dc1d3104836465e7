// Package gguf writes and reads GGUF version 3, the single-file model format of llama.cpp (and so
// of Ollama), with the tensor types F32, F16 and Q8_0.
//
// A file is: the magic "GGUF", the version, the tensor and key-value counts, the key-value
// metadata (typed values, arrays of them), one info record per tensor (name, dimensions in ggml's
// order — ne[0], the contiguous one, first — type and offset), padding to the alignment
// (general.alignment, 32 by default) and the tensor data, each tensor aligned. All integers are
// little-endian. The layout follows ggml's gguf.h and llama.cpp's gguf-py; the package's tests check
// it against a file written by gguf-py (testdata/gguf-py.gguf, scripts/fixtures/gguf_fixture.py).
//
// WriteGPT2 converts a modelrt GPT-2 model directory with llama.cpp's "gpt2" architecture names.
package gguf

import (
	"errors"
	"fmt"
	"math"
	"reflect"
)

// Magic is the first four bytes of every GGUF file.
const Magic = "GGUF"

// Version is the GGUF version this package writes (and the only one it reads).
const Version = 3

// DefaultAlignment is the data alignment when general.alignment is absent.
const DefaultAlignment = 32

// ValueType is the type tag of a metadata value (gguf.h's enum gguf_type).
type ValueType uint32

// The metadata value types.
const (
	TypeUint8   ValueType = 0
	TypeInt8    ValueType = 1
	TypeUint16  ValueType = 2
	TypeInt16   ValueType = 3
	TypeUint32  ValueType = 4
	TypeInt32   ValueType = 5
	TypeFloat32 ValueType = 6
	TypeBool    ValueType = 7
	TypeString  ValueType = 8
	TypeArray   ValueType = 9
	TypeUint64  ValueType = 10
	TypeInt64   ValueType = 11
	TypeFloat64 ValueType = 12
)

// size is the encoded size of a fixed-size value type, 0 for string and array.
func (t ValueType) size() int {
	switch t {
	case TypeUint8, TypeInt8, TypeBool:
		return 1
	case TypeUint16, TypeInt16:
		return 2
	case TypeUint32, TypeInt32, TypeFloat32:
		return 4
	case TypeUint64, TypeInt64, TypeFloat64:
		return 8
	}
	return 0
}

func (t ValueType) valid() bool { return t <= TypeFloat64 }

// TensorType is a ggml tensor type (ggml.h's enum ggml_type); this package handles three.
type TensorType uint32

// The tensor types this package writes and decodes.
const (
	F32  TensorType = 0
	F16  TensorType = 1
	Q8_0 TensorType = 8
)

func (t TensorType) String() string {
	switch t {
	case F32:
		return "F32"
	case F16:
		return "F16"
	case Q8_0:
		return "Q8_0"
	}
	return fmt.Sprintf("ggml_type(%d)", uint32(t))
}

// QK8_0 is the number of weights in one Q8_0 block: an fp16 scale and 32 int8 values.
const QK8_0 = 32

// q8BlockBytes is the size of one Q8_0 block.
const q8BlockBytes = 2 + QK8_0

// RowBytes returns the bytes of ne0 elements of type t, or an error if t is unknown or ne0 is not
// a whole number of blocks.
func (t TensorType) RowBytes(ne0 uint64) (uint64, error) {
	switch t {
	case F32:
		return 4 * ne0, nil
	case F16:
		return 2 * ne0, nil
	case Q8_0:
		if ne0%QK8_0 != 0 {
			return 0, fmt.Errorf("Q8_0 needs ne[0] a multiple of %d, got %d", QK8_0, ne0)
		}
		return ne0 / QK8_0 * q8BlockBytes, nil
	}
	return 0, fmt.Errorf("%w: %s", ErrUnsupported, t)
}

// FileType is general.file_type: the type of most tensors (llama.cpp's enum llama_ftype).
type FileType uint32

// The file types WriteGPT2 produces.
const (
	FileAllF32    FileType = 0
	FileMostlyF16 FileType = 1
	FileMostlyQ80 FileType = 7
)

// ParseFileType maps "f32", "f16" and "q8_0" (any case) to a FileType.
func ParseFileType(s string) (FileType, error) {
	switch s {
	case "f32", "F32":
		return FileAllF32, nil
	case "f16", "F16":
		return FileMostlyF16, nil
	case "q8_0", "Q8_0":
		return FileMostlyQ80, nil
	}
	return 0, fmt.Errorf("gguf: type %q is not one of f32, f16, q8_0", s)
}

// Tensor returns the tensor type most tensors of a file of type f have.
func (f FileType) Tensor() TensorType {
	switch f {
	case FileMostlyF16:
		return F16
	case FileMostlyQ80:
		return Q8_0
	}
	return F32
}

// Errors a reader returns (wrapped with the position and field).
var (
	ErrFormat      = errors.New("gguf: malformed file")
	ErrUnsupported = errors.New("gguf: unsupported")
)

// KV is one metadata entry. Value holds uint8, int8, uint16, int16, uint32, int32, float32, bool,
// string, uint64, int64, float64, or an Array.
type KV struct {
	Key   string
	Value any
}

// Array is a metadata array: Elem is the element type and Values a slice of the matching Go type
// ([]string, []int32, []uint32, []float32, ... ; arrays of arrays are not written).
type Array struct {
	Elem   ValueType
	Values any
}

// Len is the number of elements (0 when Values is not a slice).
func (a Array) Len() int {
	if v := reflect.ValueOf(a.Values); v.Kind() == reflect.Slice {
		return v.Len()
	}
	return 0
}

// TensorInfo describes one tensor: Dims in ggml order (Dims[0] is contiguous), Offset from the
// start of the data section.
type TensorInfo struct {
	Name   string
	Dims   []uint64
	Type   TensorType
	Offset uint64
}

// Elements is the product of Dims.
func (ti TensorInfo) Elements() uint64 {
	n := uint64(1)
	for _, d := range ti.Dims {
		n *= d
	}
	return n
}

// Bytes is the tensor's data size.
func (ti TensorInfo) Bytes() (uint64, error) {
	if len(ti.Dims) == 0 {
		return 0, fmt.Errorf("tensor %q has no dimensions", ti.Name)
	}
	rows := uint64(1)
	for _, d := range ti.Dims[1:] {
		if d != 0 && rows > math.MaxUint64/d {
			return 0, fmt.Errorf("tensor %q: dimensions %v overflow", ti.Name, ti.Dims)
		}
		rows *= d
	}
	if ti.Dims[0] > math.MaxUint64/8 {
		return 0, fmt.Errorf("tensor %q: ne[0] %d is too large", ti.Name, ti.Dims[0])
	}
	row, err := ti.Type.RowBytes(ti.Dims[0])
	if err != nil {
		return 0, fmt.Errorf("tensor %q: %w", ti.Name, err)
	}
	if rows != 0 && row > math.MaxUint64/rows {
		return 0, fmt.Errorf("tensor %q: %d bytes per row × %d rows overflow", ti.Name, row, rows)
	}
	return row * rows, nil
}

func alignUp(n, a uint64) uint64 { return (n + a - 1) / a * a }
