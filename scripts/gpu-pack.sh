#!/usr/bin/env bash
# Packs what scripts/gpu-check.sh needs on the GPU machine into one file,
# .gpu/payload.tar.gz (git-ignored), small enough to travel (the device tool
# carries 64 MiB a call, repository included): the stripped `--features cuda`
# binary, the model with f16 weights (examples/half_weights.rs: 44 MiB instead of
# 87; widened to f32 on load), and the Home Depot files. Also runs the CPU
# baseline the GPU figures are compared with, on the same f16-stored model:
# .gpu/baseline.txt (a `gpu-check.sh --device cpu --skip-bench --skip-tune` run:
# a CPU build of the catalog and its dev NDCG@10).
#
#   eval "$(scripts/cuda-toolkit.sh)"
#   CARGO_TARGET_DIR=target/cuda cargo build --release --features cuda
#   scripts/gpu-pack.sh target/cuda/release/shelfrank [--no-baseline]
#
# Then, on the GPU machine (device tool: carry .gpu):
#   mkdir -p /tmp/gpu && tar xzf .gpu/payload.tar.gz -C /tmp/gpu && scripts/gpu-check.sh \
#     --bin /tmp/gpu/shelfrank --model /tmp/gpu/model --data /tmp/gpu/data \
#     --baseline .gpu/baseline.txt --out "$OUT/gpu-check.txt"
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BIN="${1:?usage: scripts/gpu-pack.sh CUDA_BINARY [--no-baseline]}"
BASELINE=1
[[ "${2:-}" == --no-baseline ]] && BASELINE=0
MODEL="${MODEL:-$ROOT/models/all-MiniLM-L6-v2}"
DATA="${DATA:-$ROOT/../shared/datasets}"
DEST="$ROOT/.gpu"
LIMIT_BYTES=$((56 * 1024 * 1024)) # leaves room for the repository itself

[[ -x "$BIN" ]] || { echo "error: $BIN is not an executable" >&2; exit 1; }
grep -q "libcuda.so" <(ldd "$BIN" 2>/dev/null || true) \
    || echo "warning: $BIN does not link libcuda; is it a --features cuda build?" >&2
rm -rf "$DEST"
mkdir -p "$DEST/stage/data/homedepot"
strip -o "$DEST/stage/shelfrank" "$BIN"
(cd "$ROOT" && cargo run --quiet --release --example half_weights -- "$MODEL" "$DEST/stage/model")
cp "$DATA/homedepot/catalog.jsonl" "$DATA/homedepot/queries.dev.tsv" \
    "$DATA/homedepot/qrels.dev.txt" "$DEST/stage/data/homedepot/"
tar czf "$DEST/payload.tar.gz" -C "$DEST/stage" shelfrank model data
size=$(stat -c %s "$DEST/payload.tar.gz")
echo "payload: $((size / 1024 / 1024)) MiB"
if ((size > LIMIT_BYTES)); then
    echo "error: the payload is over $((LIMIT_BYTES / 1024 / 1024)) MiB" >&2
    exit 1
fi
if [[ $BASELINE == 1 ]]; then
    cpu_bin="${CARGO_TARGET_DIR:-$ROOT/target}/release/shelfrank"
    (cd "$ROOT" && cargo build --quiet --release)
    "$ROOT/scripts/gpu-check.sh" --device cpu --skip-bench --skip-tune --bin "$cpu_bin" \
        --model "$DEST/stage/model" --data "$DEST/stage/data" --out "$DEST/baseline.txt" \
        --work "$DEST/baseline-work"
    rm -rf "$DEST/baseline-work"
fi
rm -rf "$DEST/stage"
echo "ready: .gpu/payload.tar.gz$([[ $BASELINE == 1 ]] && echo ' and .gpu/baseline.txt')"
baseline_flag=""
[[ $BASELINE == 1 ]] && baseline_flag=" --baseline .gpu/baseline.txt"
echo "on the GPU machine (carry .gpu):"
echo "  mkdir -p /tmp/gpu && tar xzf .gpu/payload.tar.gz -C /tmp/gpu && scripts/gpu-check.sh --bin /tmp/gpu/shelfrank --model /tmp/gpu/model --data /tmp/gpu/data$baseline_flag --out \$OUT/gpu-check.txt"
