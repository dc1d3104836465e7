package text2image

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/modelrt/modelrt/internal/plugintest"
	"github.com/modelrt/modelrt/onnx/export"
	"github.com/modelrt/modelrt/runtime/plugin"
)

// The benchmark's plugins and the prior's ONNX export, built once per process on first use
// (the unit tests need none of them).
var (
	benchOnce sync.Once
	benchDir  string
	benchErr  error
)

func benchSetup(b *testing.B) string {
	b.Helper()
	benchOnce.Do(func() {
		if benchDir, benchErr = os.MkdirTemp("", "modelrt-text2image-bench"); benchErr != nil {
			return
		}
		if benchErr = plugintest.Build(benchDir, plugintest.Native, plugintest.ONNXRT); benchErr != nil {
			return
		}
		benchErr = export.ExportGPT2(fixture, filepath.Join(benchDir, "prior-onnx"), export.DefaultOptions())
	})
	if benchErr != nil {
		b.Fatal(benchErr)
	}
	return benchDir
}

// TestMain removes what the benchmark built.
func TestMain(m *testing.M) {
	code := m.Run()
	if benchDir != "" {
		os.RemoveAll(benchDir)
	}
	os.Exit(code)
}

// BenchmarkEightImages draws 8 images of one caption end to end — caption → codes (16 rows
// with guidance, 64 codes each, one Infer per code) → codebook → one VAE decode — through a
// plugin process, native and onnxrt side by side. Run it on a quiet machine:
//
//	go test ./runtime/text2image -run '^$' -bench EightImages -benchtime 5x
func BenchmarkEightImages(b *testing.B) {
	dir := benchSetup(b)
	for _, c := range []struct{ backend, prior, vae string }{
		{"native", fixture, ""},
		{"onnxrt", filepath.Join(dir, "prior-onnx"), "../../testdata/models/vae-tiny-onnx"},
	} {
		b.Run(c.backend, func(b *testing.B) {
			ctx := context.Background()
			p, err := plugin.Start(ctx, plugin.Config{Name: c.backend, Path: filepath.Join(dir, "modelrt-"+c.backend)})
			if err != nil {
				b.Fatal(err)
			}
			defer p.Close()
			m, err := loadBenchModel(c.prior, c.vae)
			if err != nil {
				b.Fatal(err)
			}
			pipe, err := Open(ctx, p, m, "prior", "vae")
			if err != nil {
				b.Fatal(err)
			}
			o := DefaultOptions()
			o.N, o.Seed = 8, 1
			var prior, decode float64
			for b.Loop() {
				res, err := pipe.Generate(ctx, "the capital letter R, bold serif", o)
				if err != nil {
					b.Fatal(err)
				}
				prior += res.PriorMS
				decode += res.DecodeMS
			}
			b.ReportMetric(float64(8*b.N)/b.Elapsed().Seconds(), "images/s")
			b.ReportMetric(prior/float64(b.N), "prior-ms/op")
			b.ReportMetric(decode/float64(b.N), "decode-ms/op")
		})
	}
}

// loadBenchModel reads the prior with the fixture's text2image.json and codebook; an ONNX
// export has neither, so they are read from the fixture and the model pointed at the export.
func loadBenchModel(prior, vae string) (*Model, error) {
	m, err := Load(fixture, vae)
	if err != nil {
		return nil, err
	}
	m.Dir = prior
	return m, nil
}
