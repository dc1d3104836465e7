package onnx

import (
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"

	"github.com/modelrt/modelrt/onnx/onnxpb"
)

// Summary describes a model the way `modelrt inspect` prints it.
type Summary struct {
	Path            string
	IRVersion       int64
	ProducerName    string
	ProducerVersion string
	Domain          string
	ModelVersion    int64
	GraphName       string
	// Metadata is the model's metadata_props (key, value) in file order.
	Metadata     [][2]string
	Opsets       []Opset
	Inputs       []Value // graph inputs that are not initializers
	Outputs      []Value
	Initializers int
	// InitializerBytes counts the data of every initializer, inline or external.
	InitializerBytes int64
	ExternalBytes    int64 // the part of InitializerBytes stored in external files
	External         []ExternalFile
	Nodes            int       // including nodes of subgraphs
	Ops              []OpCount // by count, most frequent first
}

// Opset is one operator set import.
type Opset struct {
	Domain  string // "" is the default ONNX domain (ai.onnx)
	Version int64
}

// Value is a graph input or output.
type Value struct {
	Name  string
	DType string // DTypeName of the element type, or the non-tensor kind ("sequence", ...)
	Dims  []Dim  // nil when the rank is unknown
}

// Dim is one dimension: a fixed size, a symbolic name (dim_param), or unknown.
type Dim struct {
	Size  int64  // valid when Param == "" and Known
	Param string // symbolic name such as "batch_size"
	Known bool   // Size or Param is set
}

// String renders a dim as its size, its symbolic name, or "?".
func (d Dim) String() string {
	switch {
	case d.Param != "":
		return d.Param
	case d.Known:
		return strconv.FormatInt(d.Size, 10)
	}
	return "?"
}

// OpCount is how many nodes use one operator.
type OpCount struct {
	Op    string // "Domain:Op" outside the default domain
	Count int
}

// Summary describes m.
func (m *Model) Summary() *Summary {
	mp := m.Proto
	g := mp.Graph
	s := &Summary{
		Path:            m.Path,
		IRVersion:       mp.GetIrVersion(),
		ProducerName:    mp.GetProducerName(),
		ProducerVersion: mp.GetProducerVersion(),
		Domain:          mp.GetDomain(),
		ModelVersion:    mp.GetModelVersion(),
		GraphName:       g.GetName(),
		External:        m.External,
	}
	for _, kv := range mp.MetadataProps {
		s.Metadata = append(s.Metadata, [2]string{kv.GetKey(), kv.GetValue()})
	}
	for _, o := range mp.OpsetImport {
		s.Opsets = append(s.Opsets, Opset{Domain: o.GetDomain(), Version: o.GetVersion()})
	}
	inits := map[string]bool{}
	for _, t := range g.Initializer {
		inits[t.GetName()] = true
	}
	for _, vi := range g.Input {
		if !inits[vi.GetName()] {
			s.Inputs = append(s.Inputs, valueOf(vi))
		}
	}
	for _, vi := range g.Output {
		s.Outputs = append(s.Outputs, valueOf(vi))
	}
	sizes := map[string]int64{}
	for _, f := range m.External {
		sizes[f.Location] = f.Size
	}
	for _, t := range Initializers(g) {
		s.Initializers++
		n := tensorBytes(t, sizes)
		s.InitializerBytes += n
		if isExternal(t) {
			s.ExternalBytes += n
		}
	}
	counts := map[string]int{}
	walkGraphs(g, func(g *onnxpb.GraphProto) {
		for _, n := range g.Node {
			s.Nodes++
			op := n.GetOpType()
			if d := n.GetDomain(); d != "" && d != "ai.onnx" {
				op = d + ":" + op
			}
			counts[op]++
		}
	})
	for op, c := range counts {
		s.Ops = append(s.Ops, OpCount{Op: op, Count: c})
	}
	sort.Slice(s.Ops, func(i, j int) bool {
		if s.Ops[i].Count != s.Ops[j].Count {
			return s.Ops[i].Count > s.Ops[j].Count
		}
		return s.Ops[i].Op < s.Ops[j].Op
	})
	return s
}

// tensorBytes is the stored size of an initializer's data; external tensors without a length
// run to the end of their file (sizes by location; 0 when unknown).
func tensorBytes(t *onnxpb.TensorProto, sizes map[string]int64) int64 {
	if isExternal(t) {
		ref, err := parseExternal(t)
		if err != nil {
			return 0
		}
		if ref.length >= 0 {
			return ref.length
		}
		return max(sizes[ref.location]-ref.offset, 0)
	}
	if t.RawData != nil {
		return int64(len(t.RawData))
	}
	n := NumElements(t.Dims)
	if n < 0 {
		return 0
	}
	if sz := ElemSize(DataType(t.GetDataType())); sz > 0 {
		return n * int64(sz)
	}
	var total int64
	for _, b := range t.StringData {
		total += int64(len(b))
	}
	return total
}

