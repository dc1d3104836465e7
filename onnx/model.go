// Package onnx reads ONNX model files: it decodes the protobuf (generated types in onnx/onnxpb),
// resolves external data files, decodes tensors, and summarises a model for `modelrt inspect`.
//
// Building graphs is in onnx/graph and exporting native models is in onnx/export. Everything
// here is pure Go: running a graph is the onnxrt plugin's business.
package onnx

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/modelrt/modelrt/onnx/onnxpb"
)

// Sentinel errors, matched with errors.Is.
var (
	// ErrNotONNX reports bytes that do not decode as an ONNX ModelProto with a graph.
	ErrNotONNX = errors.New("onnx: not an ONNX model")
	// ErrExternalData reports an external data reference that is missing, escapes the model's
	// directory, or points outside its file.
	ErrExternalData = errors.New("onnx: bad external data")
)

// Model is a decoded ONNX model and the place it was read from.
type Model struct {
	// Path is the file the model was read from ("" when decoded from bytes).
	Path string
	// Proto is the decoded model; callers may read it but should not modify it.
	Proto *onnxpb.ModelProto
	// External lists the external data files the initializers refer to, resolved against the
	// model's directory, in first-reference order.
	External []ExternalFile
}

// ExternalFile is one external data file and its size on disk.
type ExternalFile struct {
	Location string // as written in the model, relative to the model's directory
	Path     string // resolved path
	Size     int64
}

// Read reads and decodes the ONNX model at path, and checks that every external data file its
// initializers name exists (relative to the model's directory) and is large enough for the
// offset and length recorded for each tensor. The external data itself is not loaded.
func Read(path string) (*Model, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("onnx: %w", err) // names path
	}
	m, err := Decode(data)
	if err != nil {
		return nil, &fileError{path, err}
	}
	m.Path = path
	if err := m.resolveExternal(filepath.Dir(path)); err != nil {
		return nil, &fileError{path, err}
	}
	return m, nil
}

// fileError puts the model's path after the package prefix of an error from this package:
// "onnx: m.onnx: not an ONNX model: ...".
type fileError struct {
	path string
	err  error
}

func (e *fileError) Error() string {
	return "onnx: " + e.path + ": " + strings.TrimPrefix(e.err.Error(), "onnx: ")
}

func (e *fileError) Unwrap() error { return e.err }

// Decode decodes an ONNX model from its protobuf bytes. It does not touch external data (use
// Read for files). Bytes that are not a protobuf, or a protobuf without a graph and IR version,
// give an error wrapping ErrNotONNX.
func Decode(data []byte) (*Model, error) {
	if len(data) == 0 {
		return nil, fmt.Errorf("%w: empty file", ErrNotONNX)
	}
	var mp onnxpb.ModelProto
	if err := proto.Unmarshal(data, &mp); err != nil {
		return nil, fmt.Errorf("%w: truncated or corrupt protobuf (%d bytes): %v", ErrNotONNX, len(data), err)
	}
	// Random bytes sometimes parse as a protobuf made of unknown fields; a model needs at least
	// an IR version and a graph.
	if mp.GetIrVersion() <= 0 || mp.Graph == nil {
		return nil, fmt.Errorf("%w: no ir_version or graph in %d bytes of protobuf", ErrNotONNX, len(data))
	}
	return &Model{Proto: &mp}, nil
}

// externalRef is the parsed external_data of one tensor.
type externalRef struct {
	location       string
	offset, length int64 // length -1: to the end of the file
}

func parseExternal(t *onnxpb.TensorProto) (externalRef, error) {
	ref := externalRef{length: -1}
	for _, kv := range t.ExternalData {
		var err error
		switch kv.GetKey() {
		case "location":
			ref.location = kv.GetValue()
		case "offset":
			ref.offset, err = strconv.ParseInt(kv.GetValue(), 10, 64)
		case "length":
			ref.length, err = strconv.ParseInt(kv.GetValue(), 10, 64)
		}
		if err != nil {
			return ref, fmt.Errorf("%w: tensor %q: %s=%q: %v", ErrExternalData, t.GetName(), kv.GetKey(), kv.GetValue(), err)
		}
	}
	if ref.location == "" {
		return ref, fmt.Errorf("%w: tensor %q has no location", ErrExternalData, t.GetName())
	}
	if ref.offset < 0 || ref.length < -1 {
		return ref, fmt.Errorf("%w: tensor %q: negative offset or length", ErrExternalData, t.GetName())
	}
	// ONNX requires locations relative to the model, inside its directory.
	if filepath.IsAbs(ref.location) || !filepath.IsLocal(filepath.FromSlash(ref.location)) {
		return ref, fmt.Errorf("%w: tensor %q: location %q is not a relative path inside the model's directory", ErrExternalData, t.GetName(), ref.location)
	}
	return ref, nil
}

