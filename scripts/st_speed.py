"""Time sentence-transformers (the reference) on catalog titles, on the CPU.

Prints one line in the same shape as `shelfrank embed-bench`, so that
scripts/bench-vs-sentence-transformers.sh can put the two side by side.
Usage: python st_speed.py MODEL_DIR CATALOG_JSONL LIMIT BATCH MAX_TOKENS THREADS REPEAT
"""
import json
import os
import statistics
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402
from sentence_transformers import SentenceTransformer  # noqa: E402

model_dir, catalog, limit, batch, max_tokens, threads, repeat = sys.argv[1:8]
limit, batch, max_tokens, threads, repeat = map(int, (limit, batch, max_tokens, threads, repeat))
torch.set_num_threads(threads)

titles = []
with open(catalog, encoding="utf-8") as f:
    for line in f:
        if line.strip():
            titles.append(json.loads(line)["title"])
        if len(titles) == limit:
            break

model = SentenceTransformer(model_dir, device="cpu")
model.max_seq_length = max_tokens
model.encode(titles[:64], batch_size=batch)  # warm-up

rates = []
for _ in range(repeat):
    start = time.perf_counter()
    model.encode(titles, batch_size=batch, normalize_embeddings=True, show_progress_bar=False)
    rates.append(len(titles) / (time.perf_counter() - start))

latencies = []
for _ in range(50):
    start = time.perf_counter()
    model.encode(["rain shower head"], batch_size=1, normalize_embeddings=True, show_progress_bar=False)
    latencies.append((time.perf_counter() - start) * 1000)

print(
    f"sentence-transformers: {len(titles)} titles, batch {batch}, {threads} threads: "
    f"{statistics.median(rates):.1f} texts/s (median of {repeat}); "
    f"single query: {statistics.median(latencies):.2f} ms median"
)
