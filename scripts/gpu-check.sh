#!/usr/bin/env bash
# The encoder on a GPU, measured in one command (issue #12). Run it on the GPU
# machine with a shelfrank built here with `--features cuda` and carried there,
# or with `--device cpu` anywhere, which exercises every step.
#
#   scripts/gpu-check.sh [--device cuda|cuda:N|cpu] [--bin PATH] [--model DIR]
#                        [--data DIR] [--out FILE] [--work DIR] [--baseline FILE]
#                        [--quick] [--skip-bench] [--skip-tune] [--tune-args "ARGS"]
#
# Steps, on the Home Depot data (`--data`, default ../shared/datasets):
#  1. Encoder throughput on the catalog's titles at batch 64, 256 and 1024 in f32,
#     f16 and bf16 (`shelfrank embed-bench`, max 64 tokens, median of 3 runs), the
#     single-query latency, and the cosine of 2,000 titles to the CPU's f32
#     embeddings.
#  2. A full `shelfrank build` of the catalog on the device (seconds).
#  3. Dev NDCG@10 of that index, dense and hybrid (queries encoded on the device);
#     with `--baseline FILE` (the figures file of a CPU run of this script) the
#     difference from the CPU-built index.
#  4. One epoch of `shelfrank tune` on fold 0 on the device (seconds, validation
#     NDCG@10 before and after).
#
# The figures go to one file (`--out`, default gpu-check-<device>.txt); the
# commands' own output to FILE.log. `--quick` encodes 500 titles once instead of
# the whole catalog three times, compares 500 with the CPU, and tunes on 500
# queries, for a smoke run on a CPU (where large batches and half formats are
# slow); `--skip-bench`
# and `--skip-tune` leave out steps 1 and 4; `--tune-args` adds flags to the tune
# command (tests/scripts.rs runs this script on the fixtures with
# `--tune-args "--validation 0.5 --min-grade 2 --batch 4"`). scripts/gpu-pack.sh prepares what
# travels to the GPU machine and says how to run this there. Needs python3
# (reading the eval report). On a GPU, the CUDA 13 libraries (cuBLAS, cuRAND, the
# runtime) are looked for in $LD_LIBRARY_PATH, /usr/local/cuda and the `nvidia`
# Python packages (PyTorch's); CUDA_LIB=DIR adds one more place.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DEVICE=cuda
BIN=""
MODEL="$ROOT/models/all-MiniLM-L6-v2"
DATA="$ROOT/../shared/datasets"
OUT=""
WORK=""
BASELINE=""
QUICK=0
BENCH=1
TUNE=1
TUNE_ARGS=""
while [[ $# -gt 0 ]]; do
    case "$1" in
        --device) DEVICE="$2"; shift 2 ;;
        --bin) BIN="$2"; shift 2 ;;
        --model) MODEL="$2"; shift 2 ;;
        --data) DATA="$2"; shift 2 ;;
        --out) OUT="$2"; shift 2 ;;
        --work) WORK="$2"; shift 2 ;;
        --baseline) BASELINE="$2"; shift 2 ;;
        --quick) QUICK=1; shift ;;
        --skip-bench) BENCH=0; shift ;;
        --skip-tune) TUNE=0; shift ;;
        --tune-args) TUNE_ARGS="$2"; shift 2 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d'; exit 0 ;;
        *) echo "error: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done

die() { echo "error: $*" >&2; exit 1; }
if [[ -z "$BIN" ]]; then
    for b in "$ROOT/shelfrank" "$ROOT/target/release/shelfrank"; do
        [[ -x "$b" ]] && { BIN="$b"; break; }
    done
fi
[[ -n "$BIN" && -x "$BIN" ]] || die "no shelfrank binary; pass --bin PATH"
HD="$DATA/homedepot"
for f in catalog.jsonl queries.dev.tsv qrels.dev.txt; do
    [[ -f "$HD/$f" ]] || die "$HD/$f is missing; pass --data DIR"
done
[[ -f "$MODEL/model.safetensors" ]] || die "$MODEL has no model.safetensors; pass --model DIR"
command -v python3 >/dev/null || die "python3 is needed to read the eval report"
OUT="${OUT:-gpu-check-${DEVICE//:/}.txt}"
WORK="${WORK:-$(mktemp -d)}"
mkdir -p "$WORK"
LOG="$OUT.log"
: >"$OUT"
: >"$LOG"