func valueOf(vi *onnxpb.ValueInfoProto) Value {
	v := Value{Name: vi.GetName()}
	tp := vi.GetType()
	switch {
	case tp.GetTensorType() != nil:
		tt := tp.GetTensorType()
		v.DType = DTypeName(DataType(tt.GetElemType()))
		if sh := tt.GetShape(); sh != nil {
			v.Dims = make([]Dim, 0, len(sh.Dim))
			for _, d := range sh.Dim {
				v.Dims = append(v.Dims, dimOf(d))
			}
		}
	case tp.GetSequenceType() != nil:
		v.DType = "sequence"
	case tp.GetMapType() != nil:
		v.DType = "map"
	case tp.GetOptionalType() != nil:
		v.DType = "optional"
	case tp.GetSparseTensorType() != nil:
		v.DType = "sparse " + DTypeName(DataType(tp.GetSparseTensorType().GetElemType()))
	default:
		v.DType = "?"
	}
	return v
}

func dimOf(d *onnxpb.TensorShapeProto_Dimension) Dim {
	switch x := d.Value.(type) {
	case *onnxpb.TensorShapeProto_Dimension_DimValue:
		return Dim{Size: x.DimValue, Known: true}
	case *onnxpb.TensorShapeProto_Dimension_DimParam:
		if x.DimParam != "" {
			return Dim{Param: x.DimParam, Known: true}
		}
	}
	return Dim{}
}

// WriteText prints the summary as aligned plain text.
func (s *Summary) WriteText(w io.Writer) error {
	var b strings.Builder
	if s.Path != "" {
		fmt.Fprintf(&b, "file:         %s\n", s.Path)
	}
	fmt.Fprintf(&b, "ir_version:   %d\n", s.IRVersion)
	producer := s.ProducerName
	if s.ProducerVersion != "" {
		producer += " " + s.ProducerVersion
	}
	fmt.Fprintf(&b, "producer:     %s\n", orDash(producer))
	if s.Domain != "" || s.ModelVersion != 0 {
		fmt.Fprintf(&b, "domain:       %s (model version %d)\n", orDash(s.Domain), s.ModelVersion)
	}
	if s.GraphName != "" {
		fmt.Fprintf(&b, "graph:        %s\n", s.GraphName)
	}
	ops := make([]string, 0, len(s.Opsets))
	for _, o := range s.Opsets {
		d := o.Domain
		if d == "" {
			d = "ai.onnx"
		}
		ops = append(ops, fmt.Sprintf("%s %d", d, o.Version))
	}
	fmt.Fprintf(&b, "opsets:       %s\n", orDash(strings.Join(ops, ", ")))
	for _, kv := range s.Metadata {
		fmt.Fprintf(&b, "metadata:     %s = %s\n", kv[0], kv[1])
	}
	writeValues(&b, "inputs", s.Inputs)
	writeValues(&b, "outputs", s.Outputs)
	fmt.Fprintf(&b, "initializers: %d (%s)\n", s.Initializers, byteSize(s.InitializerBytes))
	for _, f := range s.External {
		fmt.Fprintf(&b, "  external:   %s (%s on disk)\n", f.Location, byteSize(f.Size))
	}
	fmt.Fprintf(&b, "nodes:        %d\n", s.Nodes)
	for _, o := range s.Ops {
		fmt.Fprintf(&b, "  %-24s %d\n", o.Op, o.Count)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func writeValues(b *strings.Builder, title string, vs []Value) {
	fmt.Fprintf(b, "%s: %d\n", title, len(vs))
	width := 0
	for _, v := range vs {
		width = max(width, len(v.Name))
	}
	for _, v := range vs {
		shape := "rank unknown"
		if v.Dims != nil {
			ds := make([]string, len(v.Dims))
			for i, d := range v.Dims {
				ds[i] = d.String()
			}
			shape = "[" + strings.Join(ds, ", ") + "]"
		}
		fmt.Fprintf(b, "  %-*s  %-8s %s\n", width, v.Name, v.DType, shape)
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// byteSize renders n bytes with a binary unit.
func byteSize(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB (%d bytes)", float64(n)/float64(div), "KMGTPE"[exp], n)
}

// Inspect reads the model at path and writes its summary to w (`modelrt inspect FILE.onnx`).
func Inspect(path string, w io.Writer) error {
	m, err := Read(path)
	if err != nil {
		return err
	}
	return m.Summary().WriteText(w)
}
