package main

import (
	"context"
	"encoding/json"
	"fmt"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/modelrt/modelrt/runtime/bench"
)

// benchTimeout bounds one `modelrt bench --shape tiny` run (it takes seconds; the bound is for a
// hung plugin, not a speed check).
const benchTimeout = 3 * time.Minute

// runBenchCLI runs the real modelrt binary with the real plugins and returns stdout and stderr.
func runBenchCLI(t *testing.T, args ...string) (string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), benchTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(binDir, "modelrt"), append([]string{"bench"}, args...)...)
	cmd.Env = append(os.Environ(), "MODELRT_PLUGIN_DIR="+binDir)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("modelrt bench %v: %v\nstdout:\n%s\nstderr:\n%s", args, err, out.String(), errb.String())
	}
	return out.String(), errb.String()
}

// TestBenchTiny runs every stage of `modelrt bench` (model creation, both backends through
// their plugin processes, int8 row, table, JSON, plot) on the hidden tiny shape.
func TestBenchTiny(t *testing.T) {
	dir := t.TempDir()
	cache, jsonPath, plotPath := filepath.Join(dir, "cache"), filepath.Join(dir, "bench.json"), filepath.Join(dir, "bench.png")
	args := []string{"--shape", "tiny", "--cache", cache, "--json", jsonPath, "--plot", plotPath, "--backends", "native,onnxrt",
		"--config", "onnxrt.allow_spinning=false"}
	table, stderr := runBenchCLI(t, args...)
	if !strings.Contains(stderr, "(once; cached)") || !strings.Contains(stderr, "[1/") {
		t.Errorf("stderr shows no model creation or progress:\n%s", stderr)
	}
	for _, want := range []string{"decode batch 8 (tokens/s)", "native/onnxrt", "native-int8/onnxrt", "VAE decode 32²"} {
		if !strings.Contains(table, want) {
			t.Errorf("table lacks %q:\n%s", want, table)
		}
	}

	data, err := os.ReadFile(jsonPath)
	if err != nil {
		t.Fatal(err)
	}
	var rep bench.Report
	if err := json.Unmarshal(data, &rep); err != nil {
		t.Fatalf("parse %s: %v", jsonPath, err)
	}
	if rep.Format != bench.Format || rep.Base != "onnxrt" {
		t.Errorf("format %q base %q; want %q onnxrt", rep.Format, rep.Base, bench.Format)
	}
	wantRows := map[string]bool{"native": true, "native-int8": false, "onnxrt": true} // name → has VAE
	if len(rep.Rows) != len(wantRows) {
		t.Errorf("%d rows; want %d", len(rep.Rows), len(wantRows))
	}
	for _, r := range rep.Rows {
		hasVAE, ok := wantRows[r.Name]
		if !ok {
			t.Errorf("unexpected row %q", r.Name)
			continue
		}
		if r.Error != "" {
			t.Errorf("%s: %s", r.Name, r.Error)
			continue
		}
		if spin, ok := r.Config["allow_spinning"]; (r.Backend == "onnxrt") != ok || (ok && spin != false) {
			t.Errorf("%s: config %v; want allow_spinning=false on onnxrt only", r.Name, r.Config)
		}
		if r.LM == nil {
			t.Errorf("%s: no LM figures", r.Name)
			continue
		}
		positive(t, r.Name+" lm load_ms", r.LM.LoadMS)
		positive(t, r.Name+" prefill_ms", r.LM.PrefillMS)
		nonNegative(t, r.Name+" prefill_cpu_ms", r.LM.PrefillCPUMS)
		positive(t, r.Name+" lm peak_rss", float64(r.LM.PeakRSSBytes))
		if len(r.LM.Decode) != len(rep.Shape.Batches) {
			t.Errorf("%s: decode points %v; want batches %v", r.Name, r.LM.Decode, rep.Shape.Batches)
		}
		for i, d := range r.LM.Decode {
			if i < len(rep.Shape.Batches) && d.Batch != rep.Shape.Batches[i] {
				t.Errorf("%s: decode point %d has batch %d; want %d", r.Name, i, d.Batch, rep.Shape.Batches[i])
			}
			positive(t, r.Name+" tokens/s", d.TokensPerSec)
			// CPU time comes in 10 ms clock ticks, which the tiny shape's steps may not reach.
			nonNegative(t, r.Name+" tokens/CPU-s", d.TokensPerCPUSec)
		}
		if (r.VAE != nil) != hasVAE {
			t.Errorf("%s: VAE figures %v; want present=%v", r.Name, r.VAE, hasVAE)
		} else if hasVAE {
			positive(t, r.Name+" vae load_ms", r.VAE.LoadMS)
			positive(t, r.Name+" encode_ms", r.VAE.EncodeMS)
			positive(t, r.Name+" decode_ms", r.VAE.DecodeMS)
			positive(t, r.Name+" vae peak_rss", float64(r.VAE.PeakRSSBytes))
			nonNegative(t, r.Name+" encode_cpu_ms", r.VAE.EncodeCPUMS)
			nonNegative(t, r.Name+" decode_cpu_ms", r.VAE.DecodeCPUMS)
		}
	}
	if len(rep.Ratios) == 0 {
		t.Error("no ratios against onnxrt")
	}
	// The bandwidth is probed before the rows and after each; the ceiling is the median probe.
	if n := len(rep.Host.ReadGBpsProbes); n != len(rep.Rows)+1 {
		t.Errorf("%d bandwidth probes %v; want %d (before the rows and after each)", n, rep.Host.ReadGBpsProbes, len(rep.Rows)+1)
	} else if med, best := bench.Median(rep.Host.ReadGBpsProbes), slices.Max(rep.Host.ReadGBpsProbes); rep.Host.ReadGBps != med || rep.Host.ReadGBpsBest != best || med <= 0 {
		t.Errorf("read_gbps %v, read_gbps_best %v; want the median and the best of %v", rep.Host.ReadGBps, rep.Host.ReadGBpsBest, rep.Host.ReadGBpsProbes)
	}
	if !strings.Contains(table, fmt.Sprintf("the median of %d probes", len(rep.Rows)+1)) {
		t.Errorf("table does not report the probes:\n%s", table)
	}

	f, err := os.Open(plotPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("plot %s: %v", plotPath, err)
	}
	if b := img.Bounds(); b.Dx() < 100 || b.Dy() < 100 {
		t.Errorf("plot is %v", b)
	}

	// A second run reuses the cached models; with --rounds 2 its one row runs twice, probed
	// after each round's row.
	json2 := filepath.Join(dir, "bench2.json")
	table2, stderr := runBenchCLI(t, "--shape", "tiny", "--cache", cache, "--backends", "native", "--int8=false", "--rounds", "2", "--json", json2)
	if strings.Contains(stderr, "(once; cached)") {
		t.Errorf("second run re-created models:\n%s", stderr)
	}
	if !strings.Contains(table2, "in each of 2 rounds") {
		t.Errorf("table does not say it ran 2 rounds:\n%s", table2)
	}
	data, err = os.ReadFile(json2)
	if err != nil {
		t.Fatal(err)
	}
	var rep2 bench.Report
	if err := json.Unmarshal(data, &rep2); err != nil {
		t.Fatalf("parse %s: %v", json2, err)
	}
	if rep2.Host.Rounds != 2 || len(rep2.Rows) != 1 || len(rep2.Host.ReadGBpsProbes) != 3 {
		t.Errorf("--rounds 2, one row: rounds %d, %d rows, %d probes; want 2, 1, 3", rep2.Host.Rounds, len(rep2.Rows), len(rep2.Host.ReadGBpsProbes))
	}
}

func positive(t *testing.T, what string, v float64) {
	t.Helper()
	if !(v > 0) {
		t.Errorf("%s = %v; want > 0", what, v)
	}
}

func nonNegative(t *testing.T, what string, v float64) {
	t.Helper()
	if !(v >= 0) {
		t.Errorf("%s = %v; want >= 0", what, v)
	}
}

// TestBenchRefusesBadCounts: --reps and --rounds below 1 are refused with an error naming the
// flag, before any model is created.
func TestBenchRefusesBadCounts(t *testing.T) {
	for _, flag := range []string{"--reps", "--rounds"} {
		cache := t.TempDir()
		cmd := exec.Command(filepath.Join(binDir, "modelrt"), "bench", "--shape", "tiny", "--cache", cache, flag, "0")
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), flag+" 0: want at least 1") {
			t.Errorf("modelrt bench %s 0: %v\n%s\nwant an error naming %s", flag, err, out, flag)
		}
		if entries, _ := os.ReadDir(cache); len(entries) != 0 {
			t.Errorf("modelrt bench %s 0 created models in %s before refusing", flag, cache)
		}
	}
}
