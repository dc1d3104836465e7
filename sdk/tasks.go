package sdk

import (
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
)

// CausalLMInput is a causal-lm Infer request, checked against the tensor contract.
type CausalLMInput struct {
	IDs      []int64 // (Batch, Len) row-major
	Batch    int
	Len      int
	Mask     []int64 // nil, or (Batch, P+Len) with 1 = attend, 0 = padding
	LastOnly bool    // Params[ParamLogits] == "last"
}

// CausalLMInputs reads and checks the inputs of a causal-lm request: "input_ids" int64 or int32
// of shape (B,T) with B, T > 0, an optional int64 "attention_mask" of rank 2, and
// Params[ParamLogits]. Errors are InvalidArgument and name the tensor or parameter.
func CausalLMInputs(req *InferRequest) (*CausalLMInput, error) {
	idsT, ok := req.Inputs["input_ids"]
	if !ok {
		return nil, InvalidArgument("causal-lm: input %q is missing (inputs: %s)", "input_ids", InputNames(req.Inputs))
	}
	if len(idsT.Shape) != 2 || idsT.Shape[0] == 0 || idsT.Shape[1] == 0 {
		return nil, InvalidArgument("causal-lm: input_ids must be a non-empty (batch, sequence) tensor, got shape %v", idsT.Shape)
	}
	ids, err := idsT.Int64s()
	if err != nil {
		return nil, InvalidArgument("causal-lm: input_ids: %v", err)
	}
	in := &CausalLMInput{IDs: ids, Batch: int(idsT.Shape[0]), Len: int(idsT.Shape[1])}
	if mt, ok := req.Inputs["attention_mask"]; ok {
		if len(mt.Shape) != 2 || mt.Shape[0] != idsT.Shape[0] {
			return nil, InvalidArgument("causal-lm: attention_mask must be (batch=%d, past+sequence), got shape %v", in.Batch, mt.Shape)
		}
		if in.Mask, err = mt.Int64s(); err != nil {
			return nil, InvalidArgument("causal-lm: attention_mask: %v", err)
		}
	}
	switch req.Params[ParamLogits] {
	case "", "all":
	case "last":
		in.LastOnly = true
	default:
		return nil, InvalidArgument("params.%s = %q: want \"all\" or \"last\"", ParamLogits, req.Params[ParamLogits])
	}
	return in, nil
}

// OutLen is the number of positions whose logits come back: 1 when LastOnly, else Len.
func (in *CausalLMInput) OutLen() int {
	if in.LastOnly {
		return 1
	}
	return in.Len
}

// VAEInput is a vae-encode or vae-decode request, checked against the tensor contract.
type VAEInput struct {
	Task       string    // TaskVAEEncode or TaskVAEDecode
	X          []float32 // "image" (encode) or "latent" (decode), (N,C,H,W)
	N, C, H, W int
}

// VAETask is the direction of a request to a vae model, the one rule that backends and the host
// share: Params[ParamTask] when set, else TaskVAEDecode when the inputs hold a "latent" and
// TaskVAEEncode otherwise.
func VAETask(req *InferRequest) string {
	if task := req.Params[ParamTask]; task != "" {
		return task
	}
	if _, ok := req.Inputs["latent"]; ok {
		return TaskVAEDecode
	}
	return TaskVAEEncode
}

// VAEInputs reads a request to a vae model: VAETask chooses the direction; the input must be a
// float32 (N,C,H,W) tensor.
func VAEInputs(req *InferRequest) (*VAEInput, error) {
	task := VAETask(req)
	name := map[string]string{TaskVAEEncode: "image", TaskVAEDecode: "latent"}[task]
	if name == "" {
		return nil, InvalidArgument("params.%s = %q: a vae model serves %s and %s", ParamTask, task, TaskVAEEncode, TaskVAEDecode)
	}
	t, ok := req.Inputs[name]
	if !ok {
		return nil, InvalidArgument("%s: input %q is missing (inputs: %s)", task, name, InputNames(req.Inputs))
	}
	if len(t.Shape) != 4 {
		return nil, InvalidArgument("%s: %s must be (batch, channels, height, width), got shape %v", task, name, t.Shape)
	}
	x, err := t.Float32s()
	if err != nil {
		return nil, InvalidArgument("%s: %s: %v", task, name, err)
	}
	s := t.Shape
	return &VAEInput{Task: task, X: x, N: int(s[0]), C: int(s[1]), H: int(s[2]), W: int(s[3])}, nil
}

// InputNames lists the names of m, sorted, for error messages.
func InputNames(m map[string]*Tensor) string {
	if len(m) == 0 {
		return "none"
	}
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return strings.Join(out, ", ")
}

// ProcessStats fills the process-wide fields of s: Go heap, resident set size (Linux), and
// goroutines.
func ProcessStats(s *StatsResponse) {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	s.HeapBytes = int64(ms.HeapAlloc)
	s.Goroutines = int64(runtime.NumGoroutine())
	if data, err := os.ReadFile("/proc/self/statm"); err == nil {
		if f := strings.Fields(string(data)); len(f) > 1 {
			pages, _ := strconv.ParseInt(f[1], 10, 64)
			s.RSSBytes = pages * int64(os.Getpagesize())
		}
	}
}
