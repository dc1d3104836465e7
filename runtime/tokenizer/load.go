package tokenizer

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Load reads the tokenizer of a model directory, trying in order vocab.json + merges.txt
// (Hugging Face's GPT-2 files), encoder.json + vocab.bpe (OpenAI's names for the same files)
// and tokenizer.json (Hugging Face tokenizers: a BPE model with the ByteLevel pre-tokenizer).
// Errors name the file.
func Load(dir string) (*Tokenizer, error) {
	pairs := [][2]string{{"vocab.json", "merges.txt"}, {"encoder.json", "vocab.bpe"}}
	for _, p := range pairs {
		vocabPath := filepath.Join(dir, p[0])
		if _, err := os.Stat(vocabPath); errors.Is(err, fs.ErrNotExist) {
			continue
		}
		return loadVocabMerges(vocabPath, filepath.Join(dir, p[1]))
	}
	path := filepath.Join(dir, "tokenizer.json")
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w in %s (want vocab.json + merges.txt, encoder.json + vocab.bpe or tokenizer.json)", ErrNoTokenizer, dir)
	}
	if err != nil {
		return nil, fmt.Errorf("load tokenizer: %w", err)
	}
	t, err := ParseTokenizerJSON(data)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", path, err)
	}
	return t, nil
}

func loadVocabMerges(vocabPath, mergesPath string) (*Tokenizer, error) {
	vdata, err := os.ReadFile(vocabPath)
	if err != nil {
		return nil, fmt.Errorf("load tokenizer: %w", err)
	}
	vocab, err := ParseVocab(vdata)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", vocabPath, err)
	}
	mdata, err := os.ReadFile(mergesPath)
	if err != nil {
		return nil, fmt.Errorf("load tokenizer: %w", err)
	}
	merges, err := ParseMerges(mdata)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", mergesPath, err)
	}
	var special []string
	if _, ok := vocab[EndOfText]; ok {
		special = append(special, EndOfText)
	}
	t, err := New(vocab, merges, special...)
	if err != nil {
		return nil, fmt.Errorf("load %s + %s: %w", vocabPath, mergesPath, err)
	}
	return t, nil
}

// ParseVocab parses vocab.json / encoder.json: one JSON object from token spelling to id.
func ParseVocab(data []byte) (map[string]int, error) {
	var vocab map[string]int
	if err := json.Unmarshal(data, &vocab); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if vocab == nil {
		return nil, fmt.Errorf("%w: vocabulary is not a JSON object", ErrInvalid)
	}
	return vocab, nil
}

// ParseMerges parses merges.txt / vocab.bpe: an optional "#version" first line, then one merge
// "left right" per line in rank order. Blank lines are ignored (the files end with one).
func ParseMerges(data []byte) ([][2]string, error) {
	var merges [][2]string
	for n, line := range bytes.Split(data, []byte("\n")) {
		line = bytes.TrimSuffix(line, []byte("\r"))
		if len(line) == 0 || (n == 0 && bytes.HasPrefix(line, []byte("#version"))) {
			continue
		}
		parts := strings.Split(string(line), " ")
		if len(parts) != 2 || parts[0] == "" || parts[1] == "" {
			return nil, fmt.Errorf("%w: line %d: want two tokens separated by one space, got %q", ErrInvalid, n+1, line)
		}
		merges = append(merges, [2]string{parts[0], parts[1]})
	}
	return merges, nil
}

// hfTokenizer is the part of Hugging Face's tokenizer.json that a byte-level BPE needs.
type hfTokenizer struct {
	AddedTokens []struct {
		ID      int    `json:"id"`
		Content string `json:"content"`
	} `json:"added_tokens"`
	PreTokenizer *hfPreTokenizer `json:"pre_tokenizer"`
	Model        struct {
		Type   string            `json:"type"`
		Vocab  map[string]int    `json:"vocab"`
		Merges []json.RawMessage `json:"merges"`
	} `json:"model"`
}

