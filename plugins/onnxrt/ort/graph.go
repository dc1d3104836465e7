package ort

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"unsafe"

	ortgo "github.com/yalue/onnxruntime_go"
)

// TensorInfo describes a declared graph input or output. Shape holds -1 for symbolic axes.
type TensorInfo struct {
	Name  string
	DType string // "float32", "int64", ... (see TensorValue)
	Shape []int64
}

// TensorValue is a tensor crossing the Graph API: little-endian element bytes in row-major
// order. DType is one of float32, float64, float16, bfloat16, int8, uint8, int16, uint16, int32,
// uint32, int64, uint64, bool (one byte per element).
type TensorValue struct {
	DType string
	Shape []int64
	Data  []byte
}

// Graph runs any ONNX graph on named tensors (the `graph` task). It is safe for concurrent use:
// onnxruntime_go's DynamicAdvancedSession takes its tensors per Run call, and ONNX Runtime
// sessions allow concurrent Run.
type Graph struct {
	path            string
	inputs, outputs []TensorInfo
	sess            *ortgo.DynamicAdvancedSession

	mu     sync.RWMutex
	closed bool
}

// LoadGraph loads the ONNX graph at path.
func LoadGraph(path string, so SessionOptions) (*Graph, error) {
	if err := Init(EnvOptions{}); err != nil {
		return nil, err
	}
	ins, outs, err := graphInfo(path)
	if err != nil {
		return nil, err
	}
	if len(ins) == 0 {
		// onnxruntime_go indexes the first input unconditionally in Run.
		return nil, fmt.Errorf("%w: %s declares no inputs; graphs without inputs cannot be run through onnxruntime_go", ErrUnsupportedGraph, path)
	}
	g := &Graph{path: path}
	var inNames, outNames []string
	for _, in := range ins {
		if _, _, ok := dtypeByName(dtypeName(in.DataType)); !ok || in.OrtValueType != ortgo.ONNXTypeTensor {
			return nil, fmt.Errorf("%w: %s: input %s is %s %s; only numeric tensors are supported", ErrUnsupportedGraph, path, in.Name, in.OrtValueType, dtypeName(in.DataType))
		}
		g.inputs = append(g.inputs, TensorInfo{Name: in.Name, DType: dtypeName(in.DataType), Shape: append([]int64(nil), in.Dimensions...)})
		inNames = append(inNames, in.Name)
	}
	for _, o := range outs {
		if _, _, ok := dtypeByName(dtypeName(o.DataType)); !ok || o.OrtValueType != ortgo.ONNXTypeTensor {
			return nil, fmt.Errorf("%w: %s: output %s is %s %s; only numeric tensors are supported", ErrUnsupportedGraph, path, o.Name, o.OrtValueType, dtypeName(o.DataType))
		}
		g.outputs = append(g.outputs, TensorInfo{Name: o.Name, DType: dtypeName(o.DataType), Shape: append([]int64(nil), o.Dimensions...)})
		outNames = append(outNames, o.Name)
	}
	if g.sess, err = openSession(path, inNames, outNames, so); err != nil {
		return nil, err
	}
	return g, nil
}

// Inputs returns the declared inputs, in graph order.
func (g *Graph) Inputs() []TensorInfo { return g.inputs }

// Outputs returns the declared outputs, in graph order.
func (g *Graph) Outputs() []TensorInfo { return g.outputs }

