package graph_test

import (
	"os"
	"path/filepath"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/modelrt/modelrt/onnx"
	"github.com/modelrt/modelrt/onnx/graph"
	"github.com/modelrt/modelrt/onnx/onnxpb"
)

func TestUniqueNames(t *testing.T) {
	b := graph.New("g")
	x := b.Input("x", graph.Float, "n")
	a := b.Node("Relu", []string{x})
	c := b.Node("Relu", []string{a})
	w1 := b.Float32("w", nil, []float32{1})
	w2 := b.Float32("w", nil, []float32{2})
	if a == c || w1 == w2 || a == "" {
		t.Fatalf("names not unique: %q %q %q %q", a, c, w1, w2)
	}
	seen := map[string]bool{}
	for _, n := range b.Graph().Node {
		if seen[n.GetName()] {
			t.Errorf("node name %q repeated", n.GetName())
		}
		seen[n.GetName()] = true
	}
	defer func() {
		if recover() == nil {
			t.Error("NodeTo onto an existing value name did not panic")
		}
	}()
	b.NodeTo("Relu", []string{x}, []string{a})
}

func TestTensorSizeMismatchPanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("Tensor with the wrong byte count did not panic")
		}
	}()
	graph.New("g").Tensor("w", graph.Float, []int64{2, 2}, make([]byte, 12))
}

// TestSaveThreshold checks that external data is chosen by size and that Save leaves the model
// as it was (tensor data back inline).
func TestSaveThreshold(t *testing.T) {
	b := graph.New("g")
	x := b.Input("x", graph.Float, 1024)
	w := b.Float32("w", []int64{1024}, make([]float32, 1024)) // 4 KiB: external when over threshold
	b.Ints("small", 1, 2, 3)                                  // stays inline regardless
	b.NodeTo("Add", []string{x, w}, []string{"y"})
	b.Output("y", graph.Float, 1024)
	m := b.Model(graph.ModelOptions{})
	before, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		threshold int64
		external  bool
	}{{1 << 20, false}, {100, true}} {
		dir := t.TempDir()
		path := filepath.Join(dir, "m.onnx")
		if err := graph.Save(m, path, graph.SaveOptions{Threshold: c.threshold}); err != nil {
			t.Fatal(err)
		}
		after, _ := proto.Marshal(m)
		if !proto.Equal(m, mustUnmarshal(t, before)) || len(after) != len(before) {
			t.Errorf("threshold %d: Save changed the model", c.threshold)
		}
		got, err := onnx.Read(path)
		if err != nil {
			t.Fatal(err)
		}
		s := got.Summary()
		if (len(s.External) == 1) != c.external || s.InitializerBytes != 4096+24 {
			t.Errorf("threshold %d: external %+v, %d bytes", c.threshold, s.External, s.InitializerBytes)
		}
		if c.external && s.ExternalBytes != 4096 {
			t.Errorf("threshold %d: %d external bytes, want 4096 (small tensors inline)", c.threshold, s.ExternalBytes)
		}
		st, err := os.Stat(path)
		if err != nil || st.Mode().Perm() != 0o644 {
			t.Errorf("model file mode %v, %v", st.Mode(), err)
		}
	}
}

func mustUnmarshal(t *testing.T, data []byte) *onnxpb.ModelProto {
	t.Helper()
	var m onnxpb.ModelProto
	if err := proto.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	return &m
}
