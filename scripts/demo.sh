#!/usr/bin/env bash
# The main job on a fresh machine: fetch the default model, build shelfrank,
# index the sample catalog in fixtures/, and run a few queries in each mode.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/fetch-model.sh
cargo build --release --quiet
BIN=target/release/shelfrank

$BIN build --catalog fixtures/catalog.jsonl --index index/sample
for q in "rain shower head" "cordless drill" "something to cook burgers outside"; do
    for mode in bm25 dense hybrid; do
        echo
        $BIN search "$q" --index index/sample --mode "$mode" -k 3
    done
done
echo
echo "filtered: 'white' in Bath under \$250"
$BIN search "white" --index index/sample --category "Bath" --max-price 250 -k 5
echo
$BIN eval --index index/sample --queries fixtures/queries.tsv --qrels fixtures/qrels.txt \
    --modes bm25,dense,hybrid --out index/sample-eval --quiet
