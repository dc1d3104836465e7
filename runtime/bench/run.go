package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/modelrt/modelrt/runtime/generate"
	"github.com/modelrt/modelrt/runtime/lm"
	"github.com/modelrt/modelrt/runtime/vae"
	"github.com/modelrt/modelrt/sdk"
)

// Backend is a running plugin process as Run needs it; *runtime/plugin.Plugin satisfies it.
type Backend interface {
	lm.Backend
	// Pid is the plugin's process id, whose /proc status gives the peak RSS.
	Pid() int
	Close() error
}

// Starter starts a fresh plugin process of the named backend.
type Starter func(ctx context.Context, backend string) (Backend, error)

// Options control Run.
type Options struct {
	// Backends are the backend plugins to measure, in table order ("native", "onnxrt"). An
	// entry NAME=REF measures plugin REF (a name or a path) in a row called NAME, e.g. an older
	// build beside the current one: "native,before=/tmp/old/modelrt-native". onnxrt loads the
	// ONNX directories; any other backend the safetensors ones.
	Backends []string
	// Int8 adds a "NAME-int8" row (LM only) for every native plugin among Backends.
	Int8  bool
	Start Starter
	// Config holds a backend's config block (its HCL `config` attributes) by backend name,
	// sent with Configure to every process of that backend before it loads a model.
	Config map[string]map[string]any
	// Progress, when set, is called before each measurement with its 1-based index, the total
	// and what is about to run.
	Progress func(step, total int, what string)
	// Reps is how many times each decode batch, prefill and VAE call is measured (in the same
	// process); the best figure of each metric is kept. 0 means 1. Loads are measured once.
	Reps int
	// Rounds is how many times the whole sequence of rows runs, each round in fresh
	// processes; every metric keeps its best over the rounds (peak RSS its largest). On a
	// shared machine whose speed drifts over minutes, one round can give one row a slow
	// minute and the next row a fast one; rows alternating over several rounds each get their
	// chance at the fast minutes. 0 means 1.
	Rounds int
}

// plan is one row to measure and the directories it loads.
type plan struct {
	row           Row
	lmDir, vaeDir string // "" skips that part
}

func plans(m *Models, opts Options) []plan {
	var ps []plan
	for _, spec := range opts.Backends {
		name, ref := splitBackend(spec)
		kind := PluginKind(spec)
		p := plan{row: Row{Name: name, Backend: ref, Weights: "fp32"}, lmDir: m.GPT2, vaeDir: m.VAE}
		if kind == "onnxrt" {
			p.lmDir, p.vaeDir = m.GPT2ONNX, m.VAEONNX
		}
		ps = append(ps, p)
		if kind == "native" && opts.Int8 {
			ps = append(ps, plan{row: Row{Name: name + "-int8", Backend: ref, Weights: "int8"}, lmDir: m.GPT2Int8})
		}
	}
	return ps
}

// splitBackend splits an Options.Backends entry into row name and plugin reference.
func splitBackend(spec string) (name, ref string) {
	if n, r, ok := strings.Cut(spec, "="); ok {
		return n, r
	}
	return spec, spec
}

// PluginKind is "onnxrt" or "native" for an Options.Backends entry whose plugin is that backend
// (by name, or by a path to a modelrt-onnxrt or modelrt-native binary), else its reference.
func PluginKind(spec string) string {
	_, ref := splitBackend(spec)
	base := strings.TrimPrefix(filepath.Base(ref), "modelrt-")
	if base == "onnxrt" || base == "native" {
		return base
	}
	return ref
}