if [[ "$DEVICE" == cuda* ]]; then
    # Where the CUDA 13 user-space libraries may be: a toolkit, PyTorch's wheels.
    dirs=()
    [[ -n "${CUDA_LIB:-}" ]] && dirs+=("$CUDA_LIB")
    for d in /usr/local/nvidia/lib64 /usr/local/nvidia/lib /usr/local/cuda/lib64 \
        /usr/local/cuda/targets/x86_64-linux/lib; do
        [[ -d "$d" ]] && dirs+=("$d")
    done
    while IFS= read -r d; do dirs+=("$d"); done < <(python3 - <<'PY' 2>/dev/null || true
import glob, os
try:
    import nvidia
except ImportError:
    raise SystemExit
for root in nvidia.__path__:
    for d in sorted(glob.glob(os.path.join(root, "**", "lib"), recursive=True)):
        print(d)
PY
)
    # In the order found (CUDA_LIB first), ahead of the caller's own path.
    found=$(IFS=:; echo "${dirs[*]}")
    export LD_LIBRARY_PATH="$found${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    missing=$(ldd "$BIN" 2>/dev/null | awk '/not found/ {print $1}' | tr '\n' ' ')
    [[ -z "$missing" ]] || die "$BIN cannot find $missing(set CUDA_LIB=DIR)"
fi

say() { echo "$*" | tee -a "$OUT"; }
now() { date +%s.%N; }
secs() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$1" "$2"; }
# Runs a command with its output in the log; fails the script when it fails.
run() {
    echo "+ $*" >>"$LOG"
    if ! "$@" >>"$LOG" 2>&1; then
        tail -n 20 "$LOG" >&2
        die "failed: $* (whole output in $LOG)"
    fi
}

say "# shelfrank gpu-check, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
say "binary: $BIN ($("$BIN" --version))"
say "device: $DEVICE; model: $MODEL; data: $HD; quick: $QUICK"
say "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(nproc) cores"
if command -v nvidia-smi >/dev/null; then
    say "gpu: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | head -n1)"
fi
START=$(now)

# 1. Throughput, latency, agreement with the CPU.
LIMIT=1000000 REPEAT=3 COMPARE=2000
[[ $QUICK == 1 ]] && LIMIT=500 REPEAT=1 COMPARE=500
for dtype in f32 f16 bf16; do
    [[ $BENCH == 1 ]] || break
    compare=$COMPARE
    [[ "$DEVICE" == cpu && $dtype == f32 ]] && compare=0
    echo "+ embed-bench --dtype $dtype" >>"$LOG"
    "$BIN" embed-bench --catalog "$HD/catalog.jsonl" --model "$MODEL" --device "$DEVICE" \
        --dtype "$dtype" --limit "$LIMIT" --batch-size 64,256,1024 --max-tokens 64 \
        --repeat "$REPEAT" --queries 100 --compare-cpu "$compare" 2>>"$LOG" | tee -a "$LOG" \
        | grep '^shelfrank:' | sed 's/^shelfrank: /encode: /' | tee -a "$OUT" \
        || die "embed-bench --dtype $dtype failed (see $LOG)"
done

# 2. A full build on the device: large batches feed a GPU; a CPU is fastest at the
# default (32), as the encode figures above show.
BUILD_BATCH=256
[[ "$DEVICE" == cpu ]] && BUILD_BATCH=32
t0=$(now)
run "$BIN" build --catalog "$HD/catalog.jsonl" --index "$WORK/hd" --model "$MODEL" \
    --device "$DEVICE" --batch-size "$BUILD_BATCH" --no-reuse
say "build: $(secs "$t0" "$(now)") s for the whole catalog ($DEVICE, f32, batch $BUILD_BATCH)"

# 3. Dev NDCG@10 of that index.
run "$BIN" eval --index "$WORK/hd" --device "$DEVICE" --queries "$HD/queries.dev.tsv" \
    --qrels "$HD/qrels.dev.txt" --modes dense,hybrid --out "$WORK/eval" --quiet
python3 - "$WORK/eval/report.json" "$BASELINE" <<'PY' | tee -a "$OUT"
import json, re, sys
report = {r["mode"]: r["ndcg_at_10"] for r in json.load(open(sys.argv[1]))}
base = {}
if sys.argv[2]:
    for line in open(sys.argv[2]):
        m = re.match(r"ndcg@10 (\w+): ([0-9.]+)", line)
        if m:
            base[m.group(1)] = float(m.group(2))
for mode, v in report.items():
    extra = ""
    if mode in base:
        extra = f" (baseline {base[mode]:.4f}, difference {v - base[mode]:+.4f})"
    print(f"ndcg@10 {mode}: {v:.4f}{extra}")
PY

# 4. One epoch of tuning.
if [[ $TUNE == 1 ]]; then
    limit=()
    [[ $QUICK == 1 ]] && limit=(--limit 500)
    read -r -a extra <<<"$TUNE_ARGS"
    rm -rf "$WORK/tuned"
    t0=$(now)
    run "$BIN" tune --index "$WORK/hd" --device "$DEVICE" --queries "$HD/queries.dev.tsv" \
        --qrels "$HD/qrels.dev.txt" --fold 0 --epochs 1 --force "${limit[@]}" "${extra[@]}" \
        --out "$WORK/tuned"
    report=$(grep '^{"base_ndcg' "$LOG" | tail -n1 || true)
    say "tune: $(secs "$t0" "$(now)") s for one epoch on fold 0 ($DEVICE)"
    [[ -n "$report" ]] && say "tune report: $report"
fi
say "total: $(secs "$START" "$(now)") s; work directory $WORK"
