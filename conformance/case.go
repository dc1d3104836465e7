package conformance

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/modelrt/modelrt/sdk"
)

// Format is the value of a case file's "format" field; a file with any other value is refused.
const Format = "modelrt-case/v1"

// Case tasks (the "task" field). The VAE's are the SDK's task names; files may also say
// "vae.encode" and "vae.decode", the names of format v1's first release (taskAliases).
const (
	TaskLogits    = "causal-lm.logits"   // input_ids [,attention_mask] → logits (B,T,V)
	TaskGenerate  = "causal-lm.generate" // input_ids, params.max_new_tokens, greedy → ids (B,P+N), exact
	TaskVAEEncode = sdk.TaskVAEEncode    // image → mean, logvar
	TaskVAEDecode = sdk.TaskVAEDecode    // latent → image
)

// taskAliases are the other names a case file may give a task; a loaded Case has the task's
// name.
var taskAliases = map[string]string{"vae.encode": TaskVAEEncode, "vae.decode": TaskVAEDecode}

// Default tolerances, used when a case has no "tolerance" object (or leaves one of its two
// fields out). An element passes when |got − want| ≤ abs + rel·|want| (numpy's allclose).
const (
	DefaultAbs = 1e-4
	DefaultRel = 1e-4
)

// MaxCaseBytes bounds a case file: cases are meant to be small, and the bound keeps a
// hostile file from making the loader allocate without limit.
const MaxCaseBytes = 64 << 20

// ErrCase is wrapped by every error about the contents of a case file.
var ErrCase = errors.New("conformance: invalid case")

// taskSpec is what a case task needs: its inputs (required and optional), its expected
// outputs, the params it accepts, and the sdk task its model is loaded with.
type taskSpec struct {
	inputs   []string // required, in order
	optional []string
	expected []string
	params   []string
	load     string
}

var tasks = map[string]taskSpec{
	TaskLogits:    {inputs: []string{"input_ids"}, optional: []string{"attention_mask"}, expected: []string{"logits"}, load: sdk.TaskCausalLM},
	TaskGenerate:  {inputs: []string{"input_ids"}, expected: []string{"ids"}, params: []string{"max_new_tokens", "greedy"}, load: sdk.TaskCausalLM},
	TaskVAEEncode: {inputs: []string{"image"}, expected: []string{"mean", "logvar"}, load: sdk.TaskVAE},
	TaskVAEDecode: {inputs: []string{"latent"}, expected: []string{"image"}, load: sdk.TaskVAE},
}

// Tasks returns the case tasks the runner knows, sorted.
func Tasks() []string {
	out := make([]string, 0, len(tasks))
	for t := range tasks {
		out = append(out, t)
	}
	sort.Strings(out)
	return out
}

// Case is one parsed and validated case file.
type Case struct {
	// File is the path the case was read from ("" for ParseCase without a name).
	File string
	Name string
	// Model is the model directory, resolved against the case file's directory.
	Model    string
	Task     string
	Inputs   map[string]*Tensor
	Params   Params
	Expected map[string]*Tensor
	Tol      Tolerance
}

// LoadTask returns the sdk task the case's model is loaded with (sdk.TaskCausalLM or sdk.TaskVAE).
func (c *Case) LoadTask() string { return tasks[c.Task].load }

// Params are a case's parameters. Only causal-lm.generate has any: max_new_tokens (required)
// and greedy, which may be left out (expected ids are exact only for greedy decoding, so it
// is implied) but not set to false.
type Params struct {
	MaxNewTokens int
	Greedy       bool
}

// Tolerance bounds |got − want| ≤ Abs + Rel·|want| per element.
type Tolerance struct {
	Abs float64 `json:"abs"`
	Rel float64 `json:"rel"`
}

// Tensor is a tensor of a case file: float32 values in F32, integer values in I64 (exact).
type Tensor struct {
	DType sdk.DType
	Shape []int64
	F32   []float32
	I64   []int64
}

