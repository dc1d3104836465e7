// Command report joins one `modelrt bench --json` report and the llama.cpp harness's JSON
// objects (scripts/bench/llamacpp.sh) into one table, one JSON file and one plot, and checks the
// greedy ids of llama.cpp F32 against the native backend's. It is a step of that script, not a
// tool of its own.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/modelrt/modelrt/runtime/bench"
)

// harnessResult is what scripts/bench/llamacpp/harness.c prints.
type harnessResult struct {
	Model        string              `json:"model"`
	Threads      int                 `json:"threads"`
	Vocab        int                 `json:"vocab"`
	LoadMS       float64             `json:"load_ms"`
	PromptTokens int                 `json:"prompt_tokens"`
	NewTokens    int                 `json:"new_tokens"`
	FlashAttn    string              `json:"flash_attn"`
	SystemInfo   string              `json:"system_info"`
	Decode       []bench.DecodePoint `json:"decode"`
	PrefillMS    float64             `json:"prefill_ms"`
	GreedyPrompt []int               `json:"greedy_prompt"`
	GreedyIDs    []int               `json:"greedy_ids"`
}

// Output is the JSON this command writes.
type Output struct {
	Load      string                    `json:"load_average"`
	LlamaCpp  string                    `json:"llama_cpp"`
	Threads   int                       `json:"threads"`
	Table     []Line                    `json:"table"`
	Targets   []Target                  `json:"targets"`
	Greedy    []Greedy                  `json:"greedy"`
	Modelrt   *bench.Report             `json:"modelrt"`
	Harnesses map[string]*harnessResult `json:"llama_cpp_runs"`
}

// Line is one row of the table.
type Line struct {
	Row             string          `json:"row"`
	PrefillTokPerS  float64         `json:"prefill_tokens_per_s"`
	PrefillMS       float64         `json:"prefill_ms"`
	DecodeTokPerSec map[int]float64 `json:"decode_tokens_per_s"`
}

// Target is one "modelrt row ≥ llama.cpp row" comparison.
type Target struct {
	Modelrt  string  `json:"modelrt"`
	LlamaCpp string  `json:"llama_cpp"`
	Metric   string  `json:"metric"`
	Ratio    float64 `json:"ratio"` // modelrt ÷ llama.cpp; ≥ 1 meets the target
	Met      bool    `json:"met"`
}

// Greedy compares the greedy continuation of the same prompt.
type Greedy struct {
	Label         string `json:"label"`
	Prompt        []int  `json:"prompt"`
	LlamaCpp      []int  `json:"llama_cpp"`
	Native        []int  `json:"native"`
	Agree         int    `json:"agree"` // ids equal position by position
	Total         int    `json:"total"`
	FirstMismatch int    `json:"first_mismatch"` // -1 when all agree
}

func main() {
	var modelrtPath, jsonPath, plotPath, load, version string
	var llama, greedy multiFlag
	flag.StringVar(&modelrtPath, "modelrt", "", "modelrt bench --json report")
	flag.Var(&llama, "llama", "TYPE=harness.json (repeatable: F32, F16, Q8_0)")
	flag.Var(&greedy, "greedy", "LABEL=HARNESS.json,NATIVE.json: compare llama.cpp's greedy ids with modelrt generate --json's (repeatable)")
	flag.StringVar(&jsonPath, "json", "", "write the joined report here")
	flag.StringVar(&plotPath, "plot", "", "write the plot here (.png)")
	flag.StringVar(&load, "load", "", "load average line to record")
	flag.StringVar(&version, "llama-version", "", "llama.cpp build to record")
	flag.Parse()
	if err := run(os.Stdout, modelrtPath, llama, greedy, jsonPath, plotPath, load, version); err != nil {
		fmt.Fprintln(os.Stderr, "report:", err)
		os.Exit(1)
	}
}

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

func readJSON(path string, v any) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

