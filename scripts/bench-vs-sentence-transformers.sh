#!/usr/bin/env bash
# Encoder speed, side by side: sentence-transformers (PyTorch, CPU) and
# shelfrank's encoder on the same titles, the same machine, in one run.
# Not run by CI: it installs torch + sentence-transformers into a virtualenv
# outside the repository (scripts/reference-venv.sh).
#
# Usage: scripts/bench-vs-sentence-transformers.sh [CATALOG] [LIMIT]
#   CATALOG defaults to ../shared/datasets/homedepot/catalog.jsonl, LIMIT to 2000.
set -euo pipefail
cd "$(dirname "$0")/.."

CATALOG="${1:-../shared/datasets/homedepot/catalog.jsonl}"
LIMIT="${2:-2000}"
BATCH=32
MAX_TOKENS=64
THREADS="$(nproc)"
REPEAT=3
MODEL=models/all-MiniLM-L6-v2

scripts/fetch-model.sh >/dev/null
VENV="$(scripts/reference-venv.sh | tail -n1)"
cargo build --release --quiet

# Alternate the two, twice, so that machine noise hits both.
for round in 1 2; do
    "$VENV/bin/python" scripts/st_speed.py "$MODEL" "$CATALOG" "$LIMIT" "$BATCH" "$MAX_TOKENS" "$THREADS" "$REPEAT" | tee -a /tmp/shelfrank-st-speed.$$
    target/release/shelfrank embed-bench --model "$MODEL" --catalog "$CATALOG" --limit "$LIMIT" \
        --batch-size "$BATCH" --max-tokens "$MAX_TOKENS" --repeat "$REPEAT" | tee -a /tmp/shelfrank-st-speed.$$
done
python3 - /tmp/shelfrank-st-speed.$$ <<'PY'
import re, statistics, sys
st, sr = [], []
for line in open(sys.argv[1]):
    m = re.search(r"([0-9.]+) texts/s", line)
    if m:
        (st if line.startswith("sentence-transformers") else sr).append(float(m.group(1)))
print(f"throughput ratio shelfrank / sentence-transformers: {statistics.median(sr) / statistics.median(st):.2f}x "
      f"({statistics.median(sr):.1f} vs {statistics.median(st):.1f} texts/s)")
PY
rm -f /tmp/shelfrank-st-speed.$$
