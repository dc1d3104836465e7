// Package bench measures modelrt's backends side by side on one machine, through the real
// plugin processes: it creates (and caches) deterministic random-weight models of a fixed
// shape in every format the backends read — a GPT-2 as safetensors for the native backend, and
// as int8 weights when asked, the same weights exported to ONNX for onnxrt, and a diffusers
// AutoencoderKL in both forms — then loads each in its backend and times load, prefill,
// decode at several batch sizes, VAE encode and decode, and reads each plugin's peak RSS.
//
// Everything goes through runtime/plugin, runtime/lm and runtime/generate, exactly as
// `modelrt generate` and the daemon do, so the figures include the gRPC hop per decode step
// that a user pays; in-process kernel figures live in the packages' `go test -bench` benchmarks.
package bench

import (
	"errors"
	"fmt"
	"slices"

	"github.com/modelrt/modelrt/sdk/modeldir"
)

// Format names the JSON report's layout; it changes when a field changes meaning.
const Format = "modelrt-bench/v1"

// ErrBackend is wrapped by Run's error when a backend row could not be measured.
var ErrBackend = errors.New("bench: backend failed")

// Shape is what one benchmark run measures: the model shapes and the workload.
type Shape struct {
	Name string              `json:"name"`
	GPT2 modeldir.GPT2Config `json:"gpt2"`
	VAE  modeldir.VAEConfig  `json:"vae"`
	// ImageSize is the VAE input's height and width (pixels); the latent is ImageSize/f square.
	ImageSize int `json:"image_size"`
	// PromptTokens is the prefill length of every row; NewTokens the tokens decoded per row.
	PromptTokens int `json:"prompt_tokens"`
	NewTokens    int `json:"new_tokens"`
	// Batches are the decode batch sizes, ascending.
	Batches []int `json:"batches"`
	// VAEReps is how many timed calls of encode and of decode are made at least (Options.Reps
	// when larger); the best is reported.
	VAEReps int    `json:"vae_reps"`
	Seed    uint64 `json:"seed"`
	// ProbeBytes is the buffer of the streaming-read bandwidth probe (Host.ReadGBps): ProbeAuto
	// sizes it from the last-level cache (ProbeSize), a positive value fixes it (tests), 0 skips
	// the probe.
	ProbeBytes int `json:"probe_bytes,omitempty"`
}

func gpt2Config(layers, width, heads, vocab, positions int) modeldir.GPT2Config {
	return modeldir.GPT2Config{VocabSize: vocab, NPositions: positions, NEmbd: width, NLayer: layers, NHead: heads,
		LayerNormEpsilon: 1e-5, ActivationFunction: "gelu_new", BOSTokenID: vocab - 1, EOSTokenID: vocab - 1}
}

func vaeConfig(blocks []int, layers int) modeldir.VAEConfig {
	c := modeldir.DefaultVAEConfig()
	c.BlockOutChannels, c.LayersPerBlock = blocks, layers
	c.DownBlockTypes, c.UpBlockTypes = nil, nil
	for range blocks {
		c.DownBlockTypes = append(c.DownBlockTypes, "DownEncoderBlock2D")
		c.UpBlockTypes = append(c.UpBlockTypes, "UpDecoderBlock2D")
	}
	c.SampleSize = 256
	return c
}

// Full is the workload: GPT-2 124M (12 layers, 768 wide, 12 heads, 50257 tokens, 1024
// positions), a 64-token prompt and 128 new tokens at batch 1, 2, 4 and 8, and an AutoencoderKL
// shaped like Stable Diffusion's at half the width (block_out_channels [64,128,256,256], two
// resnets per block — the shape docs/benchmarks.md already uses) on 256×256 images.
func Full() Shape {
	return Shape{Name: "full", GPT2: gpt2Config(12, 768, 12, 50257, 1024), VAE: vaeConfig([]int{64, 128, 256, 256}, 2),
		ImageSize: 256, PromptTokens: 64, NewTokens: 128, Batches: []int{1, 2, 4, 8}, VAEReps: 3, Seed: 1, ProbeBytes: ProbeAuto}
}

// Quick is a shape that runs in well under a minute on two cores: 6 layers 384 wide with
// GPT-2's vocabulary, 32 + 32 tokens, and the VAE [32,64,128,128] on 128×128 images.
func Quick() Shape {
	return Shape{Name: "quick", GPT2: gpt2Config(6, 384, 6, 50257, 256), VAE: vaeConfig([]int{32, 64, 128, 128}, 1),
		ImageSize: 128, PromptTokens: 32, NewTokens: 32, Batches: []int{1, 2, 4, 8}, VAEReps: 2, Seed: 1, ProbeBytes: ProbeAuto}
}

