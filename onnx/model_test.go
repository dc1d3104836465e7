package onnx_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/modelrt/modelrt/onnx"
	"github.com/modelrt/modelrt/onnx/graph"
	"github.com/modelrt/modelrt/onnx/onnxpb"
)

// tinyModel builds y = MatMul(x, w) + b with a symbolic batch dim; w has wElems floats, so that a
// caller can push it over the external-data size.
func tinyModel(t testing.TB, wCols int) *graph.Builder {
	t.Helper()
	b := graph.New("tiny")
	x := b.Input("x", graph.Float, "batch", 4)
	w := make([]float32, 4*wCols)
	for i := range w {
		w[i] = float32(i) * 0.5
	}
	wn := b.Float32("w", []int64{4, int64(wCols)}, w)
	bn := b.Float32("b", []int64{int64(wCols)}, make([]float32, wCols))
	mm := b.Node("MatMul", []string{x, wn})
	b.NodeTo("Add", []string{mm, bn}, []string{"y"})
	b.Output("y", graph.Float, "batch", wCols)
	return b
}

func saveTiny(t testing.TB, dir string, external bool) string {
	t.Helper()
	path := filepath.Join(dir, "model.onnx")
	m := tinyModel(t, 512).Model(graph.ModelOptions{Opset: 14, ProducerName: "modelrt-test", ProducerVersion: "0"})
	if err := graph.Save(m, path, graph.SaveOptions{External: external}); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestReadSummary(t *testing.T) {
	for _, external := range []bool{false, true} {
		path := saveTiny(t, t.TempDir(), external)
		addMetadata(t, path, "source", "unit test")
		m, err := onnx.Read(path)
		if err != nil {
			t.Fatal(err)
		}
		s := m.Summary()
		if s.IRVersion != graph.DefaultIRVersion || s.ProducerName != "modelrt-test" {
			t.Errorf("external=%v: ir %d producer %q", external, s.IRVersion, s.ProducerName)
		}
		if !reflect.DeepEqual(s.Opsets, []onnx.Opset{{Domain: "", Version: 14}}) {
			t.Errorf("opsets %+v", s.Opsets)
		}
		wantIn := []onnx.Value{{Name: "x", DType: "float32", Dims: []onnx.Dim{{Param: "batch", Known: true}, {Size: 4, Known: true}}}}
		if !reflect.DeepEqual(s.Inputs, wantIn) {
			t.Errorf("inputs %+v, want %+v", s.Inputs, wantIn)
		}
		if len(s.Outputs) != 1 || s.Outputs[0].Name != "y" {
			t.Errorf("outputs %+v", s.Outputs)
		}
		wantBytes := int64(4 * (4*512 + 512))
		if s.Initializers != 2 || s.InitializerBytes != wantBytes {
			t.Errorf("initializers %d (%d bytes), want 2 (%d bytes)", s.Initializers, s.InitializerBytes, wantBytes)
		}
		if external && (len(s.External) != 1 || s.ExternalBytes != wantBytes || s.External[0].Location != "model.onnx_data") {
			t.Errorf("external: files %+v, %d bytes, want model.onnx_data with %d", s.External, s.ExternalBytes, wantBytes)
		}
		if !external && (len(s.External) != 0 || s.ExternalBytes != 0) {
			t.Errorf("inline model reports external data %+v", s.External)
		}
		if s.Nodes != 2 || !reflect.DeepEqual(s.Ops, []onnx.OpCount{{Op: "Add", Count: 1}, {Op: "MatMul", Count: 1}}) {
			t.Errorf("nodes %d ops %+v", s.Nodes, s.Ops)
		}
		// Tensor data comes back the same either way.
		for _, init := range m.Proto.Graph.Initializer {
			raw, err := m.TensorBytes(init)
			if err != nil {
				t.Fatal(err)
			}
			if init.GetName() == "w" {
				vals, err := onnx.DecodeFloat32s(onnx.DataType(init.GetDataType()), raw, "w")
				if err != nil {
					t.Fatal(err)
				}
				if vals[3] != 1.5 || len(vals) != 4*512 {
					t.Errorf("external=%v: w[3]=%v len %d", external, vals[3], len(vals))
				}
			}
		}
		var buf bytes.Buffer
		if err := s.WriteText(&buf); err != nil {
			t.Fatal(err)
		}
		text := buf.String()
		for _, want := range []string{"ir_version:   8", "producer:     modelrt-test 0", "ai.onnx 14", "x  float32  [batch, 4]", "y  float32  [batch, 512]", "initializers: 2 (", "MatMul", "metadata:     source = unit test"} {
			if !strings.Contains(text, want) {
				t.Errorf("external=%v: summary lacks %q:\n%s", external, want, text)
			}
		}
	}
}

// addMetadata rewrites the model at path with one metadata_props entry.
func addMetadata(t *testing.T, path, k, v string) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	m, err := onnx.Decode(raw)
	if err != nil {
		t.Fatal(err)
	}
	m.Proto.MetadataProps = append(m.Proto.MetadataProps, &onnxpb.StringStringEntryProto{Key: &k, Value: &v})
	if raw, err = proto.Marshal(m.Proto); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, raw, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestInspect(t *testing.T) {
	path := saveTiny(t, t.TempDir(), false)
	var buf bytes.Buffer
	if err := onnx.Inspect(path, &buf); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), "file:         "+path) {
		t.Errorf("Inspect output does not name the file:\n%s", buf.String())
	}
}

