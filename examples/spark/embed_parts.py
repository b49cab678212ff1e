"""Embed a catalog on Spark: one `shelfrank embed` per partition, on the executors.

    spark-submit --master local[2] examples/spark/embed_parts.py \
        --catalog catalog.jsonl --out parts/ --partitions 8 \
        --shelfrank target/release/shelfrank --model models/all-MiniLM-L6-v2

then, on one machine:

    shelfrank build --catalog catalog.jsonl --embeddings parts/part-* --index INDEX

The catalog is read as text lines (JSONL; one product per line) and split into
`--partitions` parts by line number (line i goes to part i mod N), so the split is
the same on every run. Each task writes its lines to a local file, runs
`shelfrank embed` on it into `OUT/part-NNNNN.attempt-A` and renames that to
`OUT/part-NNNNN`. A retried or speculative task whose part is already in place
removes its own copy: the first finished attempt wins, and every part directory is
whole (`shelfrank embed` writes it atomically). `OUT` must be a path every
executor and the driver see (a shared file system; on a cluster, copy the parts
from object storage to the building machine first).

The executors need the `shelfrank` binary and the model directory at the same
paths (on a cluster: ship them with `--files`/`--archives`, or bake them into the
executor image). `--workers` is the encoder threads per task; give it
`spark.task.cpus` so tasks do not oversubscribe the cores.

Prints one JSON line per part (rows, seconds) and a summary; exits non-zero when
any task failed.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

from pyspark import SparkContext, TaskContext


def embed_partition(args, index, lines):
    """Runs `shelfrank embed` over one partition's lines; yields one summary dict."""
    lines = [l for l in lines if l.strip()]
    final = os.path.join(args.out, "part-%05d" % index)
    if not lines:
        yield {"part": index, "rows": 0, "seconds": 0.0, "skipped": "empty"}
        return
    if os.path.exists(os.path.join(final, "part.json")):
        yield {"part": index, "rows": len(lines), "seconds": 0.0, "skipped": "exists"}
        return
    ctx = TaskContext.get()
    attempt = ctx.attemptNumber() if ctx is not None else 0
    staging = "%s.attempt-%d-%d" % (final, attempt, os.getpid())
    start = time.time()
    with tempfile.TemporaryDirectory(prefix="shelfrank-part-") as tmp:
        catalog = os.path.join(tmp, "part.jsonl")
        with open(catalog, "w", encoding="utf-8") as f:
            for line in lines:
                f.write(line.rstrip("\n") + "\n")
        cmd = [
            args.shelfrank, "embed",
            "--catalog", catalog,
            "--out", staging,
            "--model", args.model,
            "--workers", str(args.workers),
            "--batch-size", str(args.batch_size),
            "--quiet",
        ]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            shutil.rmtree(staging, ignore_errors=True)
            raise RuntimeError(
                "part %d: %s failed (exit %d): %s"
                % (index, " ".join(cmd), done.returncode, done.stderr.strip())
            )
    try:
        os.rename(staging, final)
    except OSError:
        # Another attempt put its part in place first; both embedded the same lines.
        shutil.rmtree(staging, ignore_errors=True)
        if not os.path.exists(os.path.join(final, "part.json")):
            raise
    yield {"part": index, "rows": len(lines), "seconds": round(time.time() - start, 1)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--catalog", required=True, help="catalog JSONL (one product per line)")
    ap.add_argument("--out", required=True, help="directory for the part directories")
    ap.add_argument("--partitions", type=int, default=8)
    ap.add_argument("--shelfrank", required=True, help="path of the shelfrank binary")
    ap.add_argument("--model", required=True, help="model directory")
    ap.add_argument("--workers", type=int, default=1, help="encoder threads per task")
    ap.add_argument("--batch-size", type=int, default=64)
    args = ap.parse_args()
    if args.partitions < 1:
        ap.error("--partitions must be at least 1")
    args.out = os.path.abspath(args.out)
    args.shelfrank = os.path.abspath(args.shelfrank)
    args.model = os.path.abspath(args.model)
    os.makedirs(args.out, exist_ok=True)

    sc = SparkContext(appName="shelfrank-embed")
    sc.setLogLevel("WARN")
    n = args.partitions
    start = time.time()
    # Line i goes to part i mod n: a split that does not depend on Spark's input splits.
    by_line = (
        sc.textFile(os.path.abspath(args.catalog))
        .zipWithIndex()
        .map(lambda li: (li[1] % n, li[0]))
        .partitionBy(n, lambda key: key)
        .values()
    )
    results = by_line.mapPartitionsWithIndex(
        lambda i, it: embed_partition(args, i, it)
    ).collect()
    sc.stop()
    for r in sorted(results, key=lambda r: r["part"]):
        print(json.dumps(r))
    rows = sum(r["rows"] for r in results)
    print(json.dumps({
        "parts": len(results),
        "rows": rows,
        "seconds": round(time.time() - start, 1),
        "out": args.out,
    }))


if __name__ == "__main__":
    sys.exit(main())
