#!/usr/bin/env bash
# Continuous batching through `modelrt serve`, native and onnxrt side by side in one run
# (docs/benchmarks.md, "Continuous batching through modelrt serve").
#
#   scripts/bench/batching.sh [OUTDIR]        (default OUTDIR: /tmp/modelrt-batching)
#
# GPT-2 124M with modelrt bench's random weights (written once into modelrt bench's cache,
# ~1.3 GB with its VAE) is served by each backend in turn; cmd/loadgen streams 128-token greedy
# completions at 1, 2, 4, 8 and 16 concurrent streams (ROUNDS × streams requests a level),
# then measures a newcomer's time to first token idle and beside 7 decoding streams. Last, the
# demo model examples/models/gpt2-go (native) answers 32-token completions at 1 and 16
# concurrent requests. OUTDIR gets native.json, onnxrt.json, demo.json, batching.png (native
# dashed, onnxrt solid), demo.png, summary.json and summary.md (the issue's targets).
#
# Environment: ROUNDS (default 2), PROBES (default 6), PORT (default 18731), SKIP_BUILD=1,
# ORT_SPIN (onnxrt's allow_spinning: unset = ONNX Runtime's default, spinning; false on a loaded
# machine, where spinning threads burn the process's share of the cores — docs/onnxruntime.md),
# ONNXRUNTIME_SHARED_LIBRARY_PATH (default .deps/onnxruntime/libonnxruntime.so.1).
# Runs in about 5 minutes on 2 cores. Traffic goes to 127.0.0.1 only.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
out=${1:-/tmp/modelrt-batching}
rounds=${ROUNDS:-2}
probes=${PROBES:-6}
port=${PORT:-18731}
mkdir -p "$out"
export ONNXRUNTIME_SHARED_LIBRARY_PATH=${ONNXRUNTIME_SHARED_LIBRARY_PATH:-$root/.deps/onnxruntime/libonnxruntime.so.1}
say() { printf 'batching %(%H:%M:%S)T  %s\n' -1 "$*" >&2; }

if [[ -z ${SKIP_BUILD:-} ]]; then
	say "build"
	make -s build >&2
fi
CGO_ENABLED=0 go build -o "$out/loadgen" ./cmd/loadgen
say "models"
go run ./scripts/bench/batching models -out "$out/models" >/dev/null

server=""
stop() {
	if [[ -n $server ]]; then
		kill "$server" 2>/dev/null || true
		wait "$server" 2>/dev/null || true
		server=""
	fi
}
trap stop EXIT

# serve NAME BACKEND MODELDIR: start modelrt serve with one causal-lm model "gpt2".
serve() {
	local name=$1 backend=$2 dir=$3 config=""
	if [[ $backend == onnxrt && -n ${ORT_SPIN:-} ]]; then
		config="config {
    allow_spinning = $ORT_SPIN
  }"
	fi
	cat >"$out/$name.hcl" <<HCL
backend "$backend" {
  plugin = "modelrt-$backend"
  $config
}
model "gpt2" {
  backend = backend.$backend
  path    = "$dir"
  task    = "causal-lm"
}
HCL
	PATH="$root/bin:$PATH" "$root/bin/modelrt" serve --config "$out/$name.hcl" --listen "127.0.0.1:$port" --request-timeout 10m \
		>"$out/$name.serve.log" 2>&1 &
	server=$!
	for _ in $(seq 600); do
		if curl -fs "http://127.0.0.1:$port/healthz" >/dev/null 2>&1; then
			return 0
		fi
		if ! kill -0 "$server" 2>/dev/null; then
			cat "$out/$name.serve.log" >&2
			return 1
		fi
		sleep 0.2
	done
	echo "modelrt serve did not become healthy in 120 s" >&2
	return 1
}

prev=()
for backend in native onnxrt; do
	dir=$out/models/gpt2-onnx
	[[ $backend == native ]] && dir=$out/models/gpt2-native
	say "$backend: serve $dir"
	serve "$backend" "$backend" "$dir"
	say "$backend: 128-token streams at 1,2,4,8,16 (rounds $rounds), then a newcomer beside 7 streams ($probes probes)"
	"$out/loadgen" -url "http://127.0.0.1:$port" -model gpt2 -stream -max-tokens 128 -warmup 1 -timeout 10m \
		-concurrency 1,2,4,8,16 -rounds "$rounds" -newcomer 7 -probes "$probes" -label "$backend" \
		-out "$out/$backend.json" -plot "$out/batching.png" "${prev[@]}" | tee "$out/$backend.md"
	prev=(-before "$out/$backend.json")
	stop
done

say "demo: examples/models/gpt2-go, 32-token completions at 1 and 16"
serve demo native "$root/examples/models/gpt2-go"
"$out/loadgen" -url "http://127.0.0.1:$port" -model gpt2 -prompt 'func main() {' -max-tokens 32 -warmup 2 -timeout 10m \
	-concurrency 1,16 -requests 48 -label demo -out "$out/demo.json" -plot "$out/demo.png" | tee "$out/demo.md"
stop

say "summary"
{
	echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
	echo
	go run ./scripts/bench/batching summary -native "$out/native.json" -onnxrt "$out/onnxrt.json" -demo "$out/demo.json" -out "$out/summary.json"
} | tee "$out/summary.md"
say "done: $out"