// Run measures every row of opts on the models m of shape s, one fresh plugin process for the
// LM and another for the VAE of each row, so that each peak RSS belongs to one model. A row
// that fails keeps its error in Row.Error and the run goes on; the returned error then wraps
// ErrBackend (and the report is still returned).
func Run(ctx context.Context, s Shape, m *Models, opts Options) (*Report, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	if len(opts.Backends) == 0 || opts.Start == nil {
		return nil, errors.New("bench: Run needs backends and a Starter")
	}
	ps := plans(m, opts)
	start := opts.Start
	if len(opts.Config) > 0 {
		start = configured(opts.Start, opts.Config)
	}
	rounds := max(opts.Rounds, 1)
	total := 0
	for range rounds {
		for _, p := range ps {
			if p.lmDir != "" {
				total += 1 + len(s.Batches)
			}
			if p.vaeDir != "" {
				total += 3
			}
		}
	}
	step := 0
	progress := func(what string) {
		step++
		if opts.Progress != nil {
			opts.Progress(step, total, what)
		}
	}
	reps := max(opts.Reps, 1)
	rep := &Report{Format: Format, Shape: s, Host: Host{GOOS: runtime.GOOS, GOARCH: runtime.GOARCH, CPUs: runtime.NumCPU(),
		Date: time.Now().UTC().Format(time.RFC3339), LoadAvg: LoadAvg(), Reps: reps, Rounds: rounds}}
	defer func() { rep.Host.LoadAvgEnd = LoadAvg() }()
	// probeNow probes the bandwidth before the rows and after each (Host.ReadGBps says why).
	probeNow := func() {
		if s.ProbeBytes == 0 {
			return
		}
		pr := probe(s.ProbeBytes)
		h := &rep.Host
		h.ReadGBpsProbes = append(h.ReadGBpsProbes, pr.GBps)
		h.ReadGBps, h.ReadGBpsBest = Median(h.ReadGBpsProbes), max(h.ReadGBpsBest, pr.GBps)
		h.ProbeBytes, h.LLCBytes = pr.Bytes, pr.LLCBytes
	}
	probeNow()
	var failed []string
	for round := range rounds {
		for i, p := range ps {
			row, err := measureRow(ctx, s, p, opts, start, progress, reps)
			if round == 0 {
				rep.Rows = append(rep.Rows, row)
			} else {
				rep.Rows[i] = mergeRows(rep.Rows[i], row)
			}
			if err != nil && !slices.Contains(failed, row.Name) {
				failed = append(failed, row.Name)
			}
			if ctx.Err() != nil {
				return rep, ctx.Err()
			}
			probeNow()
		}
	}
	rep.Base, rep.Ratios = ratios(rep.Rows)
	if len(failed) > 0 {
		return rep, fmt.Errorf("%w: %v", ErrBackend, failed)
	}
	return rep, nil
}

// measureRow measures one row of p in fresh processes; the error is also in Row.Error.
func measureRow(ctx context.Context, s Shape, p plan, opts Options, start Starter, progress func(string), reps int) (Row, error) {
	row := p.row
	row.Config = opts.Config[row.Backend]
	var errs []error
	if p.lmDir != "" {
		lmr, err := measureLM(ctx, s, p, start, progress, reps)
		row.LM = lmr
		errs = append(errs, err)
	}
	if p.vaeDir != "" {
		vr, err := measureVAE(ctx, s, p, start, progress, reps)
		row.VAE = vr
		errs = append(errs, err)
	}
	err := errors.Join(errs...)
	if err != nil {
		row.Error = err.Error()
	}
	return row, err
}

// mergeRows combines two rounds of one row: the best of each time and speed, the largest peak
// RSS, both errors.
func mergeRows(a, b Row) Row {
	if a.Error != "" && b.Error != "" {
		a.Error += "; " + b.Error
	} else if b.Error != "" {
		a.Error = b.Error
	}
	switch {
	case a.LM == nil:
		a.LM = b.LM
	case b.LM != nil:
		l, m := *a.LM, b.LM
		l.LoadMS, l.PrefillMS, l.PrefillCPUMS = lowest(l.LoadMS, m.LoadMS), lowest(l.PrefillMS, m.PrefillMS), lowest(l.PrefillCPUMS, m.PrefillCPUMS)
		l.PeakRSSBytes, l.LoadPeakRSSBytes = max(l.PeakRSSBytes, m.PeakRSSBytes), max(l.LoadPeakRSSBytes, m.LoadPeakRSSBytes)
		l.WeightBytes = max(l.WeightBytes, m.WeightBytes)
		l.Decode = slices.Clone(l.Decode)
		for i, d := range l.Decode {
			o := m.Point(d.Batch)
			l.Decode[i].TokensPerSec, l.Decode[i].TokensPerCPUSec = max(d.TokensPerSec, o.TokensPerSec), max(d.TokensPerCPUSec, o.TokensPerCPUSec)
		}
		a.LM = &l
	}
	switch {
	case a.VAE == nil:
		a.VAE = b.VAE
	case b.VAE != nil:
		v, w := *a.VAE, b.VAE
		v.LoadMS, v.EncodeMS, v.DecodeMS = lowest(v.LoadMS, w.LoadMS), lowest(v.EncodeMS, w.EncodeMS), lowest(v.DecodeMS, w.DecodeMS)
		v.EncodeCPUMS, v.DecodeCPUMS = lowest(v.EncodeCPUMS, w.EncodeCPUMS), lowest(v.DecodeCPUMS, w.DecodeCPUMS)
		v.PeakRSSBytes = max(v.PeakRSSBytes, w.PeakRSSBytes)
		a.VAE = &v
	}
	return a
}

