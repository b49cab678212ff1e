#!/usr/bin/env bash
# The offline build spread over Spark, run for real on local[2]: embed the Home
# Depot catalog in parts on Spark executors (examples/spark/embed_parts.py), build
# an index from the parts (`build --embeddings`), build the same catalog on one
# machine, and check that the two indexes hold byte-identical vectors and answer
# every dev query identically (the eval run files of bm25, dense and hybrid are
# compared). Both builds use --deterministic-graph: the default parallel HNSW
# insert makes two builds over the same vectors differ slightly, even on one
# machine, which would hide whether the parts changed anything.
#
# Usage: scripts/spark-build.sh [--catalog FILE] [--queries FILE --qrels FILE]
#                               [--partitions N] [--work DIR] [--limit N]
#
# Installs what it needs: a virtualenv with a pinned pyspark from PyPI (which
# bundles Spark) in the git-ignored .spark/, the release binary (cargo build),
# and the default model (scripts/fetch-model.sh). Needs Java 17 for Spark.
# --limit N uses only the first N catalog lines (a quick run); the dev queries
# are then evaluated over that smaller catalog.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DATA="$ROOT/../shared/datasets/homedepot"
CATALOG="$DATA/catalog.jsonl"
QUERIES="$DATA/queries.dev.tsv"
QRELS="$DATA/qrels.dev.txt"
PARTITIONS=8
WORK="$ROOT/bench-data/spark"
LIMIT=""
PYSPARK_VERSION="3.5.3"

while [[ $# -gt 0 ]]; do
    case "$1" in
        --catalog) CATALOG="$2"; shift 2 ;;
        --queries) QUERIES="$2"; shift 2 ;;
        --qrels) QRELS="$2"; shift 2 ;;
        --partitions) PARTITIONS="$2"; shift 2 ;;
        --work) WORK="$2"; shift 2 ;;
        --limit) LIMIT="$2"; shift 2 ;;
        -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
        *) echo "error: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done

for f in "$CATALOG" "$QUERIES" "$QRELS"; do
    [[ -f "$f" ]] || { echo "error: $f not found" >&2; exit 2; }
done
command -v java >/dev/null || { echo "error: Spark needs Java (17); java is not on PATH" >&2; exit 2; }

# 1. What it needs.
VENV="$ROOT/.spark/venv"
if ! "$VENV/bin/python" -c "import pyspark; assert pyspark.__version__ == '$PYSPARK_VERSION'" 2>/dev/null; then
    echo "installing pyspark $PYSPARK_VERSION into $VENV ..." >&2
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet "pyspark==$PYSPARK_VERSION"
fi
MODEL="$ROOT/models/all-MiniLM-L6-v2"
[[ -f "$MODEL/model.safetensors" ]] || "$ROOT/scripts/fetch-model.sh" >&2
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/shelfrank"
(cd "$ROOT" && cargo build --release --quiet)
[[ -x "$BIN" ]] || { echo "error: $BIN was not built" >&2; exit 1; }

rm -rf "$WORK"
mkdir -p "$WORK"
if [[ -n "$LIMIT" ]]; then
    head -n "$LIMIT" "$CATALOG" > "$WORK/catalog.jsonl"
    CATALOG="$WORK/catalog.jsonl"
fi
echo "catalog: $CATALOG ($(wc -l < "$CATALOG") lines), $PARTITIONS partitions, local[2]" >&2

# 2. Spark: one `shelfrank embed` per partition.
t0=$(date +%s)
PYSPARK_PYTHON="$VENV/bin/python" "$VENV/bin/spark-submit" --master "local[2]" \
    --conf spark.ui.enabled=false \
    "$ROOT/examples/spark/embed_parts.py" \
    --catalog "$CATALOG" --out "$WORK/parts" --partitions "$PARTITIONS" \
    --shelfrank "$BIN" --model "$MODEL" --workers 1 \
    > "$WORK/spark.jsonl" 2> "$WORK/spark.log" \
    || { tail -30 "$WORK/spark.log" >&2; echo "error: the Spark job failed (log: $WORK/spark.log)" >&2; exit 1; }
t1=$(date +%s)
tail -1 "$WORK/spark.jsonl" >&2

# 3. Assemble, and build on one machine.
"$BIN" build --catalog "$CATALOG" --index "$WORK/assembled" --model "$MODEL" --quiet \
    --deterministic-graph --embeddings "$WORK"/parts/part-*
t2=$(date +%s)
"$BIN" build --catalog "$CATALOG" --index "$WORK/single" --model "$MODEL" --quiet \
    --deterministic-graph
t3=$(date +%s)

# 4. Compare.
vectors() { echo "$1/$(cat "$1/CURRENT")/vectors.f32"; }
if cmp -s "$(vectors "$WORK/assembled")" "$(vectors "$WORK/single")"; then
    echo "vectors.f32: byte-identical" >&2
else
    echo "FAIL: vectors.f32 differs between the assembled and the single-machine index" >&2
    exit 1
fi
for which in assembled single; do
    "$BIN" eval --index "$WORK/$which" --model "$MODEL" --queries "$QUERIES" --qrels "$QRELS" \
        --modes bm25,dense,hybrid --out "$WORK/eval-$which" --quiet > "$WORK/eval-$which.txt"
done
if diff -r -x report.json "$WORK/eval-assembled" "$WORK/eval-single" > "$WORK/eval.diff"; then
    echo "dev queries: identical run files (bm25, dense, hybrid)" >&2
else
    echo "FAIL: the dev queries' run files differ (see $WORK/eval.diff)" >&2
    exit 1
fi
cat "$WORK/eval-assembled.txt"
echo "spark embed $((t1 - t0)) s, assemble $((t2 - t1)) s, single-machine build $((t3 - t2)) s"
echo "OK: the index assembled from $PARTITIONS Spark parts equals the single-machine build"
