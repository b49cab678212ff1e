#!/usr/bin/env bash
# Scale benchmark: a generated catalog of N products (scripts/gen-catalog.py),
# embedded once (in parts of C products, shared between sizes), then indexed
# with the HNSW graph in float32 and in int8, side by side. For each it
# reports build time per phase, index size on disk, peak RSS while building and
# while serving, HNSW recall@10 against exact search (before and after
# rescoring for int8), and p50/p99 search latency for bm25, dense, hybrid and a
# personalised query (query cache off, encoding included). --dtype is the
# encoder's precision, for the products (recorded in the index) and the queries.
#
# Usage: scripts/scale-bench.sh [--sizes 100000,300000,1000000] [--work DIR]
#                               [--quantizations f32,int8] [--limit Q] [--repeat R]
#                               [--chunk C] [--dtype f32|bf16|int8]
#
# Everything is written under the git-ignored bench-data/ (or --work): the
# catalogs, the embeddings parts, the indexes, each command's own output
# (*.log), the tables (scale-N.md) and one summary row per size and graph
# (scale-summary.md). Queries: the Home Depot dev queries; the
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
CHUNK=100000
DTYPE=f32
while [[ $# -gt 0 ]]; do
    case "$1" in
        --sizes) SIZES="$2"; shift 2 ;;
        --quantizations) QUANTS="$2"; shift 2 ;;
        --work) WORK="$2"; shift 2 ;;
        --limit) LIMIT="$2"; shift 2 ;;
        --repeat) REPEAT="$2"; shift 2 ;;
        --chunk) CHUNK="$2"; shift 2 ;;
        --dtype) DTYPE="$2"; shift 2 ;;
        -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
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