// configured wraps start so that each new process of a backend with a config gets it.
func configured(start Starter, config map[string]map[string]any) Starter {
	return func(ctx context.Context, backend string) (Backend, error) {
		b, err := start(ctx, backend)
		if err != nil || config[backend] == nil {
			return b, err
		}
		c, ok := b.(sdk.Configurer)
		if !ok {
			b.Close()
			return nil, fmt.Errorf("bench: backend %s takes no config", backend)
		}
		js, err := json.Marshal(config[backend])
		if err == nil {
			_, err = c.Configure(ctx, &sdk.ConfigureRequest{Config: js})
		}
		if err != nil {
			b.Close()
			return nil, fmt.Errorf("configure %s with %s: %w", backend, js, err)
		}
		return b, nil
	}
}

// ParseConfigFlag parses a --config flag, BACKEND.KEY=VALUE. VALUE is taken as JSON when it
// parses as JSON (true, 2, "x", [1,2]) and as a string otherwise.
func ParseConfigFlag(s string) (backend, key string, value any, err error) {
	lhs, raw, ok := strings.Cut(s, "=")
	backend, key, ok2 := strings.Cut(lhs, ".")
	if !ok || !ok2 || backend == "" || key == "" {
		return "", "", nil, fmt.Errorf("--config %q: want BACKEND.KEY=VALUE (onnxrt.allow_spinning=false)", s)
	}
	if err := json.Unmarshal([]byte(raw), &value); err != nil {
		value = raw
	}
	return backend, key, value, nil
}

// promptIDs returns B deterministic prompts of n tokens below vocab (EOS excluded).
func promptIDs(B, n, vocab int) [][]int {
	out := make([][]int, B)
	for r := range out {
		out[r] = make([]int, n)
		for i := range out[r] {
			out[r][i] = (1 + 7919*(r*n+i)) % (vocab - 1)
		}
	}
	return out
}

// measureLM loads p.lmDir in a fresh process, warms it up, then runs Generate reps times at each
// batch size with greedy sampling and no EOS (random weights would otherwise end rows at
// random), keeping each metric's best.
func measureLM(ctx context.Context, s Shape, p plan, start Starter, progress func(string), reps int) (*LMResult, error) {
	progress(p.row.Name + ": load GPT-2")
	b, err := start(ctx, p.row.Backend)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", p.row.Backend, err)
	}
	defer b.Close()
	t0 := time.Now()
	model, err := lm.Load(ctx, b, "bench-lm", p.lmDir, nil)
	if err != nil {
		return nil, fmt.Errorf("load %s in %s: %w", p.lmDir, p.row.Backend, err)
	}
	model.Linger = lm.DecodeLinger // as modelrt generate runs its loop
	res := &LMResult{LoadMS: ms(time.Since(t0))}
	if res.LoadPeakRSSBytes, err = PeakRSS(b.Pid()); err != nil {
		return res, err
	}
	if sr, ok := b.(sdk.StatsReporter); ok {
		if st, err := sr.Stats(ctx, &sdk.StatsRequest{}); err == nil {
			for _, m := range st.Models {
				if m.Name == "bench-lm" {
					res.WeightBytes = m.WeightBytes
				}
			}
		}
	}
	sampling := generate.DefaultSampling()
	sampling.Temperature = 0
	// run returns Generate's result and the plugin CPU time of the prefill and of the decode.
	run := func(B, prompt, newTokens int) (r *generate.Result, prefillCPU, decodeCPU time.Duration, err error) {
		sess, err := model.Open(ctx, B)
		if err != nil {
			return nil, 0, 0, fmt.Errorf("%s: open session of batch %d: %w", p.row.Name, B, err)
		}
		defer sess.Close()
		cpu0, err := ProcessCPU(b.Pid())
		if err != nil {
			return nil, 0, 0, err
		}
		st := &cpuStepper{Stepper: sess, pid: b.Pid()}
		r, err = generate.Generate(ctx, st, promptIDs(B, prompt, s.GPT2.VocabSize),
			generate.Options{MaxNewTokens: newTokens, MaxContext: model.Context, Sampling: sampling})
		if err != nil {
			return nil, 0, 0, fmt.Errorf("%s: generate at batch %d: %w", p.row.Name, B, err)
		}
		cpu1, err := ProcessCPU(b.Pid())
		if err = errors.Join(err, st.err); err != nil {
			return nil, 0, 0, err
		}
		return r, st.afterFirst - cpu0, cpu1 - st.afterFirst, nil
	}
	// The first call of a backend pays one-time costs (lazy allocation, ORT's first run).
	if _, _, _, err := run(1, min(4, s.PromptTokens), 2); err != nil {
		return res, err
	}
	for _, B := range s.Batches {
		progress(fmt.Sprintf("%s: decode %d tokens at batch %d (best of %d)", p.row.Name, s.NewTokens, B, reps))
		pt := DecodePoint{Batch: B}
		for range reps {
			r, prefillCPU, decodeCPU, err := run(B, s.PromptTokens, s.NewTokens)
			if err != nil {
				return res, err
			}
			if B == s.Batches[0] {
				res.PrefillMS, res.PrefillCPUMS = minPositive(res.PrefillMS, r.PrefillMS), minPositive(res.PrefillCPUMS, ms(prefillCPU))
			}
			pt.TokensPerSec = max(pt.TokensPerSec, r.DecodeTokensPerS)
			// Generate counts the tokens after the first of each row as decode tokens.
			if decodeCPU > 0 {
				pt.TokensPerCPUSec = max(pt.TokensPerCPUSec, float64(B*(s.NewTokens-1))/decodeCPU.Seconds())
			}
			slog.Info("bench: decode", "row", p.row.Name, "batch", B, "prefill_ms", r.PrefillMS, "tokens_per_s", r.DecodeTokensPerS)
		}
		res.Decode = append(res.Decode, pt)
	}
	res.PeakRSSBytes, err = PeakRSS(b.Pid())
	return res, err
}