type hfPreTokenizer struct {
	Type           string           `json:"type"`
	AddPrefixSpace bool             `json:"add_prefix_space"`
	UseRegex       *bool            `json:"use_regex"`
	PreTokenizers  []hfPreTokenizer `json:"pretokenizers"`
}

// byteLevel finds the ByteLevel step, alone or inside a Sequence.
func (p *hfPreTokenizer) byteLevel() (*hfPreTokenizer, bool) {
	switch p.Type {
	case "ByteLevel":
		return p, true
	case "Sequence":
		if len(p.PreTokenizers) == 1 {
			return p.PreTokenizers[0].byteLevel()
		}
	}
	return nil, false
}

// ParseTokenizerJSON builds a tokenizer from the contents of a Hugging Face tokenizer.json.
// Only a BPE model with the ByteLevel pre-tokenizer (GPT-2's scheme) is accepted; merges may be
// "left right" strings or ["left", "right"] pairs; every added token becomes a special token
// that Encode recognises in text.
func ParseTokenizerJSON(data []byte) (*Tokenizer, error) {
	var hf hfTokenizer
	if err := json.Unmarshal(data, &hf); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if hf.Model.Type != "" && hf.Model.Type != "BPE" {
		return nil, fmt.Errorf("%w: model.type %q: only BPE is supported", ErrInvalid, hf.Model.Type)
	}
	if hf.Model.Vocab == nil {
		return nil, fmt.Errorf("%w: model.vocab missing", ErrInvalid)
	}
	if hf.PreTokenizer == nil {
		return nil, fmt.Errorf("%w: pre_tokenizer missing: only the ByteLevel pre-tokenizer is supported", ErrInvalid)
	}
	bl, ok := hf.PreTokenizer.byteLevel()
	if !ok {
		return nil, fmt.Errorf("%w: pre_tokenizer type %q: only ByteLevel is supported", ErrInvalid, hf.PreTokenizer.Type)
	}
	if bl.UseRegex != nil && !*bl.UseRegex {
		return nil, fmt.Errorf("%w: pre_tokenizer.use_regex false is not supported", ErrInvalid)
	}
	merges := make([][2]string, 0, len(hf.Model.Merges))
	for i, raw := range hf.Model.Merges {
		m, err := parseHFMerge(raw)
		if err != nil {
			return nil, fmt.Errorf("%w: model.merges[%d]: %w", ErrInvalid, i, err)
		}
		merges = append(merges, m)
	}
	vocab := hf.Model.Vocab
	var special []string
	for _, at := range hf.AddedTokens {
		if id, ok := vocab[at.Content]; ok && id != at.ID {
			return nil, fmt.Errorf("%w: added token %q has id %d but model.vocab says %d", ErrInvalid, at.Content, at.ID, id)
		}
		vocab[at.Content] = at.ID
		special = append(special, at.Content)
	}
	t, err := New(vocab, merges, special...)
	if err != nil {
		return nil, err
	}
	t.addPrefixSpace = bl.AddPrefixSpace
	return t, nil
}

func parseHFMerge(raw json.RawMessage) ([2]string, error) {
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		parts := strings.Split(s, " ")
		if len(parts) != 2 || parts[0] == "" || parts[1] == "" {
			return [2]string{}, fmt.Errorf("want two tokens separated by one space, got %q", s)
		}
		return [2]string{parts[0], parts[1]}, nil
	}
	var pair []string
	if err := json.Unmarshal(raw, &pair); err != nil {
		return [2]string{}, fmt.Errorf("want \"a b\" or [\"a\", \"b\"], got %s", raw)
	}
	if len(pair) != 2 || pair[0] == "" || pair[1] == "" {
		return [2]string{}, fmt.Errorf("want two non-empty tokens, got %q", pair)
	}
	return [2]string{pair[0], pair[1]}, nil
}