cpu_field() { grep -m1 "^$1[[:space:]]*:" /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'; }
machine="$(cpu_field 'model name') (family $(cpu_field 'cpu family'), model $(cpu_field model)), $(nproc) cores"
IFS=',' read -r -a sizes <<< "$SIZES"
IFS=',' read -r -a quants <<< "$QUANTS"

# Encoding is shared between sizes: gen-catalog.py's output for N is the first N
# lines of its output for any larger N (one seeded stream, products written in
# order), so each catalog is cut into chunks of CHUNK products and each chunk is
# embedded once, as its own part; a size uses the parts of its chunks. The chunk
# files are compared byte for byte with the ones already embedded, so a changed
# generator cannot reuse stale parts. Encoding time for N is the sum over its
# chunks (each `shelfrank embed` run loads the model once, about a second).
CHUNKS="$WORK/chunks"
mkdir -p "$CHUNKS"
summary="$WORK/scale-summary.md"
{
    echo "## Scale benchmark ($machine), encoder $DTYPE"
    echo
    echo "| products | graph | encoding (s) | index from embeddings (s) | build total (s) | index on disk (MiB) | build peak RSS (MiB) | serving RSS (MiB) | default ef | recall@10 at the default ef (raw) | recall@10 at ef 128 (raw) | bm25 p50 / p99 (ms) | dense p50 / p99 | hybrid p50 / p99 | personal p50 / p99 |"
    echo "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- | --- | --- | --- | --- |"
} > "$summary"
for n in "${sizes[@]}"; do
    catalog="$WORK/catalog-$n.jsonl"
    [[ -f "$catalog" ]] || python3 "$ROOT/scripts/gen-catalog.py" --products "$n" --out "$catalog"
    parts=()
    embed_s=0
    embed_kib=0
    start=0
    while (( start < n )); do
        end=$(( start + CHUNK < n ? start + CHUNK : n ))
        chunk="$CHUNKS/chunk-$start-$end.jsonl"
        tmp="$chunk.new"
        sed -n "$((start + 1)),${end}p" "$catalog" > "$tmp"
        if [[ -f "$chunk" ]]; then
            cmp -s "$tmp" "$chunk" || { echo "error: $chunk differs from lines $((start + 1))-$end of $catalog (generator changed? remove $WORK/chunks)" >&2; exit 1; }
            rm "$tmp"
        else
            mv "$tmp" "$chunk"
            rm -rf "$CHUNKS"/part-"$start-$end"-*
        fi
        part="$CHUNKS/part-$start-$end-$DTYPE"
        if [[ ! -f "$part/part.json" || ! -f "$part.time" ]]; then
            rm -rf "$part"
            r=$(timed "$part.log" "$BIN" embed --catalog "$chunk" --out "$part" --model "$MODEL" --dtype "$DTYPE" --quiet)
            echo "$r" > "$part.time"
        fi
        read -r s kib < "$part.time"
        embed_s=$(awk -v a="$embed_s" -v b="$s" 'BEGIN { printf "%.1f", a + b }')
        (( kib > embed_kib )) && embed_kib=$kib
        parts+=("$part")
        start=$end
    done
    table="$WORK/scale-$n.md"
    {
        echo "## $n products ($machine), encoder $DTYPE"
        echo
        echo "encoding (shelfrank embed, ${#parts[@]} part(s) of up to $CHUNK, shared by both graphs): ${embed_s} s, peak RSS $(mib "$embed_kib") MiB"
        echo
    } > "$table"
    for q in "${quants[@]}"; do
        index="$WORK/index-$n-$q"
        rm -rf "$index"
        r=$(timed "$WORK/build-$n-$q.log" \
            "$BIN" build --catalog "$catalog" --index "$index" --model "$MODEL" --quiet \
            --quantization "$q" --embeddings "${parts[@]}")
        read -r build_s build_kib <<< "$r"
        "$BIN" events import "$HISTORY" --index "$index" --skip-invalid > "$WORK/events-$n-$q.log" 2>&1
        # The ef the build recorded (it grows with the catalog: HnswParams::ef_search_for).
        default_ef=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["hnsw"]["ef_search"])' "$(ls -d "$index"/gen-*/ | tail -1)manifest.json")
        efs=$(printf '%s\n' 64 128 256 "$default_ef" | sort -n -u | paste -sd,)
        "$BIN" hnsw-recall --index "$index" --model "$MODEL" --dtype "$DTYPE" --queries "$QUERIES" \
            --limit 1000 --ef "$efs" > "$WORK/recall-$n-$q.md"
        r=$(timed "$WORK/search-$n-$q.md" \
            "$BIN" search-bench --index "$index" --model "$MODEL" --dtype "$DTYPE" --queries "$QUERIES" \
            --personal-queries "$TASKS" --limit "$LIMIT" --repeat "$REPEAT")
        read -r _ serve_kib <<< "$r"
        size_mib=$(du -sk "$index" | awk '{ printf "%.0f", $1 / 1024 }')
        {
            echo "### graph vectors $q"
            echo
            echo "build from the embeddings: ${build_s} s wall, peak RSS $(mib "$build_kib") MiB; $(grep '^built' "$WORK/build-$n-$q.log")"
            echo "index on disk: $size_mib MiB"
            echo
            cat "$WORK/recall-$n-$q.md"
            echo
            cat "$WORK/search-$n-$q.md"
            echo "search-bench process peak RSS (GNU time): $(mib "$serve_kib") MiB"
            echo
        } >> "$table"
        # One summary row: recall at the default ef and at 128, p50 / p99 per mode.
        recall_at() { awk -F'|' -v ef="$1" '$2 + 0 == ef && $2 ~ /[0-9]/ { gsub(/ /, "", $3); gsub(/^ +| +$/, "", $4); r = $3; if ($4 !~ /n\/a/) r = r " (" $4 ")"; print r }' "$WORK/recall-$n-$q.md"; }
        lat() { awk -F'|' -v m="$1" '{ gsub(/ /, "", $2) } $2 == m { gsub(/ /, "", $4); gsub(/ /, "", $5); print $4 " / " $5 }' "$WORK/search-$n-$q.md"; }
        total=$(awk -v a="$embed_s" -v b="$build_s" 'BEGIN { printf "%.0f", a + b }')
        echo "| $n | $q | $embed_s | $build_s | $total | $size_mib | $(mib "$build_kib") | $(mib "$serve_kib") | $default_ef | $(recall_at "$default_ef") | $(recall_at 128) | $(lat bm25) | $(lat dense) | $(lat hybrid) | $(lat personal) |" >> "$summary"
    done
    cat "$table"
done
echo
cat "$summary"