// measureVAE loads p.vaeDir in a fresh process and times encode of a 1×C×S×S image and decode
// of a 1×L×(S/f)×(S/f) latent: one untimed call each, then the best of max(s.VAEReps, reps).
func measureVAE(ctx context.Context, s Shape, p plan, start Starter, progress func(string), reps int) (*VAEResult, error) {
	progress(p.row.Name + ": load VAE")
	b, err := start(ctx, p.row.Backend)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", p.row.Backend, err)
	}
	defer b.Close()
	const name = "bench-vae"
	t0 := time.Now()
	m, err := vae.Load(ctx, b, name, p.vaeDir, nil)
	if err != nil {
		return nil, fmt.Errorf("load %s in %s: %w", p.vaeDir, p.row.Backend, err)
	}
	res := &VAEResult{LoadMS: ms(time.Since(t0))}
	S, h := int64(s.ImageSize), int64(s.ImageSize/s.VAE.DownsampleFactor())
	image := sdk.FromFloat32([]int64{1, int64(s.VAE.InChannels), S, S}, pattern(s.VAE.InChannels*s.ImageSize*s.ImageSize, 1))
	latent := sdk.FromFloat32([]int64{1, int64(s.VAE.LatentChannels), h, h}, pattern(s.VAE.LatentChannels*int(h*h), 2))
	// call returns the best wall time and best plugin CPU time of n calls.
	n := max(s.VAEReps, reps)
	call := func(task string, run func() error) (wall, cpu float64, err error) {
		var walls, cpus []float64
		for i := 0; i <= n; i++ {
			t := time.Now()
			c0, err := ProcessCPU(b.Pid())
			if err != nil {
				return 0, 0, err
			}
			if err := run(); err != nil {
				return 0, 0, fmt.Errorf("%s: %s: %w", p.row.Name, task, err)
			}
			c1, err := ProcessCPU(b.Pid())
			if err != nil {
				return 0, 0, err
			}
			if i > 0 {
				walls, cpus = append(walls, ms(time.Since(t))), append(cpus, ms(c1-c0))
			}
		}
		return slices.Min(walls), slices.Min(cpus), nil
	}
	progress(fmt.Sprintf("%s: VAE encode %dx%d", p.row.Name, S, S))
	if res.EncodeMS, res.EncodeCPUMS, err = call(sdk.TaskVAEEncode, func() error { _, _, err := m.Encode(ctx, image); return err }); err != nil {
		return res, err
	}
	progress(fmt.Sprintf("%s: VAE decode %dx%d", p.row.Name, S, S))
	if res.DecodeMS, res.DecodeCPUMS, err = call(sdk.TaskVAEDecode, func() error { _, err := m.Decode(ctx, latent); return err }); err != nil {
		return res, err
	}
	res.PeakRSSBytes, err = PeakRSS(b.Pid())
	return res, err
}

