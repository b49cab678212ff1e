#!/usr/bin/env bash
# Create (or reuse) a Python virtualenv holding the reference implementation,
# sentence-transformers (with torch and transformers), installed from PyPI.
#
# It lives OUTSIDE the repository so nothing large ends up in git. Scripts that
# need the reference (scripts/make_reference_vectors.py, speed comparisons)
# run with "$VENV/bin/python".
#
# Usage:  scripts/reference-venv.sh            # prints the venv path last
#         SHELFRANK_ST_VENV=/some/dir scripts/reference-venv.sh
#
# Note: torch from PyPI on Linux x86_64 pulls the nvidia-* CUDA wheels
# (several GB). They are not used (we run on CPU) but pip installs them.
set -euo pipefail

VENV="${SHELFRANK_ST_VENV:-/tmp/shelfrank-st-venv}"
PY="$(command -v python3 || command -v python || true)"
if [[ -z "$PY" ]]; then
    echo "error: python3 is needed" >&2
    exit 1
fi

# Reuse the venv when sentence-transformers already imports from it.
if [[ -x "$VENV/bin/python" ]] && "$VENV/bin/python" -c "import sentence_transformers" 2>/dev/null; then
    echo "reusing $VENV" >&2
else
    echo "creating $VENV ..." >&2
    "$PY" -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --upgrade pip
    # torch first (the big one), then sentence-transformers with its
    # remaining dependencies (transformers, tokenizers, safetensors, ...).
    "$VENV/bin/python" -m pip install --quiet torch
    "$VENV/bin/python" -m pip install --quiet sentence-transformers
fi

"$VENV/bin/python" - <<'PYEOF' >&2
import sentence_transformers, torch, transformers
print(f"sentence-transformers {sentence_transformers.__version__}, "
      f"torch {torch.__version__}, transformers {transformers.__version__}")
PYEOF
echo "$VENV"
