"""Turn `shelfrank embed` parts and their catalog into `_bulk` NDJSON for
OpenSearch or Elasticsearch (the same action format in both).

    python3 examples/spark/parts_to_bulk.py --catalog catalog.jsonl \
        --index products parts/part-* > bulk.ndjson
    curl -s -H 'Content-Type: application/x-ndjson' --data-binary @bulk.ndjson \
        "$ENGINE/_bulk"       # in chunks of a few thousand lines for a real catalog

Each product becomes an `index` action with `_id` = the product id and a document
holding `product_id`, `title`, `brand`, `category` (the path joined with " > "),
`price` and `embedding` (the part's float32 vector). Every part must come from one
model (same `model.sha256`), and every product id of the parts must be in the
catalog; the script stops with the part file and line otherwise. Standard library
only.
"""

import argparse
import array
import json
import os
import sys


def fail(msg):
    print("error: " + msg, file=sys.stderr)
    sys.exit(2)


def read_catalog(path):
    products = {}
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                p = json.loads(line)
            except ValueError as e:
                fail("%s line %d: %s" % (path, n, e))
            products[str(p["id"])] = p
    return products


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--catalog", required=True)
    ap.add_argument("--index", required=True, help="the engine's index name")
    ap.add_argument("parts", nargs="+", help="part directories written by shelfrank embed")
    args = ap.parse_args()
    products = read_catalog(args.catalog)
    model = None
    out = sys.stdout
    for part in args.parts:
        header_path = os.path.join(part, "part.json")
        with open(header_path, encoding="utf-8") as f:
            header = json.load(f)
        if header.get("format") != "shelfrank-embeddings" or header.get("version") != 1:
            fail("%s: not a shelfrank-embeddings version 1 part" % header_path)
        sha = header["model"]["sha256"]
        if model is None:
            model = sha
        elif sha != model:
            fail("%s: model sha256 %s, the first part's is %s" % (header_path, sha, model))
        dim, rows = header["model"]["dim"], header["rows"]
        vectors = array.array("f")
        with open(os.path.join(part, "vectors.f32"), "rb") as f:
            vectors.frombytes(f.read())
        if sys.byteorder != "little":
            vectors.byteswap()
        if len(vectors) != rows * dim:
            fail("%s: %d floats, expected %d x %d" % (part, len(vectors), rows, dim))
        ids_path = os.path.join(part, "ids.jsonl")
        with open(ids_path, encoding="utf-8") as f:
            for row, line in enumerate(f):
                pid = json.loads(line)["id"]
                p = products.get(pid)
                if p is None:
                    fail("%s line %d: product %r is not in %s" % (ids_path, row + 1, pid, args.catalog))
                category = p.get("category") or []
                if isinstance(category, list):
                    category = " > ".join(category)
                doc = {
                    "product_id": pid,
                    "title": p["title"],
                    "brand": p.get("brand"),
                    "category": category or None,
                    "price": p.get("price"),
                    "embedding": [float("%.9g" % x) for x in vectors[row * dim:(row + 1) * dim]],
                }
                out.write(json.dumps({"index": {"_index": args.index, "_id": pid}}) + "\n")
                out.write(json.dumps({k: v for k, v in doc.items() if v is not None}) + "\n")


if __name__ == "__main__":
    main()
