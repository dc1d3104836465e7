// Package conformance checks that modelrt backends compute what they should.
//
// It has two parts:
//
//   - Case files (format modelrt-case/v1, docs/sdk.md#case-files): LoadDir reads them, Run runs
//     every case on every backend that can load the case's model directory, compares the
//     outputs with the expected values within the case's tolerance, and adds checks that need
//     no expected values: the same inputs on two backends compared with each other, and per
//     backend KV-cache step-by-step against full recompute, batch against one-by-one, a
//     left-padded batch against the unpadded rows, reload, and fixed-seed sampling.
//     `modelrt conformance` and `go test ./conformance/...` both use it.
//
//   - Contract checks (CheckBackend): what every backend must do regardless of numerics —
//     describe itself, refuse malformed tensors with InvalidArgument, answer NotFound for unknown
//     models, honour cancellation, keep sessions isolated, free memory on unload, and survive a
//     thousand calls. A backend author calls it from their own go test.
package conformance
