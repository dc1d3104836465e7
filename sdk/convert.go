package sdk

import (
	"github.com/modelrt/modelrt/sdk/internal/pb"
)

// Conversions between the plain sdk types and the wire types. Tensors are validated on the way
// in (before a backend or the host sees them) so that a malformed tensor is InvalidArgument on
// both sides of the wire and nothing proportional to its declared size is allocated.

func tensorToPB(t *Tensor) *pb.Tensor {
	if t == nil {
		return nil
	}
	return &pb.Tensor{Dtype: string(t.DType), Shape: t.Shape, Data: t.Data}
}

func tensorFromPB(name string, p *pb.Tensor) (*Tensor, error) {
	if p == nil {
		return nil, InvalidArgument("tensor %q is missing", name)
	}
	if p.InShm {
		// Only outputs travel in shared memory, and Client.Infer resolves them before this.
		return nil, InvalidArgument("tensor %q: in shared memory, which only outputs of a call that lent a slot may use", name)
	}
	t := &Tensor{DType: DType(p.Dtype), Shape: p.Shape, Data: p.Data}
	if err := t.Validate(); err != nil {
		return nil, InvalidArgument("tensor %q: %s", name, err.(*Error).Message)
	}
	return t, nil
}

func tensorsToPB(m map[string]*Tensor) (map[string]*pb.Tensor, error) {
	out := make(map[string]*pb.Tensor, len(m))
	for k, t := range m {
		if err := t.Validate(); err != nil {
			return nil, InvalidArgument("tensor %q: %s", k, err.(*Error).Message)
		}
		out[k] = tensorToPB(t)
	}
	return out, nil
}

func tensorsFromPB(m map[string]*pb.Tensor) (map[string]*Tensor, error) {
	out := make(map[string]*Tensor, len(m))
	for k, p := range m {
		t, err := tensorFromPB(k, p)
		if err != nil {
			return nil, err
		}
		out[k] = t
	}
	return out, nil
}

func specsToPB(s []TensorSpec) []*pb.TensorSpec {
	out := make([]*pb.TensorSpec, len(s))
	for i, x := range s {
		out[i] = &pb.TensorSpec{Name: x.Name, Dtype: string(x.DType), Shape: x.Shape, DimNames: x.DimNames}
	}
	return out
}

func specsFromPB(s []*pb.TensorSpec) []TensorSpec {
	out := make([]TensorSpec, len(s))
	for i, x := range s {
		out[i] = TensorSpec{Name: x.Name, DType: DType(x.Dtype), Shape: x.Shape, DimNames: x.DimNames}
	}
	return out
}

func modelInfoToPB(m ModelInfo) *pb.ModelInfo {
	return &pb.ModelInfo{Name: m.Name, Task: m.Task, Format: m.Format, Inputs: specsToPB(m.Inputs),
		Outputs: specsToPB(m.Outputs), Metadata: m.Metadata}
}

func modelInfoFromPB(m *pb.ModelInfo) ModelInfo {
	if m == nil {
		return ModelInfo{}
	}
	return ModelInfo{Name: m.Name, Task: m.Task, Format: m.Format, Inputs: specsFromPB(m.Inputs),
		Outputs: specsFromPB(m.Outputs), Metadata: m.Metadata}
}

func describeToPB(d *DescribeResponse) *pb.DescribeResponse {
	out := &pb.DescribeResponse{Name: d.Name, Version: d.Version, ProtocolVersion: int32(d.ProtocolVersion),
		Tasks: d.Tasks, Formats: d.Formats, Description: d.Description, Capabilities: d.Capabilities}
	for _, a := range d.ConfigSchema.Attributes {
		out.ConfigSchema = append(out.ConfigSchema, &pb.ConfigAttribute{Name: a.Name, Type: a.Type, Required: a.Required, Description: a.Description})
	}
	return out
}

func describeFromPB(p *pb.DescribeResponse) *DescribeResponse {
	d := &DescribeResponse{Name: p.Name, Version: p.Version, ProtocolVersion: int(p.ProtocolVersion),
		Tasks: p.Tasks, Formats: p.Formats, Description: p.Description, Capabilities: p.Capabilities}
	for _, a := range p.ConfigSchema {
		d.ConfigSchema.Attributes = append(d.ConfigSchema.Attributes, ConfigAttribute{Name: a.Name, Type: a.Type, Required: a.Required, Description: a.Description})
	}
	return d
}

func statsToPB(s *StatsResponse) *pb.StatsResponse {
	out := &pb.StatsResponse{OpenSessions: int32(s.OpenSessions), HeapBytes: s.HeapBytes, RssBytes: s.RSSBytes, Goroutines: s.Goroutines}
	for _, m := range s.Models {
		out.Models = append(out.Models, &pb.ModelStats{Name: m.Name, Task: m.Task, WeightBytes: m.WeightBytes, OpenSessions: int32(m.OpenSessions)})
	}
	return out
}

func statsFromPB(p *pb.StatsResponse) *StatsResponse {
	s := &StatsResponse{OpenSessions: int(p.OpenSessions), HeapBytes: p.HeapBytes, RSSBytes: p.RssBytes, Goroutines: p.Goroutines}
	for _, m := range p.Models {
		s.Models = append(s.Models, ModelStats{Name: m.Name, Task: m.Task, WeightBytes: m.WeightBytes, OpenSessions: int(m.OpenSessions)})
	}
	return s
}
