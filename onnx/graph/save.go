package graph

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"google.golang.org/protobuf/proto"

	"github.com/modelrt/modelrt/onnx/onnxpb"
)

// Defaults for Model. IR version 8 is what onnx 1.12's onnx.proto (onnx/onnxpb) describes; ONNX
// Runtime 1.30 loads it.
const (
	DefaultIRVersion = 8
	DefaultOpset     = 14
)

// ModelOptions sets the model-level fields of Model.
type ModelOptions struct {
	IRVersion       int64 // 0: DefaultIRVersion
	Opset           int64 // default-domain opset; 0: DefaultOpset
	ProducerName    string
	ProducerVersion string
	DocString       string
}

// Model wraps the built graph in a ModelProto. The graph is shared, not copied.
func (b *Builder) Model(o ModelOptions) *onnxpb.ModelProto {
	if o.IRVersion == 0 {
		o.IRVersion = DefaultIRVersion
	}
	if o.Opset == 0 {
		o.Opset = DefaultOpset
	}
	domain := ""
	m := &onnxpb.ModelProto{
		IrVersion:   &o.IRVersion,
		OpsetImport: []*onnxpb.OperatorSetIdProto{{Domain: &domain, Version: &o.Opset}},
		Graph:       b.g,
	}
	if o.ProducerName != "" {
		m.ProducerName = &o.ProducerName
	}
	if o.ProducerVersion != "" {
		m.ProducerVersion = &o.ProducerVersion
	}
	if o.DocString != "" {
		m.DocString = &o.DocString
	}
	return m
}

// DefaultExternalThreshold is the initializer total above which Save writes external data by
// default. Protobuf cannot encode a message of 2 GiB or more; 1 GiB keeps well clear of that
// while a GPT-2 124M (about 500 MB of float32) still fits in one file.
const DefaultExternalThreshold = 1 << 30

// externalMinBytes keeps small tensors (shapes, axes, scalars) inline even in external mode,
// as onnx's own save does, so that they stay readable by tools that only look at the .onnx.
const externalMinBytes = 1024

// externalAlign aligns each tensor in the data file, so that a reader may map it in place.
const externalAlign = 64

// SaveOptions controls Save.
type SaveOptions struct {
	// External forces external data; otherwise it is used only when the initializers total
	// more than Threshold bytes.
	External bool
	// Threshold in bytes; 0 means DefaultExternalThreshold.
	Threshold int64
}

// ExternalDataName returns the data file name Save uses beside modelPath: "model.onnx_data" for
// "model.onnx", Optimum's convention.
func ExternalDataName(modelPath string) string {
	return filepath.Base(modelPath) + "_data"
}

// Save writes m to path. With external data, initializers of at least 1 KiB are written to
// ExternalDataName(path) beside it (location, offset and length recorded in each tensor) and m
// is restored afterwards. Both files are written to temporaries and renamed into place.
func Save(m *onnxpb.ModelProto, path string, o SaveOptions) error {
	if o.Threshold == 0 {
		o.Threshold = DefaultExternalThreshold
	}
	var total int64
	for _, t := range m.GetGraph().GetInitializer() {
		total += int64(len(t.RawData))
	}
	var dataTmp, dataPath string
	if o.External || total > o.Threshold {
		dataPath = filepath.Join(filepath.Dir(path), ExternalDataName(path))
		restore, tmp, err := writeExternal(m, dataPath)
		if err != nil {
			return err
		}
		defer restore()
		dataTmp = tmp
	}
	buf, err := proto.Marshal(m)
	if err != nil {
		if dataTmp != "" {
			os.Remove(dataTmp)
		}
		return fmt.Errorf("graph: save %s: encode: %w", path, err)
	}
	if err := writeFileAtomic(path, buf); err != nil {
		if dataTmp != "" {
			os.Remove(dataTmp)
		}
		return err
	}
	if dataTmp != "" {
		if err := os.Rename(dataTmp, dataPath); err != nil {
			return fmt.Errorf("graph: save %s: %w", dataPath, err)
		}
	}
	return nil
}

// writeExternal moves the raw data of large initializers into a temporary data file that is
// renamed to dataPath by the caller. restore puts the raw data back into m.
func writeExternal(m *onnxpb.ModelProto, dataPath string) (restore func(), tmp string, err error) {
	f, err := os.CreateTemp(filepath.Dir(dataPath), filepath.Base(dataPath)+".tmp*")
	if err != nil {
		return nil, "", fmt.Errorf("graph: save %s: %w", dataPath, err)
	}
	if err := f.Chmod(0o644); err != nil { // CreateTemp makes 0600 files
		f.Close()
		os.Remove(f.Name())
		return nil, "", fmt.Errorf("graph: save %s: %w", dataPath, err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	location := filepath.Base(dataPath)
	type saved struct {
		t   *onnxpb.TensorProto
		raw []byte
	}
	var moved []saved
	restore = func() {
		for _, s := range moved {
			s.t.RawData = s.raw
			s.t.DataLocation = nil
			s.t.ExternalData = nil
		}
	}
	var off int64
	for _, t := range m.GetGraph().GetInitializer() {
		if len(t.RawData) < externalMinBytes {
			continue
		}
		if pad := (externalAlign - off%externalAlign) % externalAlign; pad > 0 {
			if _, err = w.Write(make([]byte, pad)); err != nil {
				break
			}
			off += pad
		}
		if _, err = w.Write(t.RawData); err != nil {
			break
		}
		moved = append(moved, saved{t, t.RawData})
		ext := onnxpb.TensorProto_EXTERNAL
		t.DataLocation = &ext
		t.ExternalData = []*onnxpb.StringStringEntryProto{
			entry("location", location),
			entry("offset", strconv.FormatInt(off, 10)),
			entry("length", strconv.Itoa(len(t.RawData))),
		}
		t.RawData = nil
		off += int64(len(moved[len(moved)-1].raw))
	}
	if err == nil {
		err = w.Flush()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		restore()
		os.Remove(f.Name())
		return nil, "", fmt.Errorf("graph: save %s: %w", dataPath, err)
	}
	return restore, f.Name(), nil
}

func entry(k, v string) *onnxpb.StringStringEntryProto {
	return &onnxpb.StringStringEntryProto{Key: &k, Value: &v}
}

func writeFileAtomic(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("graph: save %s: %w", path, err)
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(0o644) // CreateTemp makes 0600 files
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("graph: save %s: %w", path, err)
	}
	return nil
}
