#!/bin/sh
# Run a command (normally /usr/bin/python3 scripts/train/...) with OpenBLAS instead of Debian's
# reference BLAS, without installing anything system-wide.
#
# Debian's PyTorch links libblas.so.3, which resolves to the reference BLAS unless an optimized
# one is installed: ~1 GFLOP/s on one core here, against ~35 with OpenBLAS, which makes training
# about 15 times faster. This script fetches libopenblas0-pthread with `apt-get download`,
# unpacks it under $CACHE (default /tmp/modelrt-openblas) and puts its libblas.so.3 first on
# LD_LIBRARY_PATH for this command only. Numerics differ from the reference BLAS in the last bits.
#
#   scripts/train/with-openblas.sh /usr/bin/python3 scripts/train/train_gpt2_go.py
set -eu
CACHE=${CACHE:-/tmp/modelrt-openblas}
LIB=$CACHE/usr/lib/x86_64-linux-gnu/openblas-pthread
if [ ! -e "$LIB/libblas.so.3" ]; then
	mkdir -p "$CACHE"
	(cd "$CACHE" && apt-get download libopenblas0-pthread >&2 && dpkg-deb -x libopenblas0-pthread_*.deb "$CACHE")
fi
LD_LIBRARY_PATH=$LIB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH} OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-1} exec "$@"
