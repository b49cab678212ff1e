//! `shelfrank embed`: one catalog part -> a directory of precomputed embeddings
//! (`shelfrank build --embeddings` assembles an index from such parts).

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use shelfrank::encoder;

use super::build::CatalogArgs;
use super::{Bars, ModelArgs};

#[derive(Args)]
pub struct EmbedArgs {
    #[command(flatten)]
    catalog: CatalogArgs,
    /// The part directory to write (must not exist; written whole or not at all).
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    model: ModelArgs,
    /// Texts per encoder batch.
    #[arg(long, default_value_t = encoder::DEFAULT_BATCH_SIZE)]
    batch_size: usize,
    /// Maximum tokens per product text (default: the model's own limit).
    #[arg(long)]
    max_tokens: Option<usize>,
    /// Encoder threads (default: every core). A Spark executor running several
    /// tasks gives each `spark.task.cpus`.
    #[arg(long)]
    workers: Option<usize>,
    /// No progress bars.
    #[arg(long, short)]
    quiet: bool,
}

pub fn run(a: EmbedArgs) -> Result<()> {
    let products = a.catalog.read()?;
    let mut opts = a.model.encoder_options()?;
    opts.max_tokens = a.max_tokens;
    opts.workers = a.workers;
    let summary = shelfrank::parts::embed_part(
        &products,
        &opts,
        a.batch_size,
        &a.out,
        &a.catalog.catalog.display().to_string(),
        &Bars::new(a.quiet),
    )?;
    outln!(
        "embedded {} products into {} in {:.1}s ({:.0} texts/s)",
        summary.rows,
        summary.dir.display(),
        summary.encode_secs,
        summary.rows as f64 / summary.encode_secs.max(1e-9)
    );
    Ok(())
}
