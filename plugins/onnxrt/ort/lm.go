package ort

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"

	ortgo "github.com/yalue/onnxruntime_go"
)

// Convention names the input/output layout of a decoder graph.
type Convention string

const (
	// ConventionOptimum: input_ids, attention_mask, position_ids (optional),
	// past_key_values.{i}.key|value [B,H,P,D] → logits [B,T,V], present.{i}.key|value [B,H,P+T,D].
	ConventionOptimum Convention = "optimum"
	// ConventionStacked is ONNX Runtime's older GPT-2 export: input_ids, position_ids,
	// attention_mask, past_{i} [2,B,H,P,D] (key and value stacked) → logits, present_{i}.
	ConventionStacked Convention = "ort-stacked"
	// ConventionNoPast: input_ids (+ attention_mask, position_ids) → logits; every step recomputes
	// the whole sequence.
	ConventionNoPast Convention = "no-past"
)

const knownConventions = `optimum (input_ids, attention_mask, [position_ids], [use_cache_branch], past_key_values.{i}.key|value [B,H,P,D] -> logits, present.{i}.key|value); ` +
	`ort-stacked (input_ids, [position_ids], [attention_mask], past_{i} [2,B,H,P,D] -> logits, present_{i}); ` +
	`no-past (input_ids, [attention_mask], [position_ids] -> logits)`

// LMFiles are the graph file names LoadLM looks for in a model directory, in order.
var LMFiles = []string{"model.onnx", "decoder_model_merged.onnx", "decoder_with_past_model.onnx"}

// LMInfo describes a loaded decoder graph.
type LMInfo struct {
	Path       string // the .onnx file
	Convention Convention
	// NLayer, NHead and HeadDim come from the past inputs' shapes (config.json or
	// genai_config.json when the graph leaves them symbolic); VocabSize from the logits' last axis.
	NLayer, NHead, HeadDim, VocabSize int
	IDsType                           string // "int32" or "int64"
	HasPositionIDs, HasAttentionMask  bool
	// EOS is the end-of-sequence id from config.json or genai_config.json, -1 when neither says.
	EOS int64
	// MaxContext is n_positions (config.json) or context_length (genai_config.json), 0 when
	// unknown; Forward rejects sequences longer than it.
	MaxContext int
}

// LM is a loaded decoder graph. It is safe for concurrent use; each LMSession holds one
// sequence batch and its KV cache.
type LM struct {
	info LMInfo
	sess *ortgo.DynamicAdvancedSession

	// input roles, as indices into the input list the session was created with
	maskType, posType string // element types of attention_mask and position_ids
	inMask, inPos     int    // -1 when absent
	// cacheBranch: the graph has Optimum's merged-decoder flag use_cache_branch (bool [1]),
	// fed false at prefill and true once the session holds a cache.
	cacheBranch bool
	slots       []cacheSlot
	// fixedBatch is input_ids' static batch dimension, 0 when symbolic.
	fixedBatch int

	// mu guards closed; Forward holds it shared for the length of a run, Close exclusively.
	mu     sync.RWMutex
	closed bool

	// gmu serialises batched Steps and guards the groups they pack sessions into (batch.go);
	// taken after mu and before any session's mu.
	gmu sync.Mutex
	// repack: pack every Step's sessions afresh instead of keeping the last packed batch
	// (SetRepackEveryStep; for measuring what keeping it saves).
	repack     bool
	batchStats BatchStats
}

// cacheSlot is one past input and its present output. The sequence axis is axis seqAxis of
// shape; every other axis is static once the batch is known.
type cacheSlot struct {
	in, out string
	// stacked: [2,B,H,P,D]; optimum: [B,H,P,D]
	stacked bool
}

var (
	reOptimumPast = regexp.MustCompile(`^past_key_values\.(\d+)\.(key|value)$`)
	reStackedPast = regexp.MustCompile(`^past_(\d+)$`)
)

