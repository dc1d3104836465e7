package sdk

import (
	"context"
	"encoding/json"
)

// ProtocolVersion is the major version of the host–backend protocol this package speaks.
const ProtocolVersion = 1

// Tasks of the tensor contract (docs/sdk.md has the tensor names and shapes of each).
const (
	// TaskCausalLM: inputs "input_ids" int64 (B,T) and optional "attention_mask" int64 (B,P+T);
	// output "logits" float32 (B,T,V), or (B,1,V) when Params[ParamLogits] == "last".
	TaskCausalLM = "causal-lm"
	// TaskVAEEncode: input "image" float32 (B,C,H,W) in [-1,1]; outputs "mean", "logvar" (B,L,H/f,W/f).
	TaskVAEEncode = "vae-encode"
	// TaskVAEDecode: input "latent" float32 (B,L,h,w); output "image" float32 (B,C,h·f,w·f).
	TaskVAEDecode = "vae-decode"
	// TaskVAE is the task a VAE model is loaded with; it serves both vae-encode and vae-decode.
	TaskVAE = "vae"
	// TaskGraph: whatever named tensors the model declares, to its named outputs.
	TaskGraph = "graph"
)

// Infer parameters understood by every causal-lm backend.
const (
	// ParamLogits selects which positions' logits come back: "all" (default) or "last".
	ParamLogits = "logits"
	// ParamTask selects the task of an Infer call on a model that serves several (a VAE:
	// TaskVAEEncode or TaskVAEDecode).
	ParamTask = "task"
	// ParamLinger is a hint on a causal-lm session's Infer call: the caller will send the
	// session's next call within about this long (a Go duration, e.g. "3ms"), as a decode loop
	// does when nothing else shares its process. A backend may keep its threads polling for that
	// long instead of parking them, spending CPU to save the wake-ups; it may also ignore it.
	// The daemon, whose steps share the cores with its HTTP work, does not send it.
	ParamLinger = "linger"
)

// Backend is what every backend implements. Each method gets the caller's context first:
// cancelling it (or its deadline) reaches the backend through gRPC.
type Backend interface {
	// Describe says who the backend is and what it can do. It must not need a loaded model.
	Describe(ctx context.Context, req *DescribeRequest) (*DescribeResponse, error)
	// LoadModel loads the model directory req.Path under the name req.Name. Loading a name that
	// is already loaded replaces it.
	LoadModel(ctx context.Context, req *LoadModelRequest) (*LoadModelResponse, error)
	// UnloadModel frees a model and closes its sessions. An unknown name is NotFound.
	UnloadModel(ctx context.Context, req *UnloadModelRequest) (*UnloadModelResponse, error)
	// Infer runs the model on named tensors. With a Session, a causal-lm backend appends the
	// inputs to the session's KV cache instead of starting from scratch.
	Infer(ctx context.Context, req *InferRequest) (*InferResponse, error)
	// Health reports whether the backend can serve.
	Health(ctx context.Context, req *HealthRequest) (*HealthResponse, error)
}

// Sessions is implemented by backends that keep per-session state (the KV cache of a
// causal LM). A backend without it answers OpenSession with CodeUnimplemented.
type Sessions interface {
	OpenSession(ctx context.Context, req *OpenSessionRequest) (*OpenSessionResponse, error)
	CloseSession(ctx context.Context, req *CloseSessionRequest) (*CloseSessionResponse, error)
}

// Configurer is implemented by backends that take the `config` block of their HCL `backend`
// block. The host calls Configure once, after start and before any LoadModel.
type Configurer interface {
	Configure(ctx context.Context, req *ConfigureRequest) (*ConfigureResponse, error)
}

// StatsReporter is implemented by backends that report resource use.
type StatsReporter interface {
	Stats(ctx context.Context, req *StatsRequest) (*StatsResponse, error)
}

// DescribeRequest asks a backend to describe itself.
type DescribeRequest struct{}

// DescribeResponse describes a backend.
type DescribeResponse struct {
	Name            string
	Version         string
	ProtocolVersion int
	Description     string
	Tasks           []string // TaskCausalLM, TaskVAE, TaskGraph, ...
	Formats         []string // "safetensors", "onnx", ...
	// ConfigSchema declares the attributes of the HCL `config` block this backend accepts.
	ConfigSchema ConfigSchema
	// Capabilities lists the optional protocol features the backend implements beyond the v1
	// core (CapabilityStep). Hosts must not use a feature that is not listed.
	Capabilities []string
}

