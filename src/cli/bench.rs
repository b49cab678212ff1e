//! `shelfrank embed-bench`: encoder throughput on catalog titles, and single-query
//! latency.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use clap::Args;

use shelfrank::catalog::{self, ReadOptions};
use shelfrank::encoder;

use super::{median, ModelArgs};

#[derive(Args)]
pub struct EmbedBenchArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Catalog whose titles are encoded (JSONL with "title").
    #[arg(long)]
    catalog: PathBuf,
    /// Number of titles.
    #[arg(long, default_value_t = 2000)]
    limit: usize,
    /// Texts per batch.
    #[arg(long, default_value_t = encoder::DEFAULT_BATCH_SIZE)]
    batch_size: usize,
    /// Maximum tokens per text.
    #[arg(long, default_value_t = 64)]
    max_tokens: usize,
    /// Encoder worker threads for batches (default: one per core).
    #[arg(long)]
    workers: Option<usize>,
    /// Timed repetitions (the median is reported).
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    /// Single-query encodes for the latency figure.
    #[arg(long, default_value_t = 50)]
    queries: usize,
}

pub fn run(a: EmbedBenchArgs) -> Result<()> {
    let mut opts = a.model.encoder_options()?;
    opts.max_tokens = Some(a.max_tokens);
    opts.workers = a.workers;
    let enc = shelfrank::Encoder::load(&opts)?;
    let cat = catalog::read_catalog(
        &a.catalog,
        &ReadOptions {
            skip_invalid: true,
            ..ReadOptions::default()
        },
    )?;
    let titles: Vec<&str> = cat
        .products
        .iter()
        .take(a.limit)
        .map(|p| p.title.as_str())
        .collect();
    enc.embed_many(&titles[..titles.len().min(64)], a.batch_size, &|_| {})?; // warm-up
    let mut rates = Vec::new();
    for _ in 0..a.repeat.max(1) {
        let t = Instant::now();
        enc.embed_many(&titles, a.batch_size, &|_| {})?;
        rates.push(titles.len() as f64 / t.elapsed().as_secs_f64());
    }
    let mut lat = Vec::new();
    for _ in 0..a.queries.max(1) {
        let t = Instant::now();
        enc.embed("rain shower head")?;
        lat.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    println!(
        "shelfrank: {} titles, batch {}, {} workers: {:.1} texts/s (median of {}); single query: {:.2} ms median",
        titles.len(),
        a.batch_size,
        enc.workers(),
        median(rates),
        a.repeat.max(1),
        median(lat)
    );
    Ok(())
}