// LoadLM loads the decoder graph of a model directory (the first of LMFiles present) with its
// optional config.json / genai_config.json. dir may also name an .onnx file directly.
func LoadLM(dir string, so SessionOptions) (*LM, error) {
	lm, inNames, outNames, err := inspect(dir)
	if err != nil {
		return nil, err
	}
	path := lm.info.Path
	if lm.sess, err = openSession(path, inNames, outNames, so); err != nil {
		return nil, err
	}
	if lm.info.Convention == ConventionNoPast {
		slog.Warn("onnx graph has no past inputs: every step recomputes the whole sequence",
			"path", path, "inputs", inNames)
	}
	slog.Debug("onnx decoder loaded", "path", path, "convention", lm.info.Convention,
		"layers", lm.info.NLayer, "heads", lm.info.NHead, "head_dim", lm.info.HeadDim, "vocab", lm.info.VocabSize)
	return lm, nil
}

// InspectLM reports what LoadLM would load from dir without creating an ONNX Runtime session
// (milliseconds: it scans the protobuf for the declared inputs and outputs). Its error for a
// graph whose inputs fit no convention is LoadLM's (ErrUnsupportedGraph), so a caller can pick
// the `graph` task over `causal-lm`; a graph that scans but that ONNX Runtime refuses (IR too
// new, missing external data) passes InspectLM and fails in LoadLM.
func InspectLM(dir string) (LMInfo, error) {
	lm, _, _, err := inspect(dir)
	if err != nil {
		return LMInfo{}, err
	}
	return lm.info, nil
}

// inspect finds the graph in dir, reads its config and declared I/O, and detects the convention.
func inspect(dir string) (*LM, []string, []string, error) {
	if err := Init(EnvOptions{}); err != nil {
		return nil, nil, nil, err
	}
	path, err := findGraph(dir)
	if err != nil {
		return nil, nil, nil, err
	}
	cfg, err := readModelConfig(filepath.Dir(path))
	if err != nil {
		return nil, nil, nil, err
	}
	ins, outs, err := graphInfo(path)
	if err != nil {
		return nil, nil, nil, err
	}
	return detect(path, ins, outs, cfg)
}

func findGraph(dir string) (string, error) {
	st, err := os.Stat(dir)
	if err != nil {
		return "", fmt.Errorf("load %s: %w", dir, err)
	}
	if !st.IsDir() {
		return dir, nil
	}
	for _, name := range LMFiles {
		p := filepath.Join(dir, name)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("load %s: no decoder graph (looked for %s): %w", dir, strings.Join(LMFiles, ", "), fs.ErrNotExist)
}

// graphInfo reads the declared inputs and outputs: scanGraphIO when the file parses, else a
// throwaway ONNX Runtime session with optimizations off, which reports what is wrong with the
// file (not ONNX, truncated, …) in ONNX Runtime's words, with the file name. A file that scans
// but that ONNX Runtime cannot load (IR too new, missing external data) fails when the real
// session is created, with the same kind of message.
func graphInfo(path string) ([]ortgo.InputOutputInfo, []ortgo.InputOutputInfo, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, nil, fmt.Errorf("load %s: %w", path, err)
	}
	ins, outs, err := scanGraphIO(path)
	if err == nil && len(outs) > 0 {
		return ins, outs, nil
	}
	slog.Debug("onnx: scanning graph inputs failed; asking ONNX Runtime", "path", path, "err", err)
	return ortGraphInfo(path)
}

// ortGraphInfo reads the declared inputs and outputs through a throwaway session.
func ortGraphInfo(path string) ([]ortgo.InputOutputInfo, []ortgo.InputOutputInfo, error) {
	opts, err := ortgo.NewSessionOptions()
	if err != nil {
		return nil, nil, fmt.Errorf("ort: session options: %w", err)
	}
	defer opts.Destroy()
	if err := opts.SetGraphOptimizationLevel(ortgo.GraphOptimizationLevelDisableAll); err != nil {
		return nil, nil, fmt.Errorf("ort: session options: %w", err)
	}
	ins, outs, err := ortgo.GetInputOutputInfoWithOptions(path, opts)
	if err != nil {
		return nil, nil, fmt.Errorf("load %s: %w", path, err)
	}
	return ins, outs, nil
}

// modelConfig holds what config.json or genai_config.json says; zero means unknown.
type modelConfig struct {
	nLayer, nHead, headDim, vocab, context int
	eos                                    int64
	hasEOS                                 bool
}