// Run feeds every declared input from in and returns every declared output.
func (g *Graph) Run(ctx context.Context, in map[string]TensorValue) (map[string]TensorValue, error) {
	g.mu.RLock()
	defer g.mu.RUnlock()
	if g.closed {
		return nil, ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var missing []string
	for _, ti := range g.inputs {
		if _, ok := in[ti.Name]; !ok {
			missing = append(missing, ti.Name)
		}
	}
	var extra []string
	for name := range in {
		if !g.hasInput(name) {
			extra = append(extra, name)
		}
	}
	if len(missing) > 0 || len(extra) > 0 {
		sort.Strings(extra)
		return nil, fmt.Errorf("%w: %s: missing inputs [%s], unknown inputs [%s]; the graph declares %s",
			ErrInvalidInput, g.path, strings.Join(missing, ", "), strings.Join(extra, ", "), describeInfos(g.inputs))
	}
	inVals := make([]ortgo.Value, 0, len(g.inputs))
	defer func() { destroy(inVals) }()
	for _, ti := range g.inputs {
		v, err := newValue(ti, in[ti.Name])
		if err != nil {
			return nil, fmt.Errorf("%w: %s: input %s: %v", ErrInvalidInput, g.path, ti.Name, err)
		}
		inVals = append(inVals, v)
	}
	outVals := make([]ortgo.Value, len(g.outputs))
	defer func() { destroy(outVals) }()
	for i, to := range g.outputs {
		if len(to.Shape) == 0 {
			// onnxruntime_go cannot turn an ORT-allocated rank-0 output into a Go value.
			v, err := newValue(to, TensorValue{DType: to.DType, Data: make([]byte, mustSize(to.DType))})
			if err != nil {
				return nil, fmt.Errorf("ort: %s: output %s: %w", g.path, to.Name, err)
			}
			outVals[i] = v
		}
	}
	ro, err := ortgo.NewRunOptions()
	if err != nil {
		return nil, fmt.Errorf("ort: run options: %w", err)
	}
	defer ro.Destroy()
	if err := runCtx(ctx, g.sess, ro, g.path, inVals, outVals); err != nil {
		return nil, err
	}
	res := make(map[string]TensorValue, len(g.outputs))
	for i, to := range g.outputs {
		tv, err := valueBytes(outVals[i])
		if err != nil {
			return nil, fmt.Errorf("ort: %s: output %s: %w", g.path, to.Name, err)
		}
		res[to.Name] = tv
	}
	return res, nil
}

func (g *Graph) hasInput(name string) bool {
	for _, ti := range g.inputs {
		if ti.Name == name {
			return true
		}
	}
	return false
}

// Close releases the session; it waits for runs in flight.
func (g *Graph) Close() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return nil
	}
	g.closed = true
	return g.sess.Destroy()
}