func TestReadBadInput(t *testing.T) {
	dir := t.TempDir()
	good, err := os.ReadFile(saveTiny(t, dir, false))
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cases := []struct {
		name string
		path string
		want error
	}{
		{"text", write("notes.onnx", []byte("this is not a model\n")), onnx.ErrNotONNX},
		{"empty", write("empty.onnx", nil), onnx.ErrNotONNX},
		{"truncated", write("trunc.onnx", good[:len(good)/2]), onnx.ErrNotONNX},
		{"missing", filepath.Join(dir, "absent.onnx"), os.ErrNotExist},
	}
	for _, c := range cases {
		_, err := onnx.Read(c.path)
		if !errors.Is(err, c.want) {
			t.Errorf("%s: error %v, want %v", c.name, err, c.want)
			continue
		}
		if !strings.Contains(err.Error(), c.path) {
			t.Errorf("%s: error %q does not name the file", c.name, err)
		}
	}
}

func TestReadExternalDataErrors(t *testing.T) {
	dir := t.TempDir()
	path := saveTiny(t, dir, true)
	data := filepath.Join(dir, "model.onnx_data")

	// Too short: the second tensor's range runs past the end.
	full, err := os.ReadFile(data)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(data, full[:100], 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := onnx.Read(path); !errors.Is(err, onnx.ErrExternalData) || !strings.Contains(err.Error(), "outside model.onnx_data") {
		t.Errorf("short data file: %v", err)
	}

	if err := os.Remove(data); err != nil {
		t.Fatal(err)
	}
	_, err = onnx.Read(path)
	if !errors.Is(err, onnx.ErrExternalData) || !strings.Contains(err.Error(), data) {
		t.Errorf("missing data file: error %v, want ErrExternalData naming %s", err, data)
	}

	// A location that escapes the model's directory is refused before any file is opened.
	m := tinyModel(t, 512).Model(graph.ModelOptions{})
	if err := graph.Save(m, path, graph.SaveOptions{External: true}); err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(path)
	mod, err := onnx.Decode(raw)
	if err != nil {
		t.Fatal(err)
	}
	for _, init := range mod.Proto.Graph.Initializer {
		for _, kv := range init.ExternalData {
			if kv.GetKey() == "location" {
				v := "../../etc/passwd"
				kv.Value = &v
			}
		}
	}
	bad, _ := proto.Marshal(mod.Proto)
	if err := os.WriteFile(path, bad, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := onnx.Read(path); !errors.Is(err, onnx.ErrExternalData) || !strings.Contains(err.Error(), "not a relative path") {
		t.Errorf("escaping location: %v", err)
	}
}

// FuzzRead feeds arbitrary bytes to Read through a file, so that external data resolution runs
// too; the seeds are small valid models (inline and external) and broken ones.
func FuzzRead(f *testing.F) {
	good, err := proto.Marshal(tinyModel(f, 3).Model(graph.ModelOptions{}))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add(good[:len(good)/2])
	f.Add(good[:1])
	f.Add([]byte("not a model"))
	f.Add([]byte{})
	extPath := saveTiny(f, f.TempDir(), true)
	ext, err := os.ReadFile(extPath)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(ext) // its data file is absent in the fuzz directory
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		path := filepath.Join(dir, "m.onnx")
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		// A data file for references that stay inside it.
		if err := os.WriteFile(filepath.Join(dir, "model.onnx_data"), make([]byte, 256), 0o644); err != nil {
			t.Fatal(err)
		}
		m, err := onnx.Read(path)
		if err != nil {
			if !errors.Is(err, onnx.ErrNotONNX) && !errors.Is(err, onnx.ErrExternalData) {
				t.Fatalf("error %v wraps neither ErrNotONNX nor ErrExternalData", err)
			}
			if !strings.Contains(err.Error(), path) {
				t.Fatalf("error %q does not name the file", err)
			}
			return
		}
		if err := m.Summary().WriteText(&bytes.Buffer{}); err != nil {
			t.Fatal(err)
		}
		for _, init := range onnx.Initializers(m.Proto.Graph) {
			_, _ = m.TensorBytes(init)
			_, _ = onnx.Float32s(init)
			_, _ = onnx.Int64s(init)
		}
	})
}