// Tiny exists for tests of the whole pipeline: every stage runs, but in seconds.
func Tiny() Shape {
	return Shape{Name: "tiny", GPT2: gpt2Config(2, 64, 2, 512, 64), VAE: vaeConfig([]int{32, 32}, 1),
		ImageSize: 32, PromptTokens: 8, NewTokens: 8, Batches: []int{1, 2, 4, 8}, VAEReps: 1, Seed: 1, ProbeBytes: 16 << 20}
}

// ShapeByName returns Full, Quick or Tiny.
func ShapeByName(name string) (Shape, error) {
	switch name {
	case "full":
		return Full(), nil
	case "quick":
		return Quick(), nil
	case "tiny":
		return Tiny(), nil
	}
	return Shape{}, fmt.Errorf("bench: unknown shape %q (want full, quick or tiny)", name)
}

// Validate checks that the workload fits the models.
func (s Shape) Validate() error {
	if err := s.GPT2.Validate(); err != nil {
		return fmt.Errorf("bench: shape %s: %w", s.Name, err)
	}
	if err := s.VAE.Validate(); err != nil {
		return fmt.Errorf("bench: shape %s: %w", s.Name, err)
	}
	switch {
	case s.PromptTokens <= 0 || s.NewTokens <= 0:
		return fmt.Errorf("bench: shape %s: prompt %d and new tokens %d must be positive", s.Name, s.PromptTokens, s.NewTokens)
	case s.PromptTokens+s.NewTokens > s.GPT2.NPositions:
		return fmt.Errorf("bench: shape %s: %d+%d tokens exceed n_positions %d", s.Name, s.PromptTokens, s.NewTokens, s.GPT2.NPositions)
	case len(s.Batches) == 0 || !slices.IsSorted(s.Batches) || s.Batches[0] <= 0:
		return fmt.Errorf("bench: shape %s: batches %v must be positive and ascending", s.Name, s.Batches)
	case s.ImageSize <= 0 || s.ImageSize%s.VAE.DownsampleFactor() != 0:
		return fmt.Errorf("bench: shape %s: image size %d must be a positive multiple of %d", s.Name, s.ImageSize, s.VAE.DownsampleFactor())
	case s.VAEReps <= 0:
		return fmt.Errorf("bench: shape %s: vae reps %d must be positive", s.Name, s.VAEReps)
	}
	return nil
}

// Report is the outcome of one run; its JSON form is the --json output.
type Report struct {
	Format string `json:"format"`
	Shape  Shape  `json:"shape"`
	Host   Host   `json:"host"`
	Rows   []Row  `json:"rows"`
	// Ratios compare every row with the Base row, metric by metric (Ratio's doc says how).
	Base   string  `json:"base,omitempty"`
	Ratios []Ratio `json:"ratios,omitempty"`
}

// Host records where the figures were taken.
type Host struct {
	GOOS   string `json:"goos"`
	GOARCH string `json:"goarch"`
	CPUs   int    `json:"cpus"`
	Date   string `json:"date"`
	// ReadGBps is the streaming read bandwidth of the native kernels' workers
	// (kernels.ReadBandwidth over ProbeBytes, best of ProbePasses), probed in this process
	// before the rows run and again after each row (ReadGBpsProbes, in that order): the
	// median of the probes, the ceiling a memory-bound decode step is measured against. A
	// shared VM's memory bandwidth moves between probes seconds apart (31–62 GB/s in one run
	// here): one probe may catch a slow or a fast moment, and the median of several is what
	// the rows, each measured over seconds, can expect. ReadGBpsBest is the fastest probe, a
	// stricter ceiling. 0 when not probed.
	ReadGBps       float64   `json:"read_gbps,omitempty"`
	ReadGBpsBest   float64   `json:"read_gbps_best,omitempty"`
	ReadGBpsProbes []float64 `json:"read_gbps_probes,omitempty"`
	// ProbeBytes is the probe's buffer and LLCBytes the last-level cache the system reports
	// (0: unknown); the buffer is ProbeSize(LLCBytes), far larger, unless the shape fixes it.
	ProbeBytes int64 `json:"probe_bytes,omitempty"`
	LLCBytes   int64 `json:"llc_bytes,omitempty"`
	// LoadAvg is /proc/loadavg's 1-, 5- and 15-minute load average when the run started, and
	// LoadAvgEnd when it ended: figures taken at a load above CPUs are noisy.
	LoadAvg    [3]float64 `json:"loadavg"`
	LoadAvgEnd [3]float64 `json:"loadavg_end"`
	// Reps is how many times each decode and VAE figure was measured; the best is reported.
	Reps int `json:"reps"`
	// Rounds is how many times the whole sequence of rows ran (Options.Rounds); each figure
	// is the best over the rounds.
	Rounds int `json:"rounds,omitempty"`
}

