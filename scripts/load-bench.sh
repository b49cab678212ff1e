#!/usr/bin/env bash
# Load benchmark of `shelfrank serve` with wrk (Debian package `wrk`): QPS and
# p50/p95/p99 latency per scenario and concurrency, then the same again while a
# background writer posts events (and product upserts, when the server has
# PUT /products).
#
#   scripts/load-bench.sh --index DIR [options]
#
# Options:
#   --index DIR         the index to serve (required). Scenarios with writes change
#                       it, so it is copied to a temporary directory first unless
#                       --in-place is given.
#   --in-place          serve DIR itself (its event store gets the writer's events)
#   --bin PATH          the shelfrank binary (default: cargo build --release)
#   --model DIR         model directory, passed to serve (default: the manifest's)
#   --queries FILE      TSV (id<TAB>query) of distinct queries for the uncached
#                       scenario (default: the Home Depot dev queries)
#   --users FILE        shopper ids, one a line, for the personalised scenario
#                       (default: the first 200 users of the index's event store,
#                       read with `shelfrank`... see below)
#   --concurrency LIST  connection counts (default "1 8 32 64")
#   --duration D        wrk duration per row (default 15s)
#   --max-inflight N    passed to serve (default: the server's, 4 per core)
#   --smoke             one short row per scenario at concurrency 8 (a check that
#                       the script works, not a measurement)
#
# Scenarios: hybrid search of one query (the query embedding is cached after the
# first request), hybrid search of distinct queries (each one embedded: the
# uncached case), personalised search (distinct users, rerank auto), rerank of 100
# candidates. Uncached and personalised rows go to a second server on the same
# index started with --query-cache 0 (so every query is embedded, even after wrk
# has cycled through the query file); the others to one with the default cache.
# The "+writes" rows repeat them while a Python writer posts 10 requests/s of 10
# events (100 events/s) and 10 single-product upserts/s to the first server; the
# writer prints the acknowledgement latency of its event requests (p50/p99).
#
# Indexes of the real datasets:
#   shelfrank build --catalog ../shared/datasets/homedepot/catalog.jsonl --index DIR
#     (54,667 products; about 10 minutes on 2 cores with all-MiniLM-L6-v2)
#   shelfrank build --catalog ../shared/datasets/online_retail/catalog.jsonl --index DIR
#   shelfrank events import --index DIR ../shared/datasets/online_retail/events.history.jsonl
#     (gives the personalised scenario shoppers with history; pass --users with
#     their ids, e.g. `cut -f2 personal_queries.dev.tsv | sort -u | head -200`)
#
# wrk and the server share the machine: on a small machine the client's own CPU
# use lowers the numbers. Run the server elsewhere for absolute figures.
set -euo pipefail
cd "$(dirname "$0")/.."

index="" in_place=0 bin="" model="" users_file="" smoke=0 max_inflight=""
queries="../shared/datasets/homedepot/queries.dev.tsv"
concurrency="1 8 32 64" duration="15s"
while [[ $# -gt 0 ]]; do
    case "$1" in
        --index) index="$2"; shift 2 ;;
        --in-place) in_place=1; shift ;;
        --bin) bin="$2"; shift 2 ;;
        --model) model="$2"; shift 2 ;;
        --queries) queries="$2"; shift 2 ;;
        --users) users_file="$2"; shift 2 ;;
        --concurrency) concurrency="$2"; shift 2 ;;
        --duration) duration="$2"; shift 2 ;;
        --max-inflight) max_inflight="$2"; shift 2 ;;
        --smoke) smoke=1; shift ;;
        -h|--help) sed -n '2,45p' "$0"; exit 0 ;;
        *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
[[ -n "$index" ]] || { echo "--index DIR is required (see --help)" >&2; exit 2; }
command -v wrk >/dev/null || { echo "wrk not found: apt-get install wrk" >&2; exit 1; }
[[ -f "$queries" ]] || { echo "queries file $queries not found (--queries)" >&2; exit 1; }
if [[ $smoke -eq 1 ]]; then concurrency="8"; duration="3s"; fi