// pattern returns n deterministic values in [-1,1] (a smooth image-like signal, not noise).
func pattern(n, k int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(math.Sin(float64(i*k)*0.01) * math.Cos(float64(i)*0.0007))
	}
	return v
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// minPositive is the smaller of a and b, where 0 means not measured yet.
// lowest is the smaller of the positive ones of a and b (0 when neither is): a round whose
// measurement failed and left 0 does not replace another round's figure.
func lowest(a, b float64) float64 {
	if b <= 0 {
		return max(a, 0)
	}
	return minPositive(a, b)
}

func minPositive(a, b float64) float64 {
	if a <= 0 {
		return b
	}
	return min(a, b)
}

// LoadAvg returns /proc/loadavg's 1-, 5- and 15-minute figures (zeros when unreadable).
func LoadAvg() [3]float64 {
	var la [3]float64
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return la
	}
	f := strings.Fields(string(data))
	for i := 0; i < 3 && i < len(f); i++ {
		la[i], _ = strconv.ParseFloat(f[i], 64)
	}
	return la
}

// clockTicks is Linux's USER_HZ, the unit of /proc/PID/stat's CPU times (100 on every
// architecture Go supports; the kernel fixes it for user space).
const clockTicks = 100

// ProcessCPU returns the CPU time (user + system, all threads) process pid has used so far.
func ProcessCPU(pid int) (time.Duration, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("bench: process CPU: %w", err)
	}
	ticks, err := ParseStatCPU(data)
	if err != nil {
		return 0, fmt.Errorf("bench: /proc/%d/stat: %w", pid, err)
	}
	return time.Duration(ticks) * time.Second / clockTicks, nil
}

// ParseStatCPU returns utime + stime (fields 14 and 15, in clock ticks) of a /proc/PID/stat
// line. The command name (field 2) may hold spaces and parentheses, so fields are counted from
// the last ')'.
func ParseStatCPU(stat []byte) (int64, error) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, errors.New("bench: stat: no command name")
	}
	f := bytes.Fields(stat[i+1:])
	if len(f) < 13 { // state is field 3 = f[0], utime field 14 = f[11], stime field 15 = f[12]
		return 0, fmt.Errorf("bench: stat: %d fields after the command name, want at least 13", len(f))
	}
	u, err1 := strconv.ParseInt(string(f[11]), 10, 64)
	st, err2 := strconv.ParseInt(string(f[12]), 10, 64)
	if err1 != nil || err2 != nil || u < 0 || st < 0 || u > math.MaxInt64/2 || st > math.MaxInt64/2 {
		return 0, fmt.Errorf("bench: stat: utime %q stime %q are not tick counts", f[11], f[12])
	}
	return u + st, nil
}

// cpuStepper wraps a session to read the plugin's CPU time once the first step (the prefill)
// returns, so that prefill and decode CPU are told apart.
type cpuStepper struct {
	generate.Stepper
	pid        int
	steps      int
	afterFirst time.Duration
	err        error
}

func (c *cpuStepper) Step(ctx context.Context, ids []int64, B, T int, mask []int64) ([]float32, error) {
	out, err := c.Stepper.Step(ctx, ids, B, T, mask)
	if c.steps++; c.steps == 1 && err == nil {
		c.afterFirst, c.err = ProcessCPU(c.pid)
	}
	return out, err
}

// PeakRSS returns the peak resident set size of process pid (VmHWM in /proc/pid/status).
func PeakRSS(pid int) (int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("bench: peak RSS: %w", err)
	}
	v, err := ParseVmHWM(data)
	if err != nil {
		return 0, fmt.Errorf("bench: /proc/%d/status: %w", pid, err)
	}
	return v, nil
}

// ParseVmHWM reads the "VmHWM:  1234 kB" line of a /proc/PID/status file and returns bytes.
func ParseVmHWM(status []byte) (int64, error) {
	for line := range bytes.Lines(status) {
		rest, ok := bytes.CutPrefix(line, []byte("VmHWM:"))
		if !ok {
			continue
		}
		fields := bytes.Fields(rest)
		if len(fields) != 2 || string(fields[1]) != "kB" {
			return 0, fmt.Errorf("bench: VmHWM line %q: want \"VmHWM: N kB\"", bytes.TrimSpace(line))
		}
		kb, err := strconv.ParseInt(string(fields[0]), 10, 64)
		if err != nil || kb < 0 || kb > math.MaxInt64/1024 {
			return 0, fmt.Errorf("bench: VmHWM line %q: bad size", bytes.TrimSpace(line))
		}
		return kb * 1024, nil
	}
	return 0, errors.New("bench: no VmHWM line")
}