// Len returns the number of elements.
func (t *Tensor) Len() int {
	if t.DType == sdk.Float32 {
		return len(t.F32)
	}
	return len(t.I64)
}

// SDK returns the tensor as an sdk.Tensor (int32 case tensors travel as int32).
func (t *Tensor) SDK() *sdk.Tensor {
	switch t.DType {
	case sdk.Float32:
		return sdk.FromFloat32(slices.Clone(t.Shape), slices.Clone(t.F32))
	case sdk.Int32:
		v := make([]int32, len(t.I64))
		for i, x := range t.I64 {
			v[i] = int32(x)
		}
		return sdk.FromInt32(slices.Clone(t.Shape), v)
	}
	return sdk.FromInt64(slices.Clone(t.Shape), slices.Clone(t.I64))
}

// fileJSON is the file's JSON shape (docs/sdk.md#case-files).
type fileJSON struct {
	Format    string                     `json:"format"`
	Name      string                     `json:"name"`
	Model     string                     `json:"model"`
	Task      string                     `json:"task"`
	Inputs    map[string]json.RawMessage `json:"inputs"`
	Params    map[string]json.RawMessage `json:"params"`
	Expected  map[string]json.RawMessage `json:"expected"`
	Tolerance *struct {
		Abs *float64 `json:"abs"`
		Rel *float64 `json:"rel"`
	} `json:"tolerance"`
}

type tensorJSON struct {
	DType string        `json:"dtype"`
	Shape []int64       `json:"shape"`
	Data  []json.Number `json:"data"`
}

// LoadCase reads and validates one case file. Errors wrap ErrCase and name the file and field.
func LoadCase(path string) (*Case, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("case %s: %w", path, err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxCaseBytes+1))
	if err != nil {
		return nil, fmt.Errorf("case %s: %w", path, err)
	}
	if len(data) > MaxCaseBytes {
		return nil, fmt.Errorf("%w: %s: larger than %d bytes", ErrCase, path, MaxCaseBytes)
	}
	return ParseCase(path, data)
}

// LoadDir reads every *.json file of dir (not of its subdirectories), sorted by name.
// It reports every invalid file, not only the first.
func LoadDir(dir string) ([]*Case, error) {
	paths, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		return nil, err
	}
	if len(paths) == 0 {
		return nil, fmt.Errorf("conformance: no *.json case files in %s", dir)
	}
	sort.Strings(paths)
	var cases []*Case
	var errs []error
	names := map[string]string{}
	for _, p := range paths {
		c, err := LoadCase(p)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if prev, ok := names[c.Name]; ok {
			errs = append(errs, fmt.Errorf("%w: %s: name %q is already used by %s", ErrCase, p, c.Name, prev))
			continue
		}
		names[c.Name] = p
		cases = append(cases, c)
	}
	return cases, errors.Join(errs...)
}

