#!/usr/bin/env bash
# Encoder speed, side by side: sentence-transformers (PyTorch, CPU, fp32) and
# shelfrank's encoder in f32, bf16 and int8 on the same titles, the same
# machine, in one run (PRECISIONS="f32 int8" to choose).
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

# Alternate sentence-transformers and each shelfrank precision, twice, so that
# machine noise hits all of them. embed-bench prints the machine (CPU model,
# family/model, cores, SIMD level, int8 and bf16 kernels) first.
PRECISIONS="${PRECISIONS:-f32 bf16 int8}"
OUT="$(mktemp)"
trap 'rm -f "$OUT"' EXIT
for round in 1 2; do
    "$VENV/bin/python" scripts/st_speed.py "$MODEL" "$CATALOG" "$LIMIT" "$BATCH" "$MAX_TOKENS" "$THREADS" "$REPEAT" | tee -a "$OUT"
    for dtype in $PRECISIONS; do
        "${CARGO_TARGET_DIR:-target}"/release/shelfrank embed-bench --model "$MODEL" --catalog "$CATALOG" --limit "$LIMIT" \
            --batch-size "$BATCH" --max-tokens "$MAX_TOKENS" --repeat "$REPEAT" --dtype "$dtype" | tee -a "$OUT"
    done
done
python3 - "$OUT" <<'PY'
import re, statistics, sys
st, st_query, rates, queries = [], [], {}, {}
for line in open(sys.argv[1]):
    if line.startswith("sentence-transformers"):
        st.append(float(re.search(r"([0-9.]+) texts/s", line).group(1)))
        st_query.append(float(re.search(r"single query: ([0-9.]+) ms", line).group(1)))
        continue
    m = re.search(r"\(cpu, ([a-z0-9]+(?: \([a-z0-9]+\))?), ", line)
    if not m:
        continue
    if (r := re.search(r"([0-9.]+) texts/s", line)):
        rates.setdefault(m.group(1), []).append(float(r.group(1)))
    elif (q := re.search(r"single query .*: ([0-9.]+) ms", line)):
        queries.setdefault(m.group(1), []).append(float(q.group(1)))
base = statistics.median(st)
print(f"sentence-transformers (fp32): {base:.1f} texts/s, single query {statistics.median(st_query):.2f} ms (medians)")
for fmt, r in rates.items():
    q = statistics.median(queries.get(fmt, [float("nan")]))
    print(f"shelfrank {fmt}: {statistics.median(r):.1f} texts/s = {statistics.median(r) / base:.2f}x "
          f"sentence-transformers; single query {q:.2f} ms (medians)")
PY
