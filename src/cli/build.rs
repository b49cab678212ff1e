//! `shelfrank build`: catalog file -> index.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use clap::Args;

use shelfrank::catalog::{self, ColumnMap, Format, ReadOptions, TextEncoding};
use shelfrank::{encoder, HnswParams, IndexBuilder};

use super::{Bars, ModelArgs, DEFAULT_INDEX};

/// Which catalog file, and how to read it (shared by `build` and `embed`).
#[derive(Args)]
pub struct CatalogArgs {
    /// Catalog file.
    #[arg(long)]
    pub catalog: PathBuf,
    /// Catalog format: jsonl, csv or tsv (default: from the file extension).
    #[arg(long)]
    format: Option<String>,
    /// CSV/TSV column mapping, e.g. "id=sku,title=name,attr.color=colour".
    #[arg(long)]
    columns: Option<String>,
    /// Text encoding of the catalog: utf8 or latin1.
    #[arg(long, default_value = "utf8")]
    encoding: String,
    /// Skip invalid lines (counted and reported) instead of stopping at the first.
    #[arg(long)]
    skip_invalid: bool,
}

impl CatalogArgs {
    /// Reads the catalog, reporting what was read and skipped on stderr.
    pub fn read(&self) -> Result<Vec<shelfrank::Product>> {
        let opts = ReadOptions {
            format: self
                .format
                .as_deref()
                .map(str::parse::<Format>)
                .transpose()?,
            encoding: self.encoding.parse::<TextEncoding>()?,
            columns: match &self.columns {
                Some(c) => c.parse::<ColumnMap>()?,
                None => ColumnMap::default(),
            },
            skip_invalid: self.skip_invalid,
            ..ReadOptions::default()
        };
        let cat = catalog::read_catalog(&self.catalog, &opts)?;
        eprintln!(
            "read {} products from {}{}",
            cat.products.len(),
            self.catalog.display(),
            if cat.skipped > 0 {
                format!(", skipped {} invalid lines", cat.skipped)
            } else {
                String::new()
            }
        );
        for p in &cat.problems {
            eprintln!("  skipped: {p}");
        }
        if cat.skipped > cat.problems.len() {
            eprintln!("  ... and {} more", cat.skipped - cat.problems.len());
        }
        Ok(cat.products)
    }
}

#[derive(Args)]
pub struct BuildArgs {
    #[command(flatten)]
    catalog: CatalogArgs,
    /// Where to write the index (replaced atomically if it exists).
    #[arg(long, default_value = DEFAULT_INDEX)]
    index: PathBuf,
    #[command(flatten)]
    model: ModelArgs,
    /// Take every product's embedding from these part directories (written by
    /// `shelfrank embed`, e.g. on Spark executors) instead of encoding: they must
    /// come from --model and hold every catalog product exactly once.
    #[arg(long, num_args = 1.., value_name = "DIR")]
    embeddings: Vec<PathBuf>,
    /// Texts per encoder batch.
    #[arg(long, default_value_t = encoder::DEFAULT_BATCH_SIZE)]
    batch_size: usize,
    /// Maximum tokens per product text (default: the model's own limit).
    #[arg(long)]
    max_tokens: Option<usize>,
    /// HNSW links per node (M).
    #[arg(long, default_value_t = HnswParams::default().m)]
    hnsw_m: usize,
    /// HNSW candidate list size while building.
    #[arg(long, default_value_t = HnswParams::default().ef_construction)]
    hnsw_ef_construction: usize,
    /// HNSW candidate list size while searching (saved with the index). Default:
    /// from the catalog's size, 128 up to 100,000 products and 64 more per doubling
    /// beyond (352 at a million).
    #[arg(long)]
    hnsw_ef_search: Option<usize>,
    /// How the HNSW graph stores its vectors: f32, or int8 (a quarter of the
    /// memory; the graph's candidates are rescored with the float32 vectors).
    /// Recorded in the manifest.
    #[arg(long, default_value_t = HnswParams::default().quantization, value_parser = parse_quantization)]
    quantization: shelfrank::vector::Quantization,
    /// Build the HNSW graph on one thread, in catalog order, so that the same
    /// vectors always give the same graph and the same answers (slower: about as
    /// many times as there are cores).
    #[arg(long)]
    deterministic_graph: bool,
    /// Encode every product again instead of reusing unchanged products'
    /// embeddings from an index already at --index.
    #[arg(long)]
    no_reuse: bool,
    /// No progress bars.
    #[arg(long, short)]
    quiet: bool,
    /// If another process is writing the index when the build publishes, wait for
    /// it instead of failing.
    #[arg(long)]
    wait: bool,
}

pub fn run(a: BuildArgs) -> Result<()> {
    let start = Instant::now();
    let products = a.catalog.read()?;
    let mut enc = a.model.encoder_options()?;
    enc.max_tokens = a.max_tokens;
    let summary = IndexBuilder::new(&a.index, enc.model_dir.clone())
        .encoder_options(enc)
        .hnsw(HnswParams {
            m: a.hnsw_m,
            ef_construction: a.hnsw_ef_construction,
            ef_search: a
                .hnsw_ef_search
                .unwrap_or(shelfrank::vector::EF_SEARCH_AUTO),
            quantization: a.quantization,
        })
        .batch_size(a.batch_size)
        .reuse_embeddings(!a.no_reuse)
        .wait_for_lock(a.wait)
        .precomputed_embeddings(a.embeddings.clone())
        .deterministic_graph(a.deterministic_graph)
        .source(a.catalog.catalog.display().to_string())
        .build_with(&products, &Bars::new(a.quiet))?;
    outln!(
        "built {} with {} products ({} dims) in {:.1}s (encoding {:.1}s{}, hnsw {:.1}s, keywords {:.1}s); index size {}",
        summary.index.display(),
        summary.products,
        summary.dim,
        start.elapsed().as_secs_f64(),
        summary.encode_secs,
        if !a.embeddings.is_empty() {
            format!(" from {} precomputed parts", a.embeddings.len())
        } else if summary.reused_embeddings > 0 {
            format!(" with {} embeddings reused", summary.reused_embeddings)
        } else {
            String::new()
        },
        summary.hnsw_secs,
        summary.text_secs,
        human_bytes(summary.bytes)
    );
    Ok(())
}

pub(crate) fn human_bytes(b: u64) -> String {
    let mb = b as f64 / (1024.0 * 1024.0);
    if mb >= 1.0 {
        format!("{mb:.1} MiB")
    } else {
        format!("{:.1} KiB", b as f64 / 1024.0)
    }
}

fn parse_quantization(s: &str) -> Result<shelfrank::vector::Quantization, String> {
    s.parse().map_err(|e: shelfrank::Error| e.to_string())
}