// ParseCase parses and validates the case file contents data; path names the file in errors
// and is the base of the relative model path.
func ParseCase(path string, data []byte) (*Case, error) {
	bad := func(field, format string, args ...any) error {
		return fmt.Errorf("%w: %s: %s: %s", ErrCase, path, field, fmt.Sprintf(format, args...))
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	dec.UseNumber()
	var fj fileJSON
	if err := dec.Decode(&fj); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrCase, path, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: %s: trailing data after the case object", ErrCase, path)
	}
	if fj.Format != Format {
		return nil, bad("format", "%q, want %q", fj.Format, Format)
	}
	if strings.TrimSpace(fj.Name) == "" {
		return nil, bad("name", "missing or empty")
	}
	if fj.Model == "" {
		return nil, bad("model", "missing or empty")
	}
	if t, ok := taskAliases[fj.Task]; ok {
		fj.Task = t
	}
	spec, ok := tasks[fj.Task]
	if !ok {
		return nil, bad("task", "%q, want one of %s", fj.Task, strings.Join(Tasks(), ", "))
	}
	c := &Case{File: path, Name: fj.Name, Task: fj.Task, Model: fj.Model,
		Inputs: map[string]*Tensor{}, Expected: map[string]*Tensor{}, Tol: Tolerance{Abs: DefaultAbs, Rel: DefaultRel}}
	if !filepath.IsAbs(c.Model) && path != "" {
		c.Model = filepath.Join(filepath.Dir(path), c.Model)
	}
	if err := parseTensors(fj.Inputs, "inputs", spec.inputs, spec.optional, c.Inputs, bad); err != nil {
		return nil, err
	}
	if err := parseTensors(fj.Expected, "expected", spec.expected, nil, c.Expected, bad); err != nil {
		return nil, err
	}
	if c.Task == TaskGenerate {
		c.Params.Greedy = true
	}
	for k, raw := range fj.Params {
		if !slices.Contains(spec.params, k) {
			if len(spec.params) == 0 {
				return nil, bad("params."+k, "task %s takes no params", c.Task)
			}
			return nil, bad("params."+k, "unknown; task %s takes %s", c.Task, strings.Join(spec.params, ", "))
		}
		if err := c.Params.set(k, raw); err != nil {
			return nil, bad("params."+k, "%v", err)
		}
	}
	if t := fj.Tolerance; t != nil {
		for name, v := range map[string]*float64{"abs": t.Abs, "rel": t.Rel} {
			if v == nil {
				continue
			}
			if !(*v >= 0) || math.IsInf(*v, 0) {
				return nil, bad("tolerance."+name, "%v, want a finite value ≥ 0", *v)
			}
		}
		if t.Abs != nil {
			c.Tol.Abs = *t.Abs
		}
		if t.Rel != nil {
			c.Tol.Rel = *t.Rel
		}
	}
	if err := c.checkShapes(bad); err != nil {
		return nil, err
	}
	return c, nil
}

func (p *Params) set(key string, raw json.RawMessage) error {
	switch key {
	case "max_new_tokens":
		var n json.Number
		if err := json.Unmarshal(raw, &n); err != nil {
			return fmt.Errorf("want an integer: %v", err)
		}
		v, err := strconv.Atoi(n.String())
		if err != nil || v <= 0 || v > 1<<20 {
			return fmt.Errorf("%s, want an integer in [1, %d]", n, 1<<20)
		}
		p.MaxNewTokens = v
	case "greedy":
		if err := json.Unmarshal(raw, &p.Greedy); err != nil {
			return fmt.Errorf("want true or false: %v", err)
		}
	}
	return nil
}

func parseTensors(m map[string]json.RawMessage, field string, required, optional []string, dst map[string]*Tensor, bad func(string, string, ...any) error) error {
	for _, name := range required {
		if _, ok := m[name]; !ok {
			return bad(field+"."+name, "missing")
		}
	}
	for name, raw := range m {
		if !slices.Contains(required, name) && !slices.Contains(optional, name) {
			return bad(field+"."+name, "unknown; want %s", strings.Join(append(slices.Clone(required), optional...), ", "))
		}
		t, err := parseTensor(raw)
		if err != nil {
			return bad(field+"."+name, "%v", err)
		}
		dst[name] = t
	}
	return nil
}