work="$(mktemp -d)"
server_pid="" server2_pid="" writer_pid=""
cleanup() {
    [[ -n "$writer_pid" ]] && kill "$writer_pid" 2>/dev/null || true
    [[ -n "$server2_pid" ]] && kill "$server2_pid" 2>/dev/null || true
    if [[ -n "$server_pid" ]]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

if [[ -z "$bin" ]]; then
    target="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
    cargo build --release --quiet --bin shelfrank
    cp "$target/release/shelfrank" "$work/shelfrank"   # the target dir may be shared
    bin="$work/shelfrank"
fi
"$bin" serve --help >/dev/null

if [[ $in_place -eq 0 ]]; then
    echo "copying $index (the writer scenarios change it; --in-place to skip)"
    cp -a "$index" "$work/index"
    index="$work/index"
fi

args=(serve --index "$index" --addr 127.0.0.1:0)
[[ -n "$model" ]] && args+=(--model "$model")
[[ -n "$max_inflight" ]] && args+=(--max-inflight "$max_inflight")
# Starts a server with the extra flags given, its output in $work/NAME.*; waits
# for its `listening on` line and prints its URL.
start_server() { # name [flags...]
    local name="$1"; shift
    "$bin" "${args[@]}" "$@" >"$work/$name.stdout" 2>"$work/$name.stderr" &
    local pid=$!
    echo "$pid" > "$work/$name.pid"
    for _ in $(seq 600); do
        grep -q '^listening on ' "$work/$name.stdout" 2>/dev/null && break
        kill -0 "$pid" 2>/dev/null || { cat "$work/$name.stderr" >&2; return 1; }
        sleep 0.1
    done
    sed -n 's/^listening on //p' "$work/$name.stdout"
}
url="$(start_server main)"
server_pid="$(cat "$work/main.pid")"
[[ -n "$url" ]] || { echo "the server did not start" >&2; exit 1; }
echo "server $url, index $index"
# A second server on the same index without a query cache, for the uncached and
# personalised rows: distinct queries repeat once wrk has cycled through them, and
# the first server's cache would then answer them.
url2="$(start_server uncached --query-cache 0)"
server2_pid="$(cat "$work/uncached.pid")"
[[ -n "$url2" ]] || { echo "the second server did not start" >&2; exit 1; }
echo "uncached server $url2 (--query-cache 0)"

# Request bodies, one JSON document a line, made with Python (JSON escaping).
python3 - "$url" "$queries" "$users_file" "$work" <<'PY'
import json, sys, urllib.request
url, queries, users_file, work = sys.argv[1:5]
qs = []
with open(queries, encoding="utf-8") as f:
    for line in f:
        parts = line.rstrip("\n").split("\t")
        if len(parts) >= 2 and parts[1].strip():
            qs.append(parts[1].strip())
def post(path, body):
    req = urllib.request.Request(url + path, json.dumps(body).encode(), {"content-type": "application/json"})
    with urllib.request.urlopen(req) as r:
        return json.load(r)
hits = post("/search", {"query": qs[0], "k": 100, "mode": "bm25"})["hits"]
if len(hits) < 100:
    hits = post("/search", {"query": qs[0], "k": 100})["hits"]
ids = [h["id"] for h in hits]
users = []
if users_file:
    with open(users_file, encoding="utf-8") as f:
        users = [l.strip() for l in f if l.strip()][:1000]
if not users:
    users = [f"bench-user-{i}" for i in range(200)]
    print("no --users: the personalised rows use unknown shoppers (cold start)", file=sys.stderr)
with open(f"{work}/cached.json", "w") as f:
    json.dump({"query": qs[0], "k": 10}, f)
with open(f"{work}/uncached.jsonl", "w") as f:
    for q in qs:
        f.write(json.dumps({"query": q, "k": 10}) + "\n")
with open(f"{work}/personal.jsonl", "w") as f:
    for i, q in enumerate(qs[:5000]):
        f.write(json.dumps({"query": q, "k": 10, "user": users[i % len(users)]}) + "\n")
with open(f"{work}/rerank.json", "w") as f:
    json.dump({"query": qs[0], "user": users[0], "k": 10,
               "candidates": [{"id": i, "score": 1.0 / (r + 1)} for r, i in enumerate(ids)]}, f)
with open(f"{work}/items.json", "w") as f:
    json.dump(ids, f)
print(f"{len(qs)} queries, {len(users)} users, {len(ids)} rerank candidates", file=sys.stderr)
PY

# wrk script: POST bodies from a file (one a line), each thread starting at another
# offset; done() prints exact percentiles of the run.
cat > "$work/bench.lua" <<'LUA'
local bodies = {}
local next_body = 1
local threads = {}
function setup(thread)
    table.insert(threads, thread)
    thread:set("id", #threads)
end
function init(args)
    for line in io.lines(args[1]) do
        if #line > 0 then table.insert(bodies, line) end
    end
    next_body = ((id or 1) * 7919) % #bodies + 1
    wrk.method = "POST"
    wrk.headers["Content-Type"] = "application/json"
end
function request()
    local b = bodies[next_body]
    next_body = next_body % #bodies + 1
    return wrk.format(nil, args_path, nil, b)
end
function done(summary, latency, requests)
    local e = summary.errors
    -- QPS of answered requests (2xx); non-2xx are counted apart.
    io.write(string.format("RESULT %.1f %.2f %.2f %.2f %d %d\n",
        (summary.requests - e.status) / (summary.duration / 1e6),
        latency:percentile(50) / 1000, latency:percentile(95) / 1000,
        latency:percentile(99) / 1000,
        e.status, e.connect + e.read + e.write + e.timeout))
end
LUA

run_row() { # name path bodies-file connections [url]
    local name="$1" path="$2" bodies="$3" c="$4" target="${5:-$url}"
    local threads=$(( c < $(nproc) ? c : $(nproc) ))
    local lua="$work/row.lua"
    # Let the previous row's requests drain (wrk closes its connections when its
    # time is up; the server finishes the work it accepted), so they are not
    # counted against this row as 503s.
    sleep 2
    { echo "args_path = \"$path\""; cat "$work/bench.lua"; } > "$lua"
    local out
    out="$(wrk -t"$threads" -c"$c" -d"$duration" --timeout 10s -s "$lua" "$target" -- "$bodies" 2>&1)"
    local r
    r="$(grep '^RESULT' <<<"$out" || true)"
    if [[ -z "$r" ]]; then echo "$out" >&2; return; fi
    read -r _ qps p50 p95 p99 non2xx errs <<<"$r"
    printf "%-22s %5s %10s %9s %9s %9s %8s %7s\n" "$name" "$c" "$qps" "$p50" "$p95" "$p99" "$non2xx" "$errs"
}

jq_line() { tr -d '\n' < "$1"; echo; }
jq_line "$work/cached.json" > "$work/cached.jsonl"
jq_line "$work/rerank.json" > "$work/rerank.jsonl"

scenarios() { # suffix
    for c in $concurrency; do
        run_row "hybrid cached$1" /search "$work/cached.jsonl" "$c"
        run_row "hybrid uncached$1" /search "$work/uncached.jsonl" "$c" "$url2"
        run_row "personalised$1" /search "$work/personal.jsonl" "$c" "$url2"
        run_row "rerank 100$1" /rerank "$work/rerank.jsonl" "$c"
    done
}

header() {
    printf "%-22s %5s %10s %9s %9s %9s %8s %7s\n" scenario conns QPS p50_ms p95_ms p99_ms non2xx errors
}

header
scenarios ""

# The background writer: 10 requests/s of 10 events, 10 product upserts/s.
python3 - "$url" "$work/items.json" >"$work/writer.log" 2>&1 <<'PY' &
import json, sys, time, urllib.request, urllib.error
url, items_file = sys.argv[1:3]
items = json.load(open(items_file))
def send(method, path, body):
    req = urllib.request.Request(url + path, json.dumps(body).encode(),
                                 {"content-type": "application/json"}, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except Exception:
        return 0
upserts = True
n = 0
stats = {}
ack = []
start = time.time()
while True:
    n += 1
    events = [{"user": f"writer-{n % 500}", "item": items[(n + i) % len(items)], "kind": "click",
               "ts": int(time.time()) - 1, "query": "bench"} for i in range(10)]
    t0 = time.perf_counter()
    s = send("POST", "/events", {"events": events})
    ack.append((time.perf_counter() - t0) * 1000)
    stats[("events", s)] = stats.get(("events", s), 0) + 1
    if upserts:
        p = {"id": f"bench-product-{n % 50}", "title": f"bench product {n} cordless drill"}
        s = send("PUT", "/products", {"products": [p]})
        if s in (404, 405):
            upserts = False
            print("no PUT /products on this server: events only", flush=True)
        stats[("products", s)] = stats.get(("products", s), 0) + 1
    if n % 50 == 0:
        a = sorted(ack)
        pct = lambda q: a[min(len(a) - 1, int(q * len(a)))]
        print(f"{time.time() - start:.0f}s {stats} event ack ms p50 {pct(0.5):.1f} p99 {pct(0.99):.1f} (n={len(a)})", flush=True)
    time.sleep(max(0.0, start + n * 0.1 - time.time()))
PY
writer_pid=$!
sleep 1
scenarios " +writes"
kill "$writer_pid" 2>/dev/null || true
wait "$writer_pid" 2>/dev/null || true
writer_pid=""
echo "writer: $(tail -n 2 "$work/writer.log" | tr '\n' ' ')"
echo "metrics:"
curl -s "$url/metrics" | grep -E '^shelfrank_(rejected_total|events|index_generation|index_products|engine_swaps_total) '
