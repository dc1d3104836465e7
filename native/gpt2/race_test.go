//go:build race

package gpt2

// raceEnabled reports whether the test binary runs under the race detector, which makes the
// 124M-parameter tests take minutes and gigabytes; they run in the plain `go test` pass.
const raceEnabled = true
