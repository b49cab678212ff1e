//! `shelfrank search-bench`: end-to-end search latency per mode (query encoding
//! included, the query cache off) and the process's memory while serving, for the
//! scale benchmark (`scripts/scale-bench.sh`).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Result};
use clap::Args;

use shelfrank::eval::{self, percentile};
use shelfrank::{Mode, SearchRequest};

use super::{median, ModelArgs, DEFAULT_INDEX};

#[derive(Args)]
pub struct SearchBenchArgs {
    /// Index directory.
    #[arg(long, default_value = DEFAULT_INDEX)]
    index: PathBuf,
    #[command(flatten)]
    model: ModelArgs,
    /// Queries (qid<TAB>text) for the bm25, dense and hybrid modes.
    #[arg(long)]
    queries: PathBuf,
    /// Personalised tasks (qid, user, ts, query, target TSV): their user and query
    /// make the "personal" mode's requests (hybrid, reranked with the user's profile
    /// from the index's events).
    #[arg(long)]
    personal_queries: Option<PathBuf>,
    /// Queries per mode (the first ones).
    #[arg(long, default_value_t = 500)]
    limit: usize,
    /// Timed passes over the queries, after one untimed warm-up pass; the median
    /// over passes of each percentile is reported.
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    /// Hits per query.
    #[arg(short, long, default_value_t = 10)]
    k: usize,
}

/// A field of `/proc/self/status` in bytes (Linux; `None` elsewhere).
fn status_bytes(name: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(name))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// `VmRSS` and `VmHWM` of this process in bytes.
fn rss() -> Option<(u64, u64)> {
    Some((status_bytes("VmRSS:")?, status_bytes("VmHWM:")?))
}

fn mib(b: u64) -> String {
    format!("{:.0} MiB", b as f64 / (1024.0 * 1024.0))
}

pub fn run(a: SearchBenchArgs) -> Result<()> {
    if a.repeat == 0 || a.limit == 0 {
        bail!("--repeat and --limit must be at least 1");
    }
    let t = Instant::now();
    let engine = a.model.builder(&a.index, true)?.query_cache(0).build()?;
    let open_secs = t.elapsed().as_secs_f64();
    let after_open = rss();
    let queries = eval::read_queries(&a.queries)?;
    let mut sets: Vec<(&str, Vec<SearchRequest>)> = [Mode::Bm25, Mode::Dense, Mode::Hybrid]
        .into_iter()
        .map(|mode| {
            let reqs = queries
                .iter()
                .take(a.limit)
                .map(|q| SearchRequest::new(q.text.clone()).mode(mode).k(a.k))
                .collect();
            (mode.name(), reqs)
        })
        .collect();
    if let Some(path) = &a.personal_queries {
        let tasks = eval::read_personal_tasks(path)?;
        let reqs = tasks
            .iter()
            .filter(|t| !t.query.is_empty())
            .take(a.limit)
            .map(|t| {
                SearchRequest::new(t.query.clone())
                    .user(t.user.clone())
                    .k(a.k)
            })
            .collect();
        sets.push(("personal", reqs));
    }
    outln!(
        "index {}: {} products, graph vectors {}, opened in {open_secs:.1}s; RSS after open {}",
        a.index.display(),
        engine.len(),
        engine.quantization(),
        after_open.map_or("n/a".into(), |r| mib(r.0)),
    );
    outln!("| mode | queries | p50 (ms) | p99 (ms) | mean (ms) |");
    outln!("| --- | --- | --- | --- | --- |");
    for (name, reqs) in &sets {
        for r in reqs {
            engine.search(r)?;
        }
        let (mut p50s, mut p99s, mut means) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..a.repeat {
            let mut lat: Vec<f64> = Vec::with_capacity(reqs.len());
            for r in reqs {
                let t = Instant::now();
                engine.search(r)?;
                lat.push(t.elapsed().as_secs_f64() * 1e3);
            }
            means.push(lat.iter().sum::<f64>() / lat.len().max(1) as f64);
            lat.sort_by(f64::total_cmp);
            p50s.push(percentile(&lat, 50));
            p99s.push(percentile(&lat, 99));
        }
        outln!(
            "| {name} | {} | {:.2} | {:.2} | {:.2} |",
            reqs.len(),
            median(p50s),
            median(p99s),
            median(means)
        );
    }
    if let Some((now, peak)) = rss() {
        outln!(
            "serving RSS: {} now, {} peak (VmRSS / VmHWM after {} timed passes)",
            mib(now),
            mib(peak),
            a.repeat
        );
    }
    // Mapped file pages (the vector file, tantivy's segments) count in RSS but
    // are page cache the kernel can take back; anonymous memory is the heap.
    if let (Some(anon), Some(file)) = (status_bytes("RssAnon:"), status_bytes("RssFile:")) {
        outln!(
            "of it now: {} anonymous (heap), {} mapped files (RssAnon / RssFile)",
            mib(anon),
            mib(file)
        );
    }
    Ok(())
}