func run(w io.Writer, modelrtPath string, llama, greedy []string, jsonPath, plotPath, load, version string) error {
	rep := &bench.Report{}
	if err := readJSON(modelrtPath, rep); err != nil {
		return err
	}
	out := Output{Load: load, LlamaCpp: version, Modelrt: rep, Harnesses: map[string]*harnessResult{}}
	// The plot draws the rows of a bench report: llama.cpp's are added to a copy.
	plotRep := *rep
	plotRep.Rows = append([]bench.Row(nil), rep.Rows...)
	lines := map[string]*Line{}
	var order []string
	add := func(name string, prefillMS float64, prompt int, decode []bench.DecodePoint) {
		l := &Line{Row: name, PrefillMS: prefillMS, DecodeTokPerSec: map[int]float64{}}
		if prefillMS > 0 {
			l.PrefillTokPerS = float64(prompt) / (prefillMS / 1e3)
		}
		for _, d := range decode {
			l.DecodeTokPerSec[d.Batch] = d.TokensPerSec
		}
		lines[name] = l
		order = append(order, name)
	}
	for _, r := range rep.Rows {
		if r.LM != nil {
			add("modelrt "+r.Name, r.LM.PrefillMS, rep.Shape.PromptTokens, r.LM.Decode)
		}
	}
	for _, spec := range llama {
		typ, path, ok := strings.Cut(spec, "=")
		if !ok {
			return fmt.Errorf("-llama %q: want TYPE=FILE", spec)
		}
		h := &harnessResult{}
		if err := readJSON(path, h); err != nil {
			return err
		}
		if h.PromptTokens != rep.Shape.PromptTokens || h.NewTokens != rep.Shape.NewTokens {
			return fmt.Errorf("%s: prompt %d / new %d tokens differ from modelrt bench's %d / %d", path,
				h.PromptTokens, h.NewTokens, rep.Shape.PromptTokens, rep.Shape.NewTokens)
		}
		out.Harnesses[typ], out.Threads = h, h.Threads
		name := "llama.cpp " + typ
		add(name, h.PrefillMS, h.PromptTokens, h.Decode)
		plotRep.Rows = append(plotRep.Rows, bench.Row{Name: name, Backend: "llama.cpp", Weights: typ,
			LM: &bench.LMResult{PrefillMS: h.PrefillMS, Decode: h.Decode}})
	}
	for _, pair := range [][2]string{{"modelrt native", "llama.cpp F32"}, {"modelrt native-int8", "llama.cpp Q8_0"}} {
		a, b := lines[pair[0]], lines[pair[1]]
		if a == nil || b == nil {
			continue
		}
		cmp := func(metric string, x, y float64) {
			if x > 0 && y > 0 {
				out.Targets = append(out.Targets, Target{Modelrt: pair[0], LlamaCpp: pair[1], Metric: metric, Ratio: x / y, Met: x >= y})
			}
		}
		cmp("prefill 64", a.PrefillTokPerS, b.PrefillTokPerS)
		cmp("decode b1", a.DecodeTokPerSec[1], b.DecodeTokPerSec[1])
		cmp("decode b8", a.DecodeTokPerSec[8], b.DecodeTokPerSec[8])
	}
	for _, spec := range greedy {
		g, err := compareGreedy(spec)
		if err != nil {
			return err
		}
		out.Greedy = append(out.Greedy, g)
	}
	for _, name := range order {
		out.Table = append(out.Table, *lines[name])
	}
	writeTable(w, out, rep.Shape.Batches)
	if jsonPath != "" {
		data, err := json.MarshalIndent(out, "", "  ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(jsonPath, append(data, '\n'), 0o644); err != nil {
			return err
		}
	}
	if plotPath != "" {
		plotRep.Shape.Name = fmt.Sprintf("%s; llama.cpp at %d threads", rep.Shape.Name, out.Threads)
		return plotRep.Plot(plotPath)
	}
	return nil
}

func writeTable(w io.Writer, out Output, batches []int) {
	fmt.Fprintf(w, "GPT-2 124M (random weights), %d threads for llama.cpp; load average: %s\n\n", out.Threads, out.Load)
	fmt.Fprint(w, "| row | prefill 64 (tokens/s) |")
	for _, b := range batches {
		fmt.Fprintf(w, " decode b%d (tokens/s) |", b)
	}
	fmt.Fprint(w, "\n|---|---:|")
	for range batches {
		fmt.Fprint(w, "---:|")
	}
	fmt.Fprintln(w)
	for _, l := range out.Table {
		fmt.Fprintf(w, "| %s | %.0f |", l.Row, l.PrefillTokPerS)
		for _, b := range batches {
			if v, ok := l.DecodeTokPerSec[b]; ok {
				fmt.Fprintf(w, " %.1f |", v)
			} else {
				fmt.Fprint(w, " – |")
			}
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintln(w)
	for _, t := range out.Targets {
		verdict := "met"
		if !t.Met {
			verdict = "NOT met"
		}
		fmt.Fprintf(w, "target %-20s ≥ %-15s %-10s ratio %.2f  %s\n", t.Modelrt, t.LlamaCpp, t.Metric, t.Ratio, verdict)
	}
	for _, g := range out.Greedy {
		distinct := map[int]bool{}
		for _, id := range g.Native {
			distinct[id] = true
		}
		fmt.Fprintf(w, "greedy ids, %s vs modelrt native, %d-token prompt: %d of %d agree (first mismatch: %d; %d distinct ids)\n",
			g.Label, len(g.Prompt), g.Agree, g.Total, g.FirstMismatch, len(distinct))
	}
}

// compareGreedy reads LABEL=HARNESS.json,NATIVE.json and compares the ids position by position.
func compareGreedy(spec string) (Greedy, error) {
	label, files, ok := strings.Cut(spec, "=")
	hpath, npath, ok2 := strings.Cut(files, ",")
	if !ok || !ok2 {
		return Greedy{}, fmt.Errorf("-greedy %q: want LABEL=HARNESS.json,NATIVE.json", spec)
	}
	h := &harnessResult{}
	if err := readJSON(hpath, h); err != nil {
		return Greedy{}, err
	}
	var n struct {
		IDs          []int `json:"ids"`
		PromptTokens int   `json:"prompt_tokens"`
	}
	if err := readJSON(npath, &n); err != nil {
		return Greedy{}, err
	}
	native := n.IDs[min(n.PromptTokens, len(n.IDs)):]
	g := Greedy{Label: label, Prompt: h.GreedyPrompt, LlamaCpp: h.GreedyIDs, Native: native, Total: len(h.GreedyIDs), FirstMismatch: -1}
	for i, id := range h.GreedyIDs {
		if i < len(native) && native[i] == id {
			g.Agree++
		} else if g.FirstMismatch < 0 {
			g.FirstMismatch = i
		}
	}
	return g, nil
}
