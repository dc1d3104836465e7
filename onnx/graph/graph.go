// Package graph builds ONNX graphs in Go: inputs and outputs with symbolic dims, initializers,
// nodes with attributes and generated unique names, and saving with optional external data.
//
// A Builder only records what it is told; it does not infer shapes or check operator schemas.
// ONNX Runtime does that when it loads the model, which is how the exporter's tests check the
// graphs built here.
package graph

import (
	"encoding/binary"
	"fmt"
	"math"
	"strconv"

	"github.com/modelrt/modelrt/onnx"
	"github.com/modelrt/modelrt/onnx/onnxpb"
)

// Element types, re-exported so that callers need not import onnxpb for the common ones.
const (
	Float = onnxpb.TensorProto_FLOAT
	Int64 = onnxpb.TensorProto_INT64
	Int32 = onnxpb.TensorProto_INT32
	Bool  = onnxpb.TensorProto_BOOL
)

// Builder assembles one graph. The zero value is not usable; call New.
type Builder struct {
	g     *onnxpb.GraphProto
	used  map[string]bool
	count map[string]int
	// Prefix is prepended to generated node and value names ("/h.0/attn/"), so that a graph
	// reads like the model it came from.
	Prefix string
	bytes  int64
}

// New returns a Builder for a graph with the given name.
func New(name string) *Builder {
	return &Builder{
		g:     &onnxpb.GraphProto{Name: &name},
		used:  map[string]bool{},
		count: map[string]int{},
	}
}

// Graph returns the graph built so far (shared, not copied).
func (b *Builder) Graph() *onnxpb.GraphProto { return b.g }

// InitializerBytes returns the total size of the initializers' data added so far.
func (b *Builder) InitializerBytes() int64 { return b.bytes }

// Unique returns name if no value, node or initializer of the graph uses it yet, else name_1,
// name_2, ...; either way it marks the result as used.
func (b *Builder) Unique(name string) string {
	out := name
	for b.used[out] {
		b.count[name]++
		out = name + "_" + strconv.Itoa(b.count[name])
	}
	b.used[out] = true
	return out
}

// claim marks an exact name as used; a second claim is a programmer error.
func (b *Builder) claim(name string) string {
	if b.used[name] {
		panic(fmt.Sprintf("graph: name %q used twice", name))
	}
	b.used[name] = true
	return name
}

// Input declares a graph input and returns its name. Each dim is an int or int64 (fixed size),
// a string (symbolic dim_param) or nil (unknown). Panics on a repeated name or another dim type.
func (b *Builder) Input(name string, dt onnxpb.TensorProto_DataType, dims ...any) string {
	b.g.Input = append(b.g.Input, valueInfo(b.claim(name), dt, dims))
	return name
}

// Output declares a graph output; a node must produce name (NodeTo). Dims as for Input.
func (b *Builder) Output(name string, dt onnxpb.TensorProto_DataType, dims ...any) {
	b.g.Output = append(b.g.Output, valueInfo(name, dt, dims))
}

func valueInfo(name string, dt onnxpb.TensorProto_DataType, dims []any) *onnxpb.ValueInfoProto {
	shape := &onnxpb.TensorShapeProto{}
	for _, d := range dims {
		dim := &onnxpb.TensorShapeProto_Dimension{}
		switch v := d.(type) {
		case int:
			dim.Value = &onnxpb.TensorShapeProto_Dimension_DimValue{DimValue: int64(v)}
		case int64:
			dim.Value = &onnxpb.TensorShapeProto_Dimension_DimValue{DimValue: v}
		case string:
			dim.Value = &onnxpb.TensorShapeProto_Dimension_DimParam{DimParam: v}
		case nil:
		default:
			panic(fmt.Sprintf("graph: dim of %s has type %T, want int, int64, string or nil", name, d))
		}
		shape.Dim = append(shape.Dim, dim)
	}
	elem := int32(dt)
	return &onnxpb.ValueInfoProto{
		Name: &name,
		Type: &onnxpb.TypeProto{Value: &onnxpb.TypeProto_TensorType{
			TensorType: &onnxpb.TypeProto_Tensor{ElemType: &elem, Shape: shape},
		}},
	}
}

// Tensor adds an initializer holding raw little-endian bytes (kept, not copied) and returns its
// unique name. Panics if len(raw) does not match dims and dt.
func (b *Builder) Tensor(name string, dt onnxpb.TensorProto_DataType, dims []int64, raw []byte) string {
	if want := onnx.NumElements(dims) * int64(onnx.ElemSize(dt)); onnx.ElemSize(dt) == 0 || int64(len(raw)) != want {
		panic(fmt.Sprintf("graph: initializer %s: %d bytes for dims %v of %v, want %d", name, len(raw), dims, dt, want))
	}
	name = b.Unique(name)
	t := NewTensor(name, dt, dims, raw)
	b.g.Initializer = append(b.g.Initializer, t)
	b.bytes += int64(len(raw))
	return name
}

