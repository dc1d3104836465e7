package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
)

// WriteTokenizer writes a GPT-2-format tokenizer (vocab.json + merges.txt) whose ids are this
// backend's: byte b is id b, "<|endoftext|>" is EOS, and there are no merges. With it in the
// model directory the host's tokenize, detokenize and generate-from-text stages work on this
// model unchanged: the host tokenizes, the backend only ever sees ids.
func WriteTokenizer(dir string) error {
	vocab := make(map[string]int, VocabSize)
	for b, r := range byteRunes() {
		vocab[string(r)] = b
	}
	vocab["<|endoftext|>"] = EOS
	data, err := json.MarshalIndent(vocab, "", " ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "vocab.json"), append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("write tokenizer: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "merges.txt"), []byte("#version: 0.2\n"), 0o644); err != nil {
		return fmt.Errorf("write tokenizer: %w", err)
	}
	return nil
}

// byteRunes is GPT-2's bytes_to_unicode: the printable rune that spells each byte in a
// vocabulary file. Printable Latin-1 bytes stand for themselves; the other 68 are shifted to
// U+0100 and up.
func byteRunes() [256]rune {
	var out [256]rune
	n := 0
	for b := range 256 {
		if (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF) {
			out[b] = rune(b)
		} else {
			out[b] = rune(256 + n)
			n++
		}
	}
	return out
}
