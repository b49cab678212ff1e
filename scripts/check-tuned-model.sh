#!/usr/bin/env bash
# Checks that sentence-transformers loads a model written by `shelfrank tune` and
# embeds like shelfrank does: cosine >= 0.999 on every text of the reference set
# (scripts/make_reference_vectors.py's texts: queries, titles, CJK, emoji, empty,
# a text truncated at the token limit). Not run by CI: it needs the virtualenv of
# scripts/reference-venv.sh (torch + sentence-transformers, several GB).
#
# Usage: scripts/check-tuned-model.sh MODEL_DIR
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL="${1:?usage: scripts/check-tuned-model.sh MODEL_DIR}"
VENV="$(scripts/reference-venv.sh | tail -n1)"
OUT="$(mktemp -d)"
trap 'rm -rf "$OUT"' EXIT
HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 \
    "$VENV/bin/python" scripts/make_reference_vectors.py "$MODEL" --out "$OUT/reference.json"
cargo run --release --quiet --example compare_reference -- "$MODEL" "$OUT/reference.json" 0.999