// readModelConfig reads config.json (GPT2Config) or, failing that, genai_config.json (ORT GenAI)
// in dir. Neither file is required; a present but malformed one is an error.
func readModelConfig(dir string) (modelConfig, error) {
	var c modelConfig
	p := filepath.Join(dir, "config.json")
	data, err := os.ReadFile(p)
	if err == nil {
		var hf struct {
			NLayer     int             `json:"n_layer"`
			NHead      int             `json:"n_head"`
			NEmbd      int             `json:"n_embd"`
			Vocab      int             `json:"vocab_size"`
			NPositions int             `json:"n_positions"`
			EOS        json.RawMessage `json:"eos_token_id"`
		}
		if err := json.Unmarshal(data, &hf); err != nil {
			return c, fmt.Errorf("load %s: %w", p, err)
		}
		c = modelConfig{nLayer: hf.NLayer, nHead: hf.NHead, vocab: hf.Vocab, context: hf.NPositions}
		if hf.NHead > 0 {
			c.headDim = hf.NEmbd / hf.NHead
		}
		c.eos, c.hasEOS, err = firstID(hf.EOS)
		if err != nil {
			return c, fmt.Errorf("load %s: eos_token_id: %w", p, err)
		}
		return c, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return c, fmt.Errorf("load %s: %w", p, err)
	}
	p = filepath.Join(dir, "genai_config.json")
	data, err = os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return c, nil
	} else if err != nil {
		return c, fmt.Errorf("load %s: %w", p, err)
	}
	var g struct {
		Model struct {
			EOS     json.RawMessage `json:"eos_token_id"`
			Context int             `json:"context_length"`
			Vocab   int             `json:"vocab_size"`
			Decoder struct {
				HeadSize int `json:"head_size"`
				NHead    int `json:"num_attention_heads"`
				NKVHead  int `json:"num_key_value_heads"`
				NLayer   int `json:"num_hidden_layers"`
			} `json:"decoder"`
		} `json:"model"`
	}
	if err := json.Unmarshal(data, &g); err != nil {
		return c, fmt.Errorf("load %s: %w", p, err)
	}
	m := g.Model
	c = modelConfig{nLayer: m.Decoder.NLayer, nHead: m.Decoder.NKVHead, headDim: m.Decoder.HeadSize, vocab: m.Vocab, context: m.Context}
	if c.nHead == 0 {
		c.nHead = m.Decoder.NHead
	}
	c.eos, c.hasEOS, err = firstID(m.EOS)
	if err != nil {
		return c, fmt.Errorf("load %s: eos_token_id: %w", p, err)
	}
	return c, nil
}

// firstID decodes an id that may be absent, null, a number or a list of numbers (the first wins).
func firstID(raw json.RawMessage) (int64, bool, error) {
	s := strings.TrimSpace(string(raw))
	if s == "" || s == "null" {
		return 0, false, nil
	}
	var one int64
	if err := json.Unmarshal(raw, &one); err == nil {
		return one, true, nil
	}
	var many []int64
	if err := json.Unmarshal(raw, &many); err != nil {
		return 0, false, err
	}
	if len(many) == 0 {
		return 0, false, nil
	}
	return many[0], true, nil
}