// Row is one backend configuration: a backend plugin with one weight format.
type Row struct {
	Name    string `json:"name"`    // "native", "onnxrt", "native-int8"
	Backend string `json:"backend"` // plugin name
	Weights string `json:"weights"` // "fp32" or "int8"
	// Config is the backend config block the row's processes were given (Options.Config).
	Config map[string]any `json:"config,omitempty"`
	LM     *LMResult      `json:"lm,omitempty"`
	VAE    *VAEResult     `json:"vae,omitempty"`
	Error  string         `json:"error,omitempty"`
}

// LMResult holds the causal-LM figures of one row; prefill and decode figures are each the best
// of Host.Reps measurements.
type LMResult struct {
	// LoadMS is the wall time of LoadModel (read weights, build sessions).
	LoadMS float64 `json:"load_ms"`
	// PrefillMS is the wall time of the first step at batch 1 (PromptTokens tokens).
	PrefillMS float64 `json:"prefill_ms"`
	// PrefillCPUMS is the plugin process's CPU time (user + system, all threads) in that step:
	// on a loaded machine it moves far less than the wall time.
	PrefillCPUMS float64 `json:"prefill_cpu_ms"`
	// Decode holds tokens/s (summed over rows) for each batch size.
	Decode []DecodePoint `json:"decode"`
	// PeakRSSBytes is the plugin process's VmHWM after every LM measurement, LoadPeakRSSBytes
	// its VmHWM right after the load (weights, runtime and whatever loading left behind; the
	// difference is mostly KV cache and working buffers).
	PeakRSSBytes     int64 `json:"peak_rss_bytes"`
	LoadPeakRSSBytes int64 `json:"load_peak_rss_bytes,omitempty"`
	// WeightBytes is what the backend's Stats says the model's weights occupy (0 when it does
	// not say): the bytes a batch-1 decode step reads, to a few KiB of embeddings and KV cache.
	WeightBytes int64 `json:"weight_bytes,omitempty"`
}

// BandwidthFraction is the batch-1 decode speed of r as a fraction of the memory-bandwidth
// limit readGBps·1e9 ÷ WeightBytes tokens/s; 0 when a figure is missing.
func (r *LMResult) BandwidthFraction(readGBps float64) float64 {
	tps := r.Point(1).TokensPerSec
	if r.WeightBytes <= 0 || readGBps <= 0 || tps <= 0 {
		return 0
	}
	return tps / (readGBps * 1e9 / float64(r.WeightBytes))
}

// DecodePoint is the decode throughput at one batch size.
type DecodePoint struct {
	Batch        int     `json:"batch"`
	TokensPerSec float64 `json:"tokens_per_s"`
	// TokensPerCPUSec is the decode tokens divided by the plugin's CPU seconds over the decode
	// steps: the throughput the backend would reach with its threads' cores to itself.
	TokensPerCPUSec float64 `json:"tokens_per_cpu_s"`
}

// VAEResult holds the VAE figures of one row (best of Shape.VAEReps or Options.Reps calls each,
// batch 1).
type VAEResult struct {
	LoadMS   float64 `json:"load_ms"`
	EncodeMS float64 `json:"encode_ms"`
	DecodeMS float64 `json:"decode_ms"`
	// EncodeCPUMS and DecodeCPUMS are the plugin's CPU time per call (best).
	EncodeCPUMS  float64 `json:"encode_cpu_ms"`
	DecodeCPUMS  float64 `json:"decode_cpu_ms"`
	PeakRSSBytes int64   `json:"peak_rss_bytes"`
}

// Ratio compares one metric of Row with the same metric of the base row. For speeds and times
// it is a speed ratio (row's tokens/s ÷ base's, or base's time ÷ row's), so above 1 means the
// row is faster; for memory it is row ÷ base, so below 1 means the row uses less.
type Ratio struct {
	Row    string  `json:"row"`
	Metric string  `json:"metric"`
	Value  float64 `json:"value"`
}

// Point returns the decode figures at batch b (zero when not measured).
func (r *LMResult) Point(b int) DecodePoint {
	for _, p := range r.Decode {
		if p.Batch == b {
			return p
		}
	}
	return DecodePoint{}
}