// Float32 adds a float32 initializer with the given dims (nil or empty: a scalar).
func (b *Builder) Float32(name string, dims []int64, data []float32) string {
	return b.Tensor(name, Float, dims, Float32Bytes(data))
}

// Int64 adds an int64 initializer with the given dims (nil or empty: a scalar).
func (b *Builder) Int64(name string, dims []int64, data []int64) string {
	raw := make([]byte, 0, 8*len(data))
	for _, v := range data {
		raw = binary.LittleEndian.AppendUint64(raw, uint64(v))
	}
	return b.Tensor(name, Int64, dims, raw)
}

// Ints adds a 1-D int64 initializer, the usual form of shapes and axes.
func (b *Builder) Ints(name string, vals ...int64) string {
	return b.Int64(name, []int64{int64(len(vals))}, vals)
}

// Node adds a node with one output and returns the output's generated name.
func (b *Builder) Node(op string, inputs []string, attrs ...*onnxpb.AttributeProto) string {
	return b.NodeN(op, inputs, 1, attrs...)[0]
}

// NodeN adds a node with n outputs and returns their generated names.
func (b *Builder) NodeN(op string, inputs []string, n int, attrs ...*onnxpb.AttributeProto) []string {
	name := b.Unique(b.Prefix + op)
	outs := make([]string, n)
	for i := range outs {
		outs[i] = b.claim(name + "_output_" + strconv.Itoa(i))
	}
	b.add(name, op, inputs, outs, attrs)
	return outs
}

// NodeTo adds a node whose outputs have the given names (graph outputs, for instance).
func (b *Builder) NodeTo(op string, inputs, outputs []string, attrs ...*onnxpb.AttributeProto) {
	for _, o := range outputs {
		b.claim(o)
	}
	b.add(b.Unique(b.Prefix+op), op, inputs, outputs, attrs)
}

func (b *Builder) add(name, op string, inputs, outputs []string, attrs []*onnxpb.AttributeProto) {
	b.g.Node = append(b.g.Node, &onnxpb.NodeProto{
		Name:      &name,
		OpType:    &op,
		Input:     inputs,
		Output:    outputs,
		Attribute: attrs,
	})
}

// Int is an INT attribute.
func Int(name string, v int64) *onnxpb.AttributeProto {
	t := onnxpb.AttributeProto_INT
	return &onnxpb.AttributeProto{Name: &name, Type: &t, I: &v}
}

// IntList is an INTS attribute.
func IntList(name string, vs ...int64) *onnxpb.AttributeProto {
	t := onnxpb.AttributeProto_INTS
	return &onnxpb.AttributeProto{Name: &name, Type: &t, Ints: vs}
}

// FloatAttr is a FLOAT attribute.
func FloatAttr(name string, v float32) *onnxpb.AttributeProto {
	t := onnxpb.AttributeProto_FLOAT
	return &onnxpb.AttributeProto{Name: &name, Type: &t, F: &v}
}

// String is a STRING attribute.
func String(name, v string) *onnxpb.AttributeProto {
	t := onnxpb.AttributeProto_STRING
	return &onnxpb.AttributeProto{Name: &name, Type: &t, S: []byte(v)}
}

// TensorAttr is a TENSOR attribute (Constant's value, ConstantOfShape's value).
func TensorAttr(name string, v *onnxpb.TensorProto) *onnxpb.AttributeProto {
	t := onnxpb.AttributeProto_TENSOR
	return &onnxpb.AttributeProto{Name: &name, Type: &t, T: v}
}

// NewTensor returns a TensorProto holding raw little-endian bytes (kept, not copied).
func NewTensor(name string, dt onnxpb.TensorProto_DataType, dims []int64, raw []byte) *onnxpb.TensorProto {
	elem := int32(dt)
	if raw == nil {
		raw = []byte{} // a nil raw_data would be absent, not empty
	}
	return &onnxpb.TensorProto{Name: &name, DataType: &elem, Dims: append([]int64(nil), dims...), RawData: raw}
}

// Float32Bytes encodes float32 values little-endian.
func Float32Bytes(data []float32) []byte {
	raw := make([]byte, 4*len(data))
	for i, v := range data {
		binary.LittleEndian.PutUint32(raw[4*i:], math.Float32bits(v))
	}
	return raw
}