func isExternal(t *onnxpb.TensorProto) bool {
	return t.GetDataLocation() == onnxpb.TensorProto_EXTERNAL
}

// resolveExternal stats every external data file once and checks every reference against it.
func (m *Model) resolveExternal(dir string) error {
	sizes := map[string]int64{}
	for _, t := range Initializers(m.Proto.Graph) {
		if !isExternal(t) {
			continue
		}
		ref, err := parseExternal(t)
		if err != nil {
			return err
		}
		size, seen := sizes[ref.location]
		if !seen {
			p := filepath.Join(dir, filepath.FromSlash(ref.location))
			st, err := os.Stat(p)
			if err != nil {
				return fmt.Errorf("%w: tensor %q: external data file %s: %v", ErrExternalData, t.GetName(), p, err)
			}
			size = st.Size()
			sizes[ref.location] = size
			m.External = append(m.External, ExternalFile{Location: ref.location, Path: p, Size: size})
		}
		// Compare by subtraction: offset+length may overflow.
		if ref.offset > size || ref.length > size-ref.offset {
			return fmt.Errorf("%w: tensor %q: offset %d, length %d is outside %s (%d bytes)", ErrExternalData, t.GetName(), ref.offset, ref.length, ref.location, size)
		}
	}
	return nil
}

// TensorBytes returns the little-endian raw bytes of an initializer: raw_data, the typed data
// fields encoded as raw bytes, or the tensor's range of its external data file (which needs a
// Model read from a file).
func (m *Model) TensorBytes(t *onnxpb.TensorProto) ([]byte, error) {
	if !isExternal(t) {
		return RawData(t)
	}
	if m.Path == "" {
		return nil, fmt.Errorf("%w: tensor %q is external but the model was not read from a file", ErrExternalData, t.GetName())
	}
	ref, err := parseExternal(t)
	if err != nil {
		return nil, err
	}
	p := filepath.Join(filepath.Dir(m.Path), filepath.FromSlash(ref.location))
	f, err := os.Open(p)
	if err != nil {
		return nil, fmt.Errorf("%w: tensor %q: %v", ErrExternalData, t.GetName(), err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("%w: tensor %q: %v", ErrExternalData, t.GetName(), err)
	}
	n := ref.length
	if n < 0 {
		n = st.Size() - ref.offset
	}
	if ref.offset > st.Size() || n > st.Size()-ref.offset {
		return nil, fmt.Errorf("%w: tensor %q: offset %d, length %d is outside %s (%d bytes)", ErrExternalData, t.GetName(), ref.offset, n, p, st.Size())
	}
	buf := make([]byte, n)
	if _, err := f.ReadAt(buf, ref.offset); err != nil && !(errors.Is(err, io.EOF) && n == 0) {
		return nil, fmt.Errorf("%w: tensor %q: read %d bytes at %d of %s: %v", ErrExternalData, t.GetName(), n, ref.offset, p, err)
	}
	return buf, nil
}

// Initializers returns the graph's initializers, including those of subgraphs held in node
// attributes (If/Loop/Scan bodies), in depth-first order.
func Initializers(g *onnxpb.GraphProto) []*onnxpb.TensorProto {
	var out []*onnxpb.TensorProto
	walkGraphs(g, func(g *onnxpb.GraphProto) { out = append(out, g.Initializer...) })
	return out
}

// walkGraphs calls fn on g and on every subgraph nested in its nodes' attributes.
func walkGraphs(g *onnxpb.GraphProto, fn func(*onnxpb.GraphProto)) {
	if g == nil {
		return
	}
	fn(g)
	for _, n := range g.Node {
		for _, a := range n.Attribute {
			walkGraphs(a.G, fn)
			for _, sg := range a.Graphs {
				walkGraphs(sg, fn)
			}
		}
	}
}
