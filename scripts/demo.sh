#!/usr/bin/env bash
# The main job on a fresh machine: fetch the default model, build shelfrank, index
# the sample catalog in fixtures/, and show the whole product on it:
#   1. search in every mode, with filters;
#   2. import shoppers' events and train the CTR head from search tasks;
#   3. the same query for two shoppers with different histories, and why;
#   4. rerank candidates another engine found;
#   5. evaluate retrieval and personalisation on the fixture judgements and tasks.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/fetch-model.sh
cargo build --release --quiet
BIN="${CARGO_TARGET_DIR:-target}/release/shelfrank"
IDX=index/sample
# The fixture events are from Nov-Dec 2023: rank as of just after them.
AS_OF=2024-01-01T00:00:00

section() { printf '\n=== %s\n' "$1"; }

# A fresh index each run (a rebuild keeps an index's events, and the demo imports
# the fixture events below).
rm -rf "$IDX"
section "1. Build the sample index (40 products) and search it"
$BIN build --catalog fixtures/catalog.jsonl --index "$IDX" --quiet
for q in "rain shower head" "something to cook burgers outside"; do
    for mode in bm25 dense hybrid; do
        echo
        $BIN search "$q" --index "$IDX" --mode "$mode" -k 3
    done
done
echo
echo "filtered: 'white' in Bath under \$250"
$BIN search "white" --index "$IDX" --category "Bath" --max-price 250 -k 5

section "2. Shoppers' events, and a CTR head trained from search tasks"
$BIN events import fixtures/events.jsonl --index "$IDX"
$BIN train --index "$IDX" --tasks fixtures/personal_queries.tsv --events fixtures/events.jsonl --quiet

section "3. One query, two shoppers: u2 clicked, carted and bought a kitchen faucet (8 events), u8 bought a shower faucet twice and a shower head"
echo "anonymous:"
$BIN search "faucet" --index "$IDX" -k 3
for user in u2 u8; do
    echo
    echo "shopper $user:"
    $BIN search "faucet" --index "$IDX" --user "$user" --as-of "$AS_OF" -k 3
done
echo
echo "(ctr: the head's probability; profile: taste similarity and past interest;"
echo " why: how far the query match, the shopper's history and popularity each moved"
echo " the head's score, summed from the per-feature contributions in the breakdown)"

section "4. Rerank candidates another engine found (ids and its scores; one unknown id)"
CANDS=$(mktemp)
trap 'rm -f "$CANDS"' EXIT
printf 'p003\t0.92\np001\t0.90\np004\t0.85\nnot-in-catalog\t0.80\n' > "$CANDS"
$BIN rerank --index "$IDX" --query "faucet" --user u2 --as-of "$AS_OF" --candidates "$CANDS" -k 3 --table

section "5. Evaluation on the fixture judgements and personalised tasks"
$BIN eval --index "$IDX" --queries fixtures/queries.tsv --qrels fixtures/qrels.txt \
    --modes bm25,dense,hybrid,rrf,weighted:0.7 --out index/sample-eval --quiet
echo
$BIN eval --index "$IDX" --personal-queries fixtures/personal_queries.tsv \
    --events fixtures/events.jsonl --modes hybrid,profile --out index/sample-eval --quiet