func parseTensor(raw json.RawMessage) (*Tensor, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	dec.UseNumber()
	var tj tensorJSON
	if err := dec.Decode(&tj); err != nil {
		return nil, err
	}
	if tj.Shape == nil {
		return nil, fmt.Errorf("shape is missing")
	}
	if tj.Data == nil {
		return nil, fmt.Errorf("data is missing")
	}
	t := &Tensor{DType: sdk.DType(tj.DType), Shape: tj.Shape}
	if t.DType != sdk.Float32 && t.DType != sdk.Int64 && t.DType != sdk.Int32 {
		return nil, fmt.Errorf("dtype %q, want float32, int64 or int32", tj.DType)
	}
	n, err := sdk.NumElements(tj.Shape, t.DType.Size())
	if err != nil {
		return nil, fmt.Errorf("shape: %v", err)
	}
	if int64(len(tj.Data)) != n {
		return nil, fmt.Errorf("shape %v has %d elements, data has %d", tj.Shape, n, len(tj.Data))
	}
	if t.DType == sdk.Float32 {
		t.F32 = make([]float32, n)
		for i, v := range tj.Data {
			f, err := strconv.ParseFloat(v.String(), 32)
			if err != nil || math.IsInf(f, 0) {
				return nil, fmt.Errorf("data[%d] = %s is not a finite float32", i, v)
			}
			t.F32[i] = float32(f)
		}
		return t, nil
	}
	bits := 64
	if t.DType == sdk.Int32 {
		bits = 32
	}
	t.I64 = make([]int64, n)
	for i, v := range tj.Data {
		x, err := strconv.ParseInt(v.String(), 10, bits)
		if err != nil {
			return nil, fmt.Errorf("data[%d] = %s is not an %s", i, v, t.DType)
		}
		t.I64[i] = x
	}
	return t, nil
}

// checkShapes validates the relations between the tensors of a task.
func (c *Case) checkShapes(bad func(string, string, ...any) error) error {
	rank := func(field, name string, t *Tensor, r int, float bool) error {
		if len(t.Shape) != r {
			return bad(field+"."+name, "shape %v, want rank %d", t.Shape, r)
		}
		if float != (t.DType == sdk.Float32) {
			want := "int64 or int32"
			if float {
				want = "float32"
			}
			return bad(field+"."+name, "dtype %s, want %s", t.DType, want)
		}
		for i, d := range t.Shape {
			if d == 0 {
				return bad(field+"."+name, "shape %v: dimension %d is 0", t.Shape, i)
			}
		}
		return nil
	}
	switch c.Task {
	case TaskLogits, TaskGenerate:
		ids := c.Inputs["input_ids"]
		if err := rank("inputs", "input_ids", ids, 2, false); err != nil {
			return err
		}
		for i, v := range ids.I64 {
			if v < 0 {
				return bad("inputs.input_ids", "data[%d] = %d is negative", i, v)
			}
		}
		if m, ok := c.Inputs["attention_mask"]; ok {
			if err := rank("inputs", "attention_mask", m, 2, false); err != nil {
				return err
			}
			if !slices.Equal(m.Shape, ids.Shape) {
				return bad("inputs.attention_mask", "shape %v, want input_ids' shape %v", m.Shape, ids.Shape)
			}
			for i, v := range m.I64 {
				if v != 0 && v != 1 {
					return bad("inputs.attention_mask", "data[%d] = %d, want 0 or 1", i, v)
				}
			}
			for b := range int(ids.Shape[0]) {
				if m.I64[(b+1)*int(ids.Shape[1])-1] != 1 {
					return bad("inputs.attention_mask", "row %d: the last position is padding; only left padding is defined", b)
				}
			}
		}
		if c.Task == TaskLogits {
			lg := c.Expected["logits"]
			if err := rank("expected", "logits", lg, 3, true); err != nil {
				return err
			}
			if lg.Shape[0] != ids.Shape[0] || lg.Shape[1] != ids.Shape[1] {
				return bad("expected.logits", "shape %v, want (%d, %d, vocab) for input_ids %v", lg.Shape, ids.Shape[0], ids.Shape[1], ids.Shape)
			}
			return nil
		}
		if c.Params.MaxNewTokens == 0 {
			return bad("params.max_new_tokens", "missing")
		}
		if !c.Params.Greedy {
			return bad("params.greedy", "must be true: expected ids are exact only for greedy decoding")
		}
		want := c.Expected["ids"]
		if err := rank("expected", "ids", want, 2, false); err != nil {
			return err
		}
		if want.Shape[0] != ids.Shape[0] || want.Shape[1] != ids.Shape[1]+int64(c.Params.MaxNewTokens) {
			return bad("expected.ids", "shape %v, want (%d, %d): the prompt then max_new_tokens = %d ids",
				want.Shape, ids.Shape[0], ids.Shape[1]+int64(c.Params.MaxNewTokens), c.Params.MaxNewTokens)
		}
		B, P, L := int(ids.Shape[0]), int(ids.Shape[1]), int(want.Shape[1])
		for b := range B {
			if !slices.Equal(want.I64[b*L:b*L+P], ids.I64[b*P:(b+1)*P]) {
				return bad("expected.ids", "row %d does not start with the prompt", b)
			}
		}
	case TaskVAEEncode:
		img := c.Inputs["image"]
		if err := rank("inputs", "image", img, 4, true); err != nil {
			return err
		}
		mean, logvar := c.Expected["mean"], c.Expected["logvar"]
		if err := rank("expected", "mean", mean, 4, true); err != nil {
			return err
		}
		if err := rank("expected", "logvar", logvar, 4, true); err != nil {
			return err
		}
		if !slices.Equal(mean.Shape, logvar.Shape) {
			return bad("expected.logvar", "shape %v, want mean's shape %v", logvar.Shape, mean.Shape)
		}
		if mean.Shape[0] != img.Shape[0] {
			return bad("expected.mean", "batch %d, want the image's batch %d", mean.Shape[0], img.Shape[0])
		}
	case TaskVAEDecode:
		lat := c.Inputs["latent"]
		if err := rank("inputs", "latent", lat, 4, true); err != nil {
			return err
		}
		img := c.Expected["image"]
		if err := rank("expected", "image", img, 4, true); err != nil {
			return err
		}
		if img.Shape[0] != lat.Shape[0] {
			return bad("expected.image", "batch %d, want the latent's batch %d", img.Shape[0], lat.Shape[0])
		}
	}
	return nil
}