// ConfigSchema declares the attributes of a backend's HCL `config` block. The host validates
// the block against it before the backend sees it.
type ConfigSchema struct {
	Attributes []ConfigAttribute
}

// ConfigAttribute is one attribute of a backend config block.
type ConfigAttribute struct {
	Name string
	// Type is an HCL type expression: "string", "number", "bool", "list(string)", "map(string)".
	Type        string
	Required    bool
	Description string
}

// ConfigureRequest carries the backend's config block as a JSON object whose attributes follow
// the ConfigSchema (numbers as JSON numbers, lists as arrays).
type ConfigureRequest struct {
	Config json.RawMessage
}

// ConfigureResponse is empty.
type ConfigureResponse struct{}

// LoadModelRequest asks to load the model directory Path as Name for Task.
type LoadModelRequest struct {
	Name    string
	Path    string
	Task    string
	Options map[string]string
}

// LoadModelResponse describes the loaded model.
type LoadModelResponse struct {
	Model ModelInfo
}

// ModelInfo describes a loaded model.
type ModelInfo struct {
	Name    string
	Task    string
	Format  string
	Inputs  []TensorSpec
	Outputs []TensorSpec
	// Metadata carries task-specific facts as strings: write it with LMFacts.Metadata or
	// VAEFacts.Metadata, read it with LMFactsOf or VAEFactsOf (facts.go has the keys).
	Metadata map[string]string
}

// TensorSpec declares a named tensor; -1 marks a dynamic dimension.
type TensorSpec struct {
	Name     string
	DType    DType
	Shape    []int64
	DimNames []string
}

// UnloadModelRequest names the model to unload.
type UnloadModelRequest struct{ Name string }

// UnloadModelResponse is empty.
type UnloadModelResponse struct{}

// InferRequest runs Model on Inputs. Outputs selects output names (empty: all).
type InferRequest struct {
	Model   string
	Session string
	Inputs  map[string]*Tensor
	Outputs []string
	Params  map[string]string
	// OutputBuffers is a host-side hint that never crosses the wire: memory the caller no
	// longer needs, which Client.Infer may fill with the named output instead of allocating
	// (outputs that arrive through shared memory and fit its capacity; the returned tensor's
	// Data then shares it). A decode loop passes last step's logits here and allocates
	// nothing per token. Backends ignore it.
	OutputBuffers map[string][]byte
}

// InferResponse carries the named outputs.
type InferResponse struct {
	Outputs map[string]*Tensor
	// Release, when set, is the backend's: Serve calls it exactly once when it no longer reads
	// the memory of Outputs' Data — after copying them into the call's shared-memory slot, or
	// into memory of its own for those that travel inline — and before the answer leaves. A
	// backend that returns pooled buffers (a decode step's logits) takes them back here, so
	// that a step allocates nothing for its outputs. It never crosses the wire; a caller of a
	// Backend in process that keeps the outputs simply never calls it.
	Release func()
}

// OpenSessionRequest opens a session of Model for BatchSize rows.
type OpenSessionRequest struct {
	Model     string
	BatchSize int
	Params    map[string]string
}

// OpenSessionResponse names the new session.
type OpenSessionResponse struct{ Session string }

// CloseSessionRequest closes a session and frees its state.
type CloseSessionRequest struct{ Session string }

// CloseSessionResponse is empty.
type CloseSessionResponse struct{}

// HealthRequest asks for health.
type HealthRequest struct{}

// HealthResponse reports health: Status is "ok" or "degraded" with a Message.
type HealthResponse struct {
	Status  string
	Message string
}

// StatsRequest asks for resource use.
type StatsRequest struct{}

// StatsResponse reports resource use.
type StatsResponse struct {
	Models       []ModelStats
	OpenSessions int
	HeapBytes    int64
	RSSBytes     int64
	Goroutines   int64
}

// ModelStats reports one loaded model.
type ModelStats struct {
	Name         string
	Task         string
	WeightBytes  int64
	OpenSessions int
}
