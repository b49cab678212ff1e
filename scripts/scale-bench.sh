#!/usr/bin/env bash
# Scale benchmark: a generated catalog of N products (scripts/gen-catalog.py),
# embedded once, then indexed with the HNSW graph in float32 and in int8, side
# by side. For each it reports build time per phase, index size on disk, peak
# RSS while building and while serving, HNSW recall@10 against exact search
# (before and after rescoring for int8), and p50/p99 search latency for bm25,
# dense, hybrid and a personalised query (query cache off, encoding included).
#
# Usage: scripts/scale-bench.sh [--sizes 100000,300000,1000000] [--work DIR]
#                               [--quantizations f32,int8] [--limit Q] [--repeat R]
#
# Everything is written under the git-ignored bench-data/ (or --work): the
# catalogs, the embeddings parts, the indexes, each command's own output
# (*.log) and the table (scale-N.md). Queries: the Home Depot dev queries; the
# personalised ones: Online Retail dev tasks, whose shoppers' history events are
# imported into each index (the generated catalogs hold the real products first,
# with their real ids). Needs /usr/bin/time (GNU time) for peak RSS.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DATA="$ROOT/../shared/datasets"
SIZES="100000"
QUANTS="f32,int8"
WORK="$ROOT/bench-data/scale"
LIMIT=500
REPEAT=3
while [[ $# -gt 0 ]]; do
    case "$1" in
        --sizes) SIZES="$2"; shift 2 ;;
        --quantizations) QUANTS="$2"; shift 2 ;;
        --work) WORK="$2"; shift 2 ;;
        --limit) LIMIT="$2"; shift 2 ;;
        --repeat) REPEAT="$2"; shift 2 ;;
        -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
        *) echo "error: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
[[ -x /usr/bin/time ]] || { echo "error: /usr/bin/time (GNU time) is needed for peak RSS" >&2; exit 2; }
QUERIES="$DATA/homedepot/queries.dev.tsv"
TASKS="$DATA/online_retail/personal_queries.dev.tsv"
HISTORY="$DATA/online_retail/events.history.jsonl"
for f in "$QUERIES" "$TASKS" "$HISTORY"; do
    [[ -f "$f" ]] || { echo "error: $f not found" >&2; exit 2; }
done
MODEL="$ROOT/models/all-MiniLM-L6-v2"
[[ -f "$MODEL/model.safetensors" ]] || "$ROOT/scripts/fetch-model.sh" >&2
BIN="${SHELFRANK_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/shelfrank}"
if [[ -z "${SHELFRANK_BIN:-}" ]]; then
    (cd "$ROOT" && cargo build --release --quiet)
fi
mkdir -p "$WORK"

# Runs a command under GNU time, its stdout to LOG; prints "SECONDS PEAK_KIB".
timed() {
    local log="$1"; shift
    /usr/bin/time -f "TIME %e %M" "$@" > "$log" 2> "$log.err" || {
        tail -20 "$log.err" >&2; echo "error: $* failed (log: $log.err)" >&2; exit 1; }
    grep '^TIME ' "$log.err" | tail -1 | cut -d' ' -f2-
}
mib() { awk -v k="$1" 'BEGIN { printf "%.0f", k / 1024 }'; }

machine="$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(nproc) cores"
IFS=',' read -r -a sizes <<< "$SIZES"
IFS=',' read -r -a quants <<< "$QUANTS"
for n in "${sizes[@]}"; do
    catalog="$WORK/catalog-$n.jsonl"
    [[ -f "$catalog" ]] || python3 "$ROOT/scripts/gen-catalog.py" --products "$n" --out "$catalog"
    parts="$WORK/parts-$n"
    if [[ ! -f "$parts/part.json" ]]; then
        r=$(timed "$WORK/embed-$n.log" \
            "$BIN" embed --catalog "$catalog" --out "$parts" --model "$MODEL" --quiet)
        echo "$r" > "$WORK/embed-$n.time"
    fi
    read -r embed_s embed_kib < "$WORK/embed-$n.time"
    table="$WORK/scale-$n.md"
    {
        echo "## $n products ($machine)"
        echo
        echo "encoding (shelfrank embed, once for both): ${embed_s} s, peak RSS $(mib "$embed_kib") MiB"
        echo
    } > "$table"
    for q in "${quants[@]}"; do
        index="$WORK/index-$n-$q"
        rm -rf "$index"
        r=$(timed "$WORK/build-$n-$q.log" \
            "$BIN" build --catalog "$catalog" --index "$index" --model "$MODEL" --quiet \
            --quantization "$q" --embeddings "$parts")
        read -r build_s build_kib <<< "$r"
        "$BIN" events import "$HISTORY" --index "$index" --skip-invalid > "$WORK/events-$n-$q.log" 2>&1
        "$BIN" hnsw-recall --index "$index" --model "$MODEL" --queries "$QUERIES" \
            --limit 1000 --ef 64,128,256 > "$WORK/recall-$n-$q.md"
        r=$(timed "$WORK/search-$n-$q.md" \
            "$BIN" search-bench --index "$index" --model "$MODEL" --queries "$QUERIES" \
            --personal-queries "$TASKS" --limit "$LIMIT" --repeat "$REPEAT")
        read -r _ serve_kib <<< "$r"
        {
            echo "### graph vectors $q"
            echo
            echo "build from the embeddings: ${build_s} s wall, peak RSS $(mib "$build_kib") MiB; $(grep '^built' "$WORK/build-$n-$q.log")"
            echo "index on disk: $(du -sk "$index" | cut -f1 | xargs -I{} awk 'BEGIN { printf "%.0f MiB", {} / 1024 }')"
            echo
            cat "$WORK/recall-$n-$q.md"
            echo
            cat "$WORK/search-$n-$q.md"
            echo "search-bench process peak RSS (GNU time): $(mib "$serve_kib") MiB"
            echo
        } >> "$table"
    done
    cat "$table"
done