// Marshal encodes c as a case file (Model as given, relative to where the file will be).
func (c *Case) Marshal() ([]byte, error) {
	var b bytes.Buffer
	b.WriteString("{\n")
	fmt.Fprintf(&b, "  \"format\": %q,\n  \"name\": %s,\n  \"model\": %s,\n  \"task\": %q,\n", Format, jsonString(c.Name), jsonString(c.Model), c.Task)
	writeTensors := func(field string, m map[string]*Tensor) {
		fmt.Fprintf(&b, "  %q: {", field)
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for i, k := range keys {
			if i > 0 {
				b.WriteString(",")
			}
			t := m[k]
			shape, _ := json.Marshal(t.Shape)
			fmt.Fprintf(&b, "\n    %s: { \"dtype\": %q, \"shape\": %s, \"data\": [", jsonString(k), t.DType, shape)
			for j := range t.Len() {
				if j > 0 {
					b.WriteString(",")
				}
				if t.DType == sdk.Float32 {
					b.WriteString(strconv.FormatFloat(float64(t.F32[j]), 'g', -1, 32))
				} else {
					b.WriteString(strconv.FormatInt(t.I64[j], 10))
				}
			}
			b.WriteString("] }")
		}
		b.WriteString("\n  },\n")
	}
	writeTensors("inputs", c.Inputs)
	b.WriteString("  \"params\": {")
	if c.Task == TaskGenerate {
		fmt.Fprintf(&b, " \"max_new_tokens\": %d, \"greedy\": %t ", c.Params.MaxNewTokens, c.Params.Greedy)
	}
	b.WriteString("},\n")
	writeTensors("expected", c.Expected)
	tol, _ := json.Marshal(c.Tol)
	fmt.Fprintf(&b, "  \"tolerance\": %s\n}\n", tol)
	return b.Bytes(), nil
}

func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
