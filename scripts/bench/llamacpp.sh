#!/usr/bin/env bash
# llamacpp.sh: modelrt's native backend against llama.cpp on the same GPT-2 124M, in one run.
#
#   scripts/bench/llamacpp.sh [OUTDIR]          (default OUTDIR: $TMPDIR/modelrt-bench-llamacpp)
#
# 1. Installs llama.cpp's prebuilt CPU build from the npm registry without running anything from
#    it: `npm pack` of @node-llama-cpp/linux-x64 (the shared libraries) and node-llama-cpp (the
#    git bundle of the llama.cpp source those libraries were built from, for llama.h), both pinned
#    to LLAMACPP_NPM_VERSION, unpacked with tar into .deps/llamacpp-VERSION/ (git-ignored).
# 2. Compiles scripts/bench/llamacpp/harness.c against that llama.h and links the libraries.
# 3. Runs `modelrt bench --backends native` (native fp32 and int8 rows, full shape), which also
#    writes the bench's random-weight GPT-2 124M; exports it with `modelrt export --format gguf`
#    as F32, F16 and Q8_0.
# 4. Times llama.cpp on each file with THREADS threads, with modelrt bench's definitions (prefill
#    of 64 tokens at batch 1; decode tokens/s of 128 new tokens per row at batch 1, 2, 4, 8).
# 5. Generates greedily from the same prompt with llama.cpp F32 and the native backend and
#    compares the ids.
# 6. Prints the table and writes OUTDIR/llamacpp.json and OUTDIR/llamacpp.png.
#
# Environment: THREADS (default 2), BATCHES (default 1,2,4,8), GREEDY_NEW (default 32),
# MODELRT_JSON (reuse this `modelrt bench --json` report of the full shape instead of running the
# bench; for a rerun of the llama.cpp half only — the table is then not from one run),
# CACHE (modelrt bench's model cache, default as modelrt bench's: ~/.cache/modelrt/bench; the
# GGUF files go beside the bench's GPT-2 there), LLAMACPP_DEPS (install directory).
set -euo pipefail

LLAMACPP_NPM_VERSION=3.22.1 # node-llama-cpp release; its llama.cpp build is recorded in the JSON
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
OUT=${1:-${TMPDIR:-/tmp}/modelrt-bench-llamacpp}
mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd)
THREADS=${THREADS:-2}
BATCHES=${BATCHES:-1,2,4,8}
GREEDY_NEW=${GREEDY_NEW:-32}
CACHE=${CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/modelrt/bench}
DEPS=${LLAMACPP_DEPS:-$ROOT/.deps/llamacpp-$LLAMACPP_NPM_VERSION}
say() { echo "llamacpp.sh: $*" >&2; }

# 1. llama.cpp from npm, unpacked (never `npm install`: node-llama-cpp's postinstall downloads).
if [ ! -f "$DEPS/.complete" ]; then
	say "installing llama.cpp from npm (node-llama-cpp $LLAMACPP_NPM_VERSION) into $DEPS"
	tmp=$(mktemp -d)
	trap 'rm -rf "$tmp"' EXIT
	(cd "$tmp" && npm pack --silent "@node-llama-cpp/linux-x64@$LLAMACPP_NPM_VERSION" "node-llama-cpp@$LLAMACPP_NPM_VERSION" >/dev/null)
	mkdir -p "$tmp/bin" "$tmp/src"
	tar -xzf "$tmp/node-llama-cpp-linux-x64-$LLAMACPP_NPM_VERSION.tgz" -C "$tmp/bin"
	tar -xzf "$tmp/node-llama-cpp-$LLAMACPP_NPM_VERSION.tgz" -C "$tmp/src" package/llama/gitRelease.bundle package/llama/llama.cpp.info.json
	rm -rf "$DEPS" && mkdir -p "$DEPS"
	cp -r "$tmp/bin/package/bins/linux-x64" "$DEPS/lib"
	git clone --quiet "$tmp/src/package/llama/gitRelease.bundle" "$DEPS/src" 2>/dev/null
	cp "$tmp/src/package/llama/llama.cpp.info.json" "$DEPS/"
	touch "$DEPS/.complete"
fi
LIB=$DEPS/lib
LIBLLAMA=$(cd "$LIB" && ls libllama.v*.so | head -1)
LIBGGML=$(cd "$LIB" && ls libggml.v*.so | head -1)
LLAMA_BUILD="node-llama-cpp $LLAMACPP_NPM_VERSION, llama.cpp $(tr -d ' \n' <"$DEPS/llama.cpp.info.json")"

