package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// metric is one line of the table: how to read it from a row and how to compare it.
type metric struct {
	key, label string
	get        func(r *Row) float64 // 0 = not measured
	// time marks a duration, where smaller is better, so its ratio is base ÷ row; tokens/s and
	// memory compare as row ÷ base.
	time bool
}

func metrics(s Shape) []metric {
	lmf := func(f func(*LMResult) float64) func(*Row) float64 {
		return func(r *Row) float64 {
			if r.LM == nil {
				return 0
			}
			return f(r.LM)
		}
	}
	vaef := func(f func(*VAEResult) float64) func(*Row) float64 {
		return func(r *Row) float64 {
			if r.VAE == nil {
				return 0
			}
			return f(r.VAE)
		}
	}
	ms := []metric{
		{key: "lm_load", label: "GPT-2 load (ms)", time: true, get: lmf(func(l *LMResult) float64 { return l.LoadMS })},
		{key: "prefill", label: fmt.Sprintf("prefill %d tokens (ms)", s.PromptTokens), time: true, get: lmf(func(l *LMResult) float64 { return l.PrefillMS })},
		{key: "prefill_cpu", label: fmt.Sprintf("prefill %d tokens (plugin CPU ms)", s.PromptTokens), time: true, get: lmf(func(l *LMResult) float64 { return l.PrefillCPUMS })},
	}
	for _, b := range s.Batches {
		ms = append(ms, metric{key: fmt.Sprintf("decode_b%d", b), label: fmt.Sprintf("decode batch %d (tokens/s)", b),
			get: lmf(func(l *LMResult) float64 { return l.Point(b).TokensPerSec })})
	}
	for _, b := range s.Batches {
		ms = append(ms, metric{key: fmt.Sprintf("decode_cpu_b%d", b), label: fmt.Sprintf("decode batch %d (tokens/CPU-s)", b),
			get: lmf(func(l *LMResult) float64 { return l.Point(b).TokensPerCPUSec })})
	}
	return append(ms,
		metric{key: "lm_load_rss", label: "GPT-2 plugin peak RSS after load (MiB)", get: lmf(func(l *LMResult) float64 { return mib(l.LoadPeakRSSBytes) })},
		metric{key: "lm_peak_rss", label: "GPT-2 plugin peak RSS (MiB)", get: lmf(func(l *LMResult) float64 { return mib(l.PeakRSSBytes) })},
		metric{key: "vae_load", label: "VAE load (ms)", time: true, get: vaef(func(v *VAEResult) float64 { return v.LoadMS })},
		metric{key: "vae_encode", label: fmt.Sprintf("VAE encode %d² (ms)", s.ImageSize), time: true, get: vaef(func(v *VAEResult) float64 { return v.EncodeMS })},
		metric{key: "vae_decode", label: fmt.Sprintf("VAE decode %d² (ms)", s.ImageSize), time: true, get: vaef(func(v *VAEResult) float64 { return v.DecodeMS })},
		metric{key: "vae_encode_cpu", label: fmt.Sprintf("VAE encode %d² (plugin CPU ms)", s.ImageSize), time: true, get: vaef(func(v *VAEResult) float64 { return v.EncodeCPUMS })},
		metric{key: "vae_decode_cpu", label: fmt.Sprintf("VAE decode %d² (plugin CPU ms)", s.ImageSize), time: true, get: vaef(func(v *VAEResult) float64 { return v.DecodeCPUMS })},
		metric{key: "vae_peak_rss", label: "VAE plugin peak RSS (MiB)", get: vaef(func(v *VAEResult) float64 { return mib(v.PeakRSSBytes) })},
	)
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

// KVBytes is the float32 KV cache of B rows holding the shape's prompt and new tokens: keys and
// values of every layer, n_embd floats per position each.
func (s Shape) KVBytes(B int) int64 {
	return int64(2*s.GPT2.NLayer*B*(s.PromptTokens+s.NewTokens)*s.GPT2.NEmbd) * 4
}

// RSSTargetMiB is issue 17's bound on a GPT-2 plugin's peak RSS for weights of the given bytes:
// 1.15 × weights + 64 MiB.
func RSSTargetMiB(weightBytes int64) float64 { return 1.15*mib(weightBytes) + 64 }

// ratio compares row value v with base value b as Ratio's doc says; 0 when either is missing.
func (m metric) ratio(v, b float64) float64 {
	switch {
	case v <= 0 || b <= 0:
		return 0
	case m.time:
		return b / v
	default:
		return v / b
	}
}

// ratios picks the base row (onnxrt when it was measured, as the targets are stated
// against ONNX Runtime) and compares every other row with it.
func ratios(rows []Row) (string, []Ratio) {
	var base *Row
	for i := range rows {
		if rows[i].Name == "onnxrt" && rows[i].Error == "" {
			base = &rows[i]
		}
	}
	if base == nil {
		return "", nil
	}
	var out []Ratio
	// The shape only changes labels, not keys, so any shape lists the same metrics.
	for _, r := range rows {
		if r.Name == base.Name {
			continue
		}
		for _, m := range metricsFor(rows) {
			if v := m.ratio(m.get(&r), m.get(base)); v > 0 {
				out = append(out, Ratio{Row: r.Name, Metric: m.key, Value: v})
			}
		}
	}
	return base.Name, out
}

// metricsFor lists the metrics of whatever batch sizes the rows measured.
func metricsFor(rows []Row) []metric {
	s := Shape{}
	for _, r := range rows {
		if r.LM != nil && len(r.LM.Decode) > len(s.Batches) {
			s.Batches = s.Batches[:0]
			for _, p := range r.LM.Decode {
				s.Batches = append(s.Batches, p.Batch)
			}
		}
	}
	return metrics(s)
}

// WriteTable prints one line per metric, one column per row, and a speed ratio column
// (row ÷ base, >1 = row faster; for RSS row ÷ base, <1 = row smaller) for each non-base row.
func (rep *Report) WriteTable(w io.Writer) error {
	h := rep.Host
	rounds := ""
	if h.Rounds > 1 {
		rounds = fmt.Sprintf(" in each of %d rounds of all rows", h.Rounds)
	}
	fmt.Fprintf(w, "modelrt bench %s, %s, %d CPUs, load average %.2f %.2f %.2f at the start, %.2f at the end; best of %d per figure%s (loads: one per round)\n",
		rep.Shape.Name, h.Date, h.CPUs, h.LoadAvg[0], h.LoadAvg[1], h.LoadAvg[2], h.LoadAvgEnd[0], max(h.Reps, 1), rounds)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	head := []string{"metric"}
	var base *Row
	for i, r := range rep.Rows {
		head = append(head, r.Name)
		if r.Name == rep.Base {
			base = &rep.Rows[i]
		}
	}
	for _, r := range rep.Rows {
		if base != nil && r.Name != base.Name {
			head = append(head, r.Name+"/"+base.Name)
		}
	}
	fmt.Fprintln(tw, strings.Join(head, "\t")+"\t")
	for _, m := range metrics(rep.Shape) {
		line := []string{m.label}
		for _, r := range rep.Rows {
			line = append(line, num(m.get(&r)))
		}
		for _, r := range rep.Rows {
			if base != nil && r.Name != base.Name {
				if v := m.ratio(m.get(&r), m.get(base)); v > 0 {
					line = append(line, fmt.Sprintf("%.3g×", v))
				} else {
					line = append(line, "-")
				}
			}
		}
		fmt.Fprintln(tw, strings.Join(line, "\t")+"\t")
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if base != nil {
		fmt.Fprintf(w, "ratios: times and tokens/s as speed (>1× = faster than %s); RSS as size (<1× = smaller)\n", base.Name)
	}
	if bw := rep.Host.ReadGBps; bw > 0 {
		llc := "unknown"
		if h.LLCBytes > 0 {
			llc = fmt.Sprintf("%.0f MiB, buffer = %.1f×", mib(h.LLCBytes), float64(h.ProbeBytes)/float64(h.LLCBytes))
		}
		probes := ""
		if n := len(h.ReadGBpsProbes); n > 1 {
			each := make([]string, n)
			for i, v := range h.ReadGBpsProbes {
				each[i] = fmt.Sprintf("%.1f", v)
			}
			probes = fmt.Sprintf("; the median of %d probes, before the rows and after each: %s GB/s", n, strings.Join(each, ", "))
		}
		fmt.Fprintf(w, "streaming read bandwidth (kernels.ReadBandwidth, %d workers, %.0f MiB buffer, last-level cache %s, best of %d passes%s): %.1f GB/s\n",
			h.CPUs, mib(h.ProbeBytes), llc, ProbePasses, probes, bw)
		for _, r := range rep.Rows {
			if r.LM == nil || r.LM.WeightBytes <= 0 {
				continue
			}
			limit := bw * 1e9 / float64(r.LM.WeightBytes)
			best := ""
			if h.ReadGBpsBest > bw {
				best = fmt.Sprintf("; %.0f%% of the fastest probe's %.1f GB/s", 100*r.LM.BandwidthFraction(h.ReadGBpsBest), h.ReadGBpsBest)
			}
			fmt.Fprintf(w, "%s decode at batch 1: %.1f tokens/s = %.0f%% of the bandwidth limit %.1f tokens/s (%.1f MB of weights read per token%s)\n",
				r.Name, r.LM.Point(1).TokensPerSec, 100*r.LM.BandwidthFraction(bw), limit, float64(r.LM.WeightBytes)/1e6, best)
		}
	}
	maxBatch, positions := 0, rep.Shape.PromptTokens+rep.Shape.NewTokens
	if n := len(rep.Shape.Batches); n > 0 {
		maxBatch = rep.Shape.Batches[n-1]
	}
	for _, r := range rep.Rows {
		if r.LM == nil || r.LM.WeightBytes <= 0 || r.LM.PeakRSSBytes <= 0 {
			continue
		}
		fmt.Fprintf(w, "%s GPT-2 plugin peak RSS: %.0f MiB after load, %.0f MiB after decoding (weights %.0f MiB; 1.15×weights + 64 MiB = %.0f MiB; KV cache at batch %d × %d positions: %.0f MiB in float32, %.0f MiB in fp16, the native int8 default)\n",
			r.Name, mib(r.LM.LoadPeakRSSBytes), mib(r.LM.PeakRSSBytes), mib(r.LM.WeightBytes), RSSTargetMiB(r.LM.WeightBytes),
			maxBatch, positions, mib(rep.Shape.KVBytes(maxBatch)), mib(rep.Shape.KVBytes(maxBatch))/2)
	}
	for _, r := range rep.Rows {
		if r.Error != "" {
			fmt.Fprintf(w, "%s failed: %s\n", r.Name, r.Error)
		}
	}
	return nil
}

func num(v float64) string {
	switch {
	case v <= 0:
		return "-"
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	}
	return fmt.Sprintf("%.2f", v)
}

// WriteJSON writes the report, indented, to path (atomically: a temporary file renamed).
func (rep *Report) WriteJSON(path string) error {
	data, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	return writeAtomic(path, append(data, '\n'))
}

func writeAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".*.tmp")
	if err != nil {
		return fmt.Errorf("bench: write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("bench: write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("bench: write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("bench: write %s: %w", path, err)
	}
	return nil
}

// Plot draws decode tokens/s against batch size, one line per row with LM figures, and saves
// it to path (the extension picks the format: .png, .svg, .pdf).
func (rep *Report) Plot(path string) error {
	p := plot.New()
	p.Title.Text = fmt.Sprintf("modelrt bench (%s): GPT-2 %d layers × %d, %d new tokens", rep.Shape.Name,
		rep.Shape.GPT2.NLayer, rep.Shape.GPT2.NEmbd, rep.Shape.NewTokens)
	p.X.Label.Text = "batch size"
	p.Y.Label.Text = "decode tokens/s (all rows)"
	p.Legend.Top, p.Legend.Left = true, true
	var ticks []plot.Tick
	for _, b := range rep.Shape.Batches {
		ticks = append(ticks, plot.Tick{Value: float64(b), Label: fmt.Sprint(b)})
	}
	p.X.Tick.Marker = plot.ConstantTicks(ticks)
	p.Y.Min = 0
	var lines []any
	for _, r := range rep.Rows {
		if r.LM == nil || len(r.LM.Decode) == 0 {
			continue
		}
		xys := make(plotter.XYs, len(r.LM.Decode))
		for i, d := range r.LM.Decode {
			xys[i] = plotter.XY{X: float64(d.Batch), Y: d.TokensPerSec}
		}
		lines = append(lines, r.Name, xys)
	}
	if len(lines) == 0 {
		return fmt.Errorf("bench: plot %s: no decode figures to draw", path)
	}
	if err := plotutil.AddLinePoints(p, lines...); err != nil {
		return fmt.Errorf("bench: plot: %w", err)
	}
	// plot.Save writes in place; render to a temporary name so a failure leaves no half file.
	tmp := filepath.Join(filepath.Dir(path), ".tmp-"+filepath.Base(path))
	if err := p.Save(7*vg.Inch, 4.5*vg.Inch, tmp); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("bench: plot %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("bench: plot %s: %w", path, err)
	}
	return nil
}