// detect matches the declared inputs and outputs against the known conventions and returns the
// LM (without its session) and the input and output names, in the order Forward passes values.
func detect(path string, ins, outs []ortgo.InputOutputInfo, cfg modelConfig) (*LM, []string, []string, error) {
	unsupported := func(why string) (*LM, []string, []string, error) {
		return nil, nil, nil, fmt.Errorf("%w: %s: %s; inputs seen: %s; outputs seen: %s; conventions known: %s",
			ErrUnsupportedGraph, path, why, describe(ins), describe(outs), knownConventions)
	}
	inBy := map[string]ortgo.InputOutputInfo{}
	for _, in := range ins {
		inBy[in.Name] = in
	}
	outBy := map[string]ortgo.InputOutputInfo{}
	for _, o := range outs {
		outBy[o.Name] = o
	}
	lm := &LM{inMask: -1, inPos: -1}
	lm.info.Path = path
	lm.info.EOS = -1
	if cfg.hasEOS {
		lm.info.EOS = cfg.eos
	}
	lm.info.MaxContext = cfg.context

	ids, ok := inBy["input_ids"]
	if !ok {
		return unsupported("no input_ids input")
	}
	lm.info.IDsType = dtypeName(ids.DataType)
	if lm.info.IDsType != "int32" && lm.info.IDsType != "int64" {
		return unsupported("input_ids is " + lm.info.IDsType + ", want int32 or int64")
	}
	if len(ids.Dimensions) != 2 {
		return unsupported(fmt.Sprintf("input_ids has rank %d, want 2 [B,T]", len(ids.Dimensions)))
	}
	if ids.Dimensions[0] > 0 {
		lm.fixedBatch = int(ids.Dimensions[0])
	}
	inNames := []string{"input_ids"}
	if m, ok := inBy["attention_mask"]; ok {
		lm.maskType = dtypeName(m.DataType)
		if lm.maskType != "int32" && lm.maskType != "int64" && lm.maskType != "float32" {
			return unsupported("attention_mask is " + lm.maskType + ", want int32, int64 or float32")
		}
		lm.info.HasAttentionMask = true
		lm.inMask = len(inNames)
		inNames = append(inNames, "attention_mask")
	}
	if p, ok := inBy["position_ids"]; ok {
		lm.posType = dtypeName(p.DataType)
		if lm.posType != "int32" && lm.posType != "int64" {
			return unsupported("position_ids is " + lm.posType + ", want int32 or int64")
		}
		lm.info.HasPositionIDs = true
		lm.inPos = len(inNames)
		inNames = append(inNames, "position_ids")
	}

	if u, ok := inBy["use_cache_branch"]; ok {
		if dtypeName(u.DataType) != "bool" {
			return unsupported("use_cache_branch is " + dtypeName(u.DataType) + ", want bool")
		}
		lm.cacheBranch = true
		inNames = append(inNames, "use_cache_branch")
	}

	// Classify the remaining inputs as past tensors of one convention.
	type pastIn struct {
		layer int
		kind  string // "key", "value" or "" (stacked)
		info  ortgo.InputOutputInfo
	}
	var optimum, stacked []pastIn
	var unknown []string
	for _, in := range ins {
		switch in.Name {
		case "input_ids", "attention_mask", "position_ids", "use_cache_branch":
			continue
		}
		if m := reOptimumPast.FindStringSubmatch(in.Name); m != nil {
			l, _ := strconv.Atoi(m[1])
			optimum = append(optimum, pastIn{l, m[2], in})
		} else if m := reStackedPast.FindStringSubmatch(in.Name); m != nil {
			l, _ := strconv.Atoi(m[1])
			stacked = append(stacked, pastIn{l, "", in})
		} else {
			unknown = append(unknown, in.Name)
		}
	}
	if len(unknown) > 0 {
		return unsupported("unrecognised inputs " + strings.Join(unknown, ", "))
	}
	if len(optimum) > 0 && len(stacked) > 0 {
		return unsupported("both past_key_values.* and past_* inputs")
	}

	logits, ok := outBy["logits"]
	if !ok {
		return unsupported("no logits output")
	}
	if dtypeName(logits.DataType) != "float32" {
		return unsupported("logits is " + dtypeName(logits.DataType) + ", want float32")
	}
	if len(logits.Dimensions) != 3 {
		return unsupported(fmt.Sprintf("logits has rank %d, want 3 [B,T,V]", len(logits.Dimensions)))
	}
	lm.info.VocabSize = int(logits.Dimensions[2])
	if lm.info.VocabSize <= 0 {
		lm.info.VocabSize = cfg.vocab
	}
	if lm.info.VocabSize <= 0 {
		return unsupported("the vocabulary size is symbolic in logits and no config.json or genai_config.json gives vocab_size")
	}
	outNames := []string{"logits"}

	pasts := optimum
	lm.info.Convention = ConventionOptimum
	perLayer, rank := 2, 4
	if len(stacked) > 0 {
		pasts = stacked
		lm.info.Convention = ConventionStacked
		perLayer, rank = 1, 5
	}
	if len(pasts) == 0 {
		if lm.cacheBranch {
			return unsupported("use_cache_branch without past inputs")
		}
		lm.info.Convention = ConventionNoPast
		lm.info.NLayer, lm.info.NHead, lm.info.HeadDim = cfg.nLayer, cfg.nHead, cfg.headDim
		return lm, inNames, outNames, nil
	}
	if len(pasts)%perLayer != 0 {
		return unsupported("past inputs do not come in key/value pairs")
	}
	sort.Slice(pasts, func(i, j int) bool {
		if pasts[i].layer != pasts[j].layer {
			return pasts[i].layer < pasts[j].layer
		}
		return pasts[i].kind < pasts[j].kind // "key" < "value"
	})
	nLayer := len(pasts) / perLayer
	heads, headDim := int64(-1), int64(-1)
	for i, p := range pasts {
		if p.layer != i/perLayer || (perLayer == 2 && p.kind != [2]string{"key", "value"}[i%2]) {
			return unsupported(fmt.Sprintf("past inputs are not layers 0..%d with one %s each", nLayer-1, map[int]string{1: "tensor", 2: "key and value"}[perLayer]))
		}
		if dt := dtypeName(p.info.DataType); dt != "float32" {
			return unsupported(fmt.Sprintf("%s is %s; only float32 caches are supported", p.info.Name, dt))
		}
		d := p.info.Dimensions
		if len(d) != rank {
			return unsupported(fmt.Sprintf("%s has rank %d, want %d", p.info.Name, len(d), rank))
		}
		h, hd := d[rank-3], d[rank-1]
		if (heads > 0 && h > 0 && h != heads) || (headDim > 0 && hd > 0 && hd != headDim) {
			return unsupported(fmt.Sprintf("%s has shape %v, inconsistent with the other past inputs", p.info.Name, d))
		}
		if h > 0 {
			heads = h
		}
		if hd > 0 {
			headDim = hd
		}
		out := "present." + strconv.Itoa(p.layer) + "." + p.kind
		if lm.info.Convention == ConventionStacked {
			out = "present_" + strconv.Itoa(p.layer)
			if rank == 5 && d[0] > 0 && d[0] != 2 {
				return unsupported(fmt.Sprintf("%s has shape %v, want [2,B,H,P,D]", p.info.Name, d))
			}
		}
		if o, ok := outBy[out]; !ok {
			return unsupported(fmt.Sprintf("no %s output for input %s", out, p.info.Name))
		} else if dtypeName(o.DataType) != "float32" {
			return unsupported(fmt.Sprintf("%s is %s, want float32", out, dtypeName(o.DataType)))
		}
		lm.slots = append(lm.slots, cacheSlot{in: p.info.Name, out: out, stacked: lm.info.Convention == ConventionStacked})
		inNames = append(inNames, p.info.Name)
		outNames = append(outNames, out)
	}
	if heads <= 0 {
		heads = int64(cfg.nHead)
	}
	if headDim <= 0 {
		headDim = int64(cfg.headDim)
	}
	if heads <= 0 || headDim <= 0 {
		return unsupported("the head count or head size is symbolic in the past inputs and no config.json or genai_config.json gives it")
	}
	lm.info.NLayer, lm.info.NHead, lm.info.HeadDim = nLayer, int(heads), int(headDim)
	return lm, inNames, outNames, nil
}

// describe lists tensors as `name dtype [dims]` (-1 = symbolic).
func describe(infos []ortgo.InputOutputInfo) string {
	parts := make([]string, len(infos))
	for i, in := range infos {
		parts[i] = fmt.Sprintf("%s %s %v", in.Name, dtypeName(in.DataType), []int64(in.Dimensions))
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

// Info describes the graph.
func (m *LM) Info() LMInfo { return m.info }

// Close releases the ONNX Runtime session. Sessions created from m fail with ErrClosed
// afterwards; Close waits for runs in flight.
func (m *LM) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil
	}
	m.closed = true
	if m.sess != nil {
		return m.sess.Destroy()
	}
	return nil
}
