package sdk

import (
	"encoding/binary"
	"fmt"
	"math"
	"unsafe"
)

// DType names the element type of a Tensor. The names are those of the wire protocol.
type DType string

// Element types every backend understands on the wire.
const (
	Float32  DType = "float32"
	Float16  DType = "float16"
	BFloat16 DType = "bfloat16"
	Int64    DType = "int64"
	Int32    DType = "int32"
	Uint8    DType = "uint8"
	Bool     DType = "bool"
)

// Size returns the size of one element in bytes, or 0 for an unknown dtype.
func (d DType) Size() int {
	switch d {
	case Float32, Int32:
		return 4
	case Float16, BFloat16:
		return 2
	case Int64:
		return 8
	case Uint8, Bool:
		return 1
	}
	return 0
}

// MaxTensorBytes caps the declared size of one tensor (4 GiB). A declared shape beyond it is
// refused before anything proportional to it is allocated.
const MaxTensorBytes = 4 << 30

// MaxRank caps the number of dimensions of a tensor.
const MaxRank = 16

// Tensor is a dense little-endian array with a dtype and a shape. Data holds
// NumElements(Shape)·DType.Size() bytes in row-major order.
//
// The constructors and accessors share memory with their argument where the platform allows
// (little-endian, aligned): a Tensor made by FromFloat32 aliases the slice it was given.
type Tensor struct {
	DType DType
	Shape []int64
	Data  []byte
}

// NumElements returns the product of shape, or an error for a negative dimension, a rank beyond
// MaxRank, or a product whose byte size for elemSize-byte elements would exceed MaxTensorBytes.
// A rank-0 shape has one element.
func NumElements(shape []int64, elemSize int) (int64, error) {
	if len(shape) > MaxRank {
		return 0, fmt.Errorf("rank %d exceeds the maximum of %d", len(shape), MaxRank)
	}
	if elemSize <= 0 {
		elemSize = 1
	}
	limit := int64(MaxTensorBytes / elemSize)
	n := int64(1)
	for i, d := range shape {
		if d < 0 {
			return 0, fmt.Errorf("dimension %d is negative (%d)", i, d)
		}
		if d == 0 {
			n = 0
			continue
		}
		if n > 0 && d > limit/n {
			return 0, fmt.Errorf("shape %v declares more than %d bytes", shape, int64(MaxTensorBytes))
		}
		if n > 0 {
			n *= d
		}
	}
	return n, nil
}

// Validate checks that the dtype is known, the shape is sane and the data length matches it
// exactly. It returns an *Error with CodeInvalidArgument.
func (t *Tensor) Validate() error {
	if t == nil {
		return InvalidArgument("tensor is nil")
	}
	size := t.DType.Size()
	if size == 0 {
		return InvalidArgument("unknown dtype %q", string(t.DType))
	}
	n, err := NumElements(t.Shape, size)
	if err != nil {
		return InvalidArgument("%s tensor: %v", t.DType, err)
	}
	if want := n * int64(size); int64(len(t.Data)) != want {
		return InvalidArgument("%s tensor of shape %v needs %d bytes, has %d", t.DType, t.Shape, want, len(t.Data))
	}
	return nil
}

// Len returns the number of elements declared by the shape (without validating it).
func (t *Tensor) Len() int {
	n := 1
	for _, d := range t.Shape {
		n *= int(d)
	}
	return n
}

var littleEndian = binary.NativeEndian.Uint16([]byte{1, 0}) == 1

// FromFloat32 returns a float32 tensor over v, sharing its memory on little-endian machines.
func FromFloat32(shape []int64, v []float32) *Tensor {
	return &Tensor{DType: Float32, Shape: shape, Data: bytesOf(v, 4, func(b []byte, i int) {
		binary.LittleEndian.PutUint32(b, math.Float32bits(v[i]))
	})}
}

// FromInt64 returns an int64 tensor over v, sharing its memory on little-endian machines.
func FromInt64(shape []int64, v []int64) *Tensor {
	return &Tensor{DType: Int64, Shape: shape, Data: bytesOf(v, 8, func(b []byte, i int) {
		binary.LittleEndian.PutUint64(b, uint64(v[i]))
	})}
}

// FromInt32 returns an int32 tensor over v, sharing its memory on little-endian machines.
func FromInt32(shape []int64, v []int32) *Tensor {
	return &Tensor{DType: Int32, Shape: shape, Data: bytesOf(v, 4, func(b []byte, i int) {
		binary.LittleEndian.PutUint32(b, uint32(v[i]))
	})}
}

func bytesOf[T any](v []T, size int, put func(b []byte, i int)) []byte {
	if len(v) == 0 {
		return []byte{}
	}
	if littleEndian {
		return unsafe.Slice((*byte)(unsafe.Pointer(&v[0])), len(v)*size)
	}
	b := make([]byte, len(v)*size)
	for i := range v {
		put(b[i*size:], i)
	}
	return b
}

// Float32s returns the elements of a float32 tensor, sharing Data's memory when it is aligned on
// a little-endian machine. It validates the tensor first.
func (t *Tensor) Float32s() ([]float32, error) {
	if err := t.want(Float32); err != nil {
		return nil, err
	}
	return viewOf(t.Data, 4, func(b []byte) float32 { return math.Float32frombits(binary.LittleEndian.Uint32(b)) }), nil
}

// Int64s returns the elements of an int64 tensor; an int32 tensor is widened (a copy).
func (t *Tensor) Int64s() ([]int64, error) {
	if t != nil && t.DType == Int32 {
		v, err := t.Int32s()
		if err != nil {
			return nil, err
		}
		out := make([]int64, len(v))
		for i, x := range v {
			out[i] = int64(x)
		}
		return out, nil
	}
	if err := t.want(Int64); err != nil {
		return nil, err
	}
	return viewOf(t.Data, 8, func(b []byte) int64 { return int64(binary.LittleEndian.Uint64(b)) }), nil
}

// Int32s returns the elements of an int32 tensor.
func (t *Tensor) Int32s() ([]int32, error) {
	if err := t.want(Int32); err != nil {
		return nil, err
	}
	return viewOf(t.Data, 4, func(b []byte) int32 { return int32(binary.LittleEndian.Uint32(b)) }), nil
}

func (t *Tensor) want(d DType) error {
	if err := t.Validate(); err != nil {
		return err
	}
	if t.DType != d {
		return InvalidArgument("want a %s tensor, got %s", d, t.DType)
	}
	return nil
}

func viewOf[T any](b []byte, size int, get func([]byte) T) []T {
	n := len(b) / size
	if n == 0 {
		return []T{}
	}
	if littleEndian && uintptr(unsafe.Pointer(&b[0]))%uintptr(size) == 0 {
		return unsafe.Slice((*T)(unsafe.Pointer(&b[0])), n)
	}
	out := make([]T, n)
	for i := range out {
		out[i] = get(b[i*size:])
	}
	return out
}
