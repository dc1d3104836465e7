// Command modelrt-ngram is a complete modelrt backend plugin built only on package sdk: a
// byte-level n-gram language model (task causal-lm) trained at load time from a model
// directory's corpus.txt. It is the worked example of docs/sdk.md; README.md walks through it.
//
// Started by modelrt it serves the plugin protocol; run by hand it has one command:
//
//	modelrt-ngram write-tokenizer DIR   writes vocab.json + merges.txt for byte tokens into DIR
package main

import (
	"fmt"
	"os"

	"github.com/modelrt/modelrt/sdk"
)

func main() {
	if len(os.Args) > 1 {
		if len(os.Args) != 3 || os.Args[1] != "write-tokenizer" {
			fmt.Fprintln(os.Stderr, "usage: modelrt-ngram write-tokenizer DIR (without arguments it runs as a plugin started by modelrt)")
			os.Exit(2)
		}
		if err := WriteTokenizer(os.Args[2]); err != nil {
			fmt.Fprintln(os.Stderr, "modelrt-ngram:", err)
			os.Exit(1)
		}
		return
	}
	sdk.Serve(newBackend())
}