// TestReadTorchExports reads graphs written by torch.onnx.export (scripts/fixtures), an
// independent writer, and checks what the summary reports about them.
func TestReadTorchExports(t *testing.T) {
	cases := []struct {
		dir        string
		opset      int64
		inputs     int
		firstInput string
		pastDims   string // dims of the first past input, "" when none
	}{
		{"gpt2-odd-onnx-optimum-op14", 14, 3 + 2*3, "input_ids", "batch_size,3,past_sequence_length,16"},
		{"gpt2-odd-onnx-optimum-op17", 17, 2 + 2*3, "input_ids", "batch_size,3,past_sequence_length,16"}, // no position_ids
		{"gpt2-odd-onnx-nocache-op17", 17, 2, "input_ids", ""},
	}
	for _, c := range cases {
		path := filepath.Join("..", "testdata", "models", c.dir, "model.onnx")
		m, err := onnx.Read(path)
		if err != nil {
			t.Fatalf("%s (fixture from scripts/fixtures): %v", c.dir, err)
		}
		s := m.Summary()
		if s.ProducerName != "pytorch" || s.Opsets[0].Version != c.opset || len(s.Inputs) != c.inputs || s.Inputs[0].Name != c.firstInput {
			t.Errorf("%s: producer %q opsets %+v inputs %d (%s)", c.dir, s.ProducerName, s.Opsets, len(s.Inputs), s.Inputs[0].Name)
		}
		for _, in := range s.Inputs {
			if in.Name != "past_key_values.0.key" {
				continue
			}
			var ds []string
			for _, d := range in.Dims {
				ds = append(ds, d.String())
			}
			if got := strings.Join(ds, ","); got != c.pastDims || in.DType != "float32" {
				t.Errorf("%s: %s %s [%s], want float32 [%s]", c.dir, in.Name, in.DType, got, c.pastDims)
			}
			c.pastDims = "seen"
		}
		if c.pastDims != "" && c.pastDims != "seen" {
			t.Errorf("%s: no past_key_values.0.key input", c.dir)
		}
		if s.Initializers == 0 || s.InitializerBytes < 400_000 || s.Nodes < 100 {
			t.Errorf("%s: %d initializers (%d bytes), %d nodes", c.dir, s.Initializers, s.InitializerBytes, s.Nodes)
		}
	}
}