# 2. The harness.
HARNESS=$DEPS/harness
if [ ! -x "$HARNESS" ] || [ "$ROOT/scripts/bench/llamacpp/harness.c" -nt "$HARNESS" ]; then
	say "compiling the harness"
	gcc -O2 -Wall -o "$HARNESS" "$ROOT/scripts/bench/llamacpp/harness.c" \
		-I"$DEPS/src/include" -I"$DEPS/src/ggml/include" \
		-L"$LIB" -l:"$LIBLLAMA" -l:"$LIBGGML" -l:libggml-base.so -Wl,-rpath,"$LIB"
fi

# 3. modelrt: build, bench the native rows, export the bench's GPT-2 to GGUF.
cd "$ROOT"
make build-native >/dev/null
LOAD_BEFORE=$(uptime)
if [ -n "${MODELRT_JSON:-}" ]; then
	say "reusing $MODELRT_JSON (no modelrt bench in this run)"
	[ "$MODELRT_JSON" -ef "$OUT/modelrt.json" ] || cp "$MODELRT_JSON" "$OUT/modelrt.json"
	# The newest full-shape model directory of the cache (modelrt bench made it).
	echo "shape full, models in $(ls -td "$CACHE"/v*-full-*/ | head -1 | sed 's|/$||')" >"$OUT/modelrt.log"
else
	say "modelrt bench --backends native (fp32 and int8 rows)"
	bin/modelrt bench --backends native --cache "$CACHE" --json "$OUT/modelrt.json" >"$OUT/modelrt.txt" 2> >(tee "$OUT/modelrt.log" >&2)
fi
GPT2=$(sed -nE 's/.*shape full, models in ([^ ]*).*/\1/p' "$OUT/modelrt.log")/gpt2
GGUF=$(dirname "$GPT2")/gguf
for t in f32 f16 q8_0; do
	if [ ! -f "$GGUF/gpt2-$t.gguf" ]; then
		bin/modelrt export --format gguf --type "$t" --model "$GPT2" --out "$GGUF/gpt2-$t.gguf" >&2
	fi
done

# 4. llama.cpp, same definitions.
args=()
for t in F32 F16 Q8_0; do
	lower=$(echo "$t" | tr 'A-Z' 'a-z')
	say "llama.cpp $t, $THREADS threads, batches $BATCHES"
	"$HARNESS" "$LIB" "$GGUF/gpt2-$lower.gguf" "$THREADS" 64 128 "$BATCHES" "$GREEDY_NEW" >"$OUT/llamacpp-$t.json"
	args+=(-llama "$t=$OUT/llamacpp-$t.json")
done

# 5. The native backend's greedy ids for the prompt the harness used. The random-weight model
# tends to repeat one token, so the trained examples/models/gpt2-go (4 layers × 256, its own
# 4096-token vocabulary) is checked too, exported as F32 and Q8_0 (seconds: 1 thread, batch 1).
prompt_of() { sed -E 's/.*"greedy_prompt":\[([0-9,]*)\].*/\1/' "$1"; }
bin/modelrt generate --model "$GPT2" --ids "$(prompt_of "$OUT/llamacpp-F32.json")" --max-new-tokens "$GREEDY_NEW" --temperature 0 --json >"$OUT/native-greedy.json"
greedy=(-greedy "bench GPT-2 124M llama.cpp F32=$OUT/llamacpp-F32.json,$OUT/native-greedy.json")
for t in f32 q8_0; do
	bin/modelrt export --format gguf --type "$t" --model examples/models/gpt2-go --out "$OUT/gpt2-go-$t.gguf" >&2
	"$HARNESS" "$LIB" "$OUT/gpt2-go-$t.gguf" 1 64 "$GREEDY_NEW" 1 "$GREEDY_NEW" >"$OUT/gpt2-go-$t.json"
done
bin/modelrt generate --model examples/models/gpt2-go --ids "$(prompt_of "$OUT/gpt2-go-f32.json")" --max-new-tokens "$GREEDY_NEW" --temperature 0 --json >"$OUT/gpt2-go-native.json"
for t in F32 Q8_0; do
	lower=$(echo "$t" | tr 'A-Z' 'a-z')
	greedy+=(-greedy "examples/models/gpt2-go llama.cpp $t=$OUT/gpt2-go-$lower.json,$OUT/gpt2-go-native.json")
done

# 6. The table, JSON and plot.
LOAD_AFTER=$(uptime)
CGO_ENABLED=0 go run ./scripts/bench/llamacpp/report -modelrt "$OUT/modelrt.json" "${args[@]}" "${greedy[@]}" \
	-json "$OUT/llamacpp.json" -plot "$OUT/llamacpp.png" \
	-llama-version "$LLAMA_BUILD" -load "before:${LOAD_BEFORE##*average:} after:${LOAD_AFTER##*average:}"
say "wrote $OUT/llamacpp.json and $OUT/llamacpp.png"