func describeInfos(ts []TensorInfo) string {
	parts := make([]string, len(ts))
	for i, t := range ts {
		parts[i] = fmt.Sprintf("%s %s %v", t.Name, t.DType, t.Shape)
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

func mustSize(dtype string) int {
	_, size, _ := dtypeByName(dtype)
	return size
}

// newValue checks tv against the declared ti and copies it into an ONNX Runtime value.
func newValue(ti TensorInfo, tv TensorValue) (ortgo.Value, error) {
	if tv.DType != ti.DType {
		return nil, fmt.Errorf("dtype %s, the graph declares %s", tv.DType, ti.DType)
	}
	if len(tv.Shape) != len(ti.Shape) {
		return nil, fmt.Errorf("shape %v, the graph declares %v", tv.Shape, ti.Shape)
	}
	n := int64(1)
	for i, d := range tv.Shape {
		if d < 0 || (ti.Shape[i] >= 0 && ti.Shape[i] != d) {
			return nil, fmt.Errorf("shape %v, the graph declares %v", tv.Shape, ti.Shape)
		}
		n *= d
	}
	_, size, _ := dtypeByName(tv.DType)
	if int64(len(tv.Data)) != n*int64(size) {
		return nil, fmt.Errorf("%d bytes for %s %v, want %d", len(tv.Data), tv.DType, tv.Shape, n*int64(size))
	}
	shape := ortgo.Shape(tv.Shape)
	switch tv.DType {
	case "float32":
		return typed[float32](shape, tv.Data)
	case "float64":
		return typed[float64](shape, tv.Data)
	case "int8":
		return typed[int8](shape, tv.Data)
	case "uint8":
		return typed[uint8](shape, tv.Data)
	case "int16":
		return typed[int16](shape, tv.Data)
	case "uint16":
		return typed[uint16](shape, tv.Data)
	case "int32":
		return typed[int32](shape, tv.Data)
	case "uint32":
		return typed[uint32](shape, tv.Data)
	case "int64":
		return typed[int64](shape, tv.Data)
	case "uint64":
		return typed[uint64](shape, tv.Data)
	case "bool":
		return typed[bool](shape, tv.Data)
	}
	// float16 and bfloat16 have no Go type: ONNX Runtime takes the raw bytes.
	if len(shape) == 0 || n == 0 {
		return nil, fmt.Errorf("%s tensors of shape %v are not supported by onnxruntime_go (rank 0 or zero-size)", tv.DType, tv.Shape)
	}
	t, _, _ := dtypeByName(tv.DType)
	return ortgo.NewCustomDataTensor(shape, append([]byte(nil), tv.Data...), t)
}

// typed copies little-endian bytes into a new []T tensor (a Scalar for rank 0: onnxruntime_go
// tensors need at least one axis).
func typed[T ortgo.TensorData](shape ortgo.Shape, data []byte) (ortgo.Value, error) {
	var zero T
	size := int(unsafe.Sizeof(zero))
	buf := make([]T, len(data)/size)
	if len(buf) > 0 {
		copy(unsafe.Slice((*byte)(unsafe.Pointer(&buf[0])), len(data)), data)
	}
	if len(shape) == 0 {
		return ortgo.NewScalar(buf[0])
	}
	return ortgo.NewTensor(shape, buf)
}

// valueBytes converts an output value into a TensorValue (a copy).
func valueBytes(v ortgo.Value) (TensorValue, error) {
	switch t := v.(type) {
	case *ortgo.Tensor[float32]:
		return tensorBytes("float32", t.GetShape(), t.GetData()), nil
	case *ortgo.Tensor[float64]:
		return tensorBytes("float64", t.GetShape(), t.GetData()), nil
	case *ortgo.Tensor[int8]:
		return tensorBytes("int8", t.GetShape(), t.GetData()), nil
	case *ortgo.Tensor[uint8]:
		return tensorBytes("uint8", t.GetShape(), t.GetData()), nil
	case *ortgo.Tensor[int16]:
		return tensorBytes("int16", t.GetShape(), t.GetData()), nil
	case *ortgo.Tensor[uint16]:
		return tensorBytes("uint16", t.GetShape(), t.GetData()), nil
	case *ortgo.Tensor[int32]:
		return tensorBytes("int32", t.GetShape(), t.GetData()), nil
	case *ortgo.Tensor[uint32]:
		return tensorBytes("uint32", t.GetShape(), t.GetData()), nil
	case *ortgo.Tensor[int64]:
		return tensorBytes("int64", t.GetShape(), t.GetData()), nil
	case *ortgo.Tensor[uint64]:
		return tensorBytes("uint64", t.GetShape(), t.GetData()), nil
	case *ortgo.Tensor[bool]:
		return tensorBytes("bool", t.GetShape(), t.GetData()), nil
	case *ortgo.CustomDataTensor:
		return TensorValue{DType: dtypeName(ortgo.TensorElementDataType(t.DataType())), Shape: t.GetShape(), Data: append([]byte(nil), t.GetData()...)}, nil
	case *ortgo.Scalar[float32]:
		return tensorBytes("float32", nil, []float32{t.GetData()}), nil
	case *ortgo.Scalar[float64]:
		return tensorBytes("float64", nil, []float64{t.GetData()}), nil
	case *ortgo.Scalar[int8]:
		return tensorBytes("int8", nil, []int8{t.GetData()}), nil
	case *ortgo.Scalar[uint8]:
		return tensorBytes("uint8", nil, []uint8{t.GetData()}), nil
	case *ortgo.Scalar[int16]:
		return tensorBytes("int16", nil, []int16{t.GetData()}), nil
	case *ortgo.Scalar[uint16]:
		return tensorBytes("uint16", nil, []uint16{t.GetData()}), nil
	case *ortgo.Scalar[int32]:
		return tensorBytes("int32", nil, []int32{t.GetData()}), nil
	case *ortgo.Scalar[uint32]:
		return tensorBytes("uint32", nil, []uint32{t.GetData()}), nil
	case *ortgo.Scalar[int64]:
		return tensorBytes("int64", nil, []int64{t.GetData()}), nil
	case *ortgo.Scalar[uint64]:
		return tensorBytes("uint64", nil, []uint64{t.GetData()}), nil
	case *ortgo.Scalar[bool]:
		return tensorBytes("bool", nil, []bool{t.GetData()}), nil
	}
	return TensorValue{}, fmt.Errorf("unsupported output value %T", v)
}

func tensorBytes[T ortgo.TensorData](dtype string, shape []int64, data []T) TensorValue {
	var zero T
	n := len(data) * int(unsafe.Sizeof(zero))
	out := make([]byte, n)
	if n > 0 {
		copy(out, unsafe.Slice((*byte)(unsafe.Pointer(&data[0])), n))
	}
	if shape == nil {
		shape = []int64{}
	}
	return TensorValue{DType: dtype, Shape: shape, Data: out}
}
