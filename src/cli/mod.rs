//! The command line's commands, one file each, and what they share: model and
//! personalisation flags, opening an engine, progress bars. Every command parses its
//! flags, calls the library, and prints.

/// `println!` that returns the write's error instead of panicking, so a closed
/// pipe (`shelfrank ... | head`) ends the command quietly (see `main`).
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*)?;
    }};
}

pub mod bench;
pub mod build;
pub mod embed;
pub mod eval;
pub mod events;
pub mod recall;
pub mod rerank;
pub mod search;
pub mod search_bench;
pub mod serve;
pub mod train;
pub mod tune;

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use shelfrank::encoder::{self, DeviceSpec, EncoderOptions};
use shelfrank::profile::events::parse_timestamp;
use shelfrank::profile::EventStore;
use shelfrank::{Engine, EngineBuilder, Progress, SearchRequest};

/// The index directory when `--index` is not given.
pub const DEFAULT_INDEX: &str = "index/main";

/// Which model, on which device, with which forward pass.
#[derive(Args)]
pub struct ModelArgs {
    /// Model directory (Hugging Face BERT: config.json, tokenizer.json, model.safetensors).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Device for the encoder: cpu, cuda, cuda:N or auto.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Encoder implementation: fast (default) or reference (candle-transformers'
    /// stock BERT, slower; for checking the fast one).
    #[arg(long, default_value = "fast")]
    pub encoder: String,
    /// Format of the encoder's weights and activations: f32; f16 (for GPUs; on
    /// the CPU slower than f32); bf16 (GPUs, and on the CPU the linear layers in
    /// bfloat16: faster than f32 with AVX-512 BF16, slower without); or int8 (CPU
    /// only: the linear layers in integers). Embeddings differ from f32 ones by
    /// rounding only (README gives the measured cosine).
    #[arg(long, default_value = "f32", visible_alias = "precision")]
    pub dtype: String,
}

impl ModelArgs {
    /// Encoder options for the model, device and implementation named on the command line.
    pub fn encoder_options(&self) -> Result<EncoderOptions> {
        let dir = self
            .model
            .clone()
            .unwrap_or_else(encoder::default_model_dir);
        let mut opts = EncoderOptions::new(dir);
        opts.device = self.device.parse::<DeviceSpec>()?;
        opts.implementation = self.encoder.parse()?;
        opts.precision = self.dtype.parse()?;
        Ok(opts)
    }

    /// The options that open the index with this model, device and implementation
    /// (the encoder only when `need_encoder`).
    pub fn builder(&self, index: &Path, need_encoder: bool) -> Result<EngineBuilder> {
        let mut b = EngineBuilder::new(index)
            .device(self.device.parse::<DeviceSpec>()?)
            .encoder_implementation(self.encoder.parse()?)
            .precision(self.dtype.parse()?)
            .keyword_only(!need_encoder);
        if let Some(dir) = &self.model {
            b = b.model_dir(dir);
        }
        Ok(b)
    }

    /// Opens the index, with the encoder when `need_encoder`, and warns about a head
    /// that could not be loaded.
    pub fn open(&self, index: &Path, need_encoder: bool) -> Result<Engine> {
        let engine = self.builder(index, need_encoder)?.build()?;
        if let Some(w) = engine.head_warning() {
            eprintln!("warning: {w}");
        }
        Ok(engine)
    }
}

/// Where training logs come from (`train`, `tune`): exactly one of tasks,
/// impressions, or queries with qrels.
#[derive(Args)]
pub struct LogArgs {
    /// Personalised search tasks: qid, user, ts, query, target_item (TSV).
    #[arg(long)]
    pub tasks: Option<PathBuf>,
    /// Impression log (JSONL: user, query, ts, shown, clicked).
    #[arg(long)]
    pub impressions: Option<PathBuf>,
    /// Queries (with --qrels): graded judgements.
    #[arg(long)]
    pub queries: Option<PathBuf>,
    /// TREC qrels (with --queries).
    #[arg(long)]
    pub qrels: Option<PathBuf>,
    /// Use only queries whose id hashes into this half (0 or 1) of the two-fold split
    /// that `eval --fold` uses (qrels).
    #[arg(long)]
    pub fold: Option<u8>,
    /// Use at most this many tasks, impressions or queries (the first ones).
    #[arg(long)]
    pub limit: Option<usize>,
}

/// Logs read by [`LogArgs::read`].
pub enum Logs {
    Tasks(Vec<shelfrank::eval::PersonalTask>),
    Impressions(Vec<shelfrank::rank::samples::Impression>),
    Judgements {
        queries: Vec<shelfrank::eval::Query>,
        qrels: shelfrank::eval::Qrels,
    },
}

impl LogArgs {
    /// Reads the one source given; returns it with its file (the qrels for judgements).
    pub fn read(&self) -> Result<(Logs, PathBuf)> {
        use shelfrank::eval;
        let given = [
            self.tasks.is_some(),
            self.impressions.is_some(),
            self.queries.is_some() || self.qrels.is_some(),
        ];
        if given.iter().filter(|x| **x).count() != 1 {
            anyhow::bail!(
                "give exactly one source: --tasks, --impressions, or --queries with --qrels"
            );
        }
        let limit = self.limit.unwrap_or(usize::MAX);
        if let Some(path) = &self.tasks {
            let mut tasks = eval::read_personal_tasks(path)?;
            tasks.truncate(limit);
            return Ok((Logs::Tasks(tasks), path.clone()));
        }
        if let Some(path) = &self.impressions {
            let mut impressions = shelfrank::rank::samples::read_impressions(path)?;
            impressions.truncate(limit);
            return Ok((Logs::Impressions(impressions), path.clone()));
        }
        let (Some(q), Some(r)) = (&self.queries, &self.qrels) else {
            anyhow::bail!("--queries and --qrels go together")
        };
        let mut queries = eval::read_queries(q)?;
        queries.retain(|q| eval::in_fold(&q.qid, self.fold));
        queries.truncate(limit);
        let qrels = eval::read_qrels(r)?;
        Ok((Logs::Judgements { queries, qrels }, r.clone()))
    }
}

/// Who is searching, and how their results are reranked.
#[derive(Args)]
pub struct PersonalArgs {
    /// The shopper (personalised reranking).
    #[arg(long)]
    pub user: Option<String>,
    /// Rank as of this time (RFC 3339 or ISO 8601); default now.
    #[arg(long)]
    pub as_of: Option<String>,
    /// Reranking: auto (head if trained, else profile), ctr, profile, off.
    #[arg(long, default_value = "auto")]
    pub rerank: String,
    /// Diversity weight (MMR over embeddings), 0..1.
    #[arg(long, default_value_t = 0.0)]
    pub diversity: f32,
}

impl PersonalArgs {
    /// Sets the request's shopper, time, reranking and diversity.
    pub fn apply(&self, req: &mut SearchRequest) -> Result<()> {
        req.user = self.user.clone();
        req.as_of = self
            .as_of
            .as_deref()
            .map(|t| parse_timestamp(t).map_err(|e| anyhow::anyhow!("--as-of: {e}")))
            .transpose()?;
        req.rerank = self.rerank.parse()?;
        req.diversity = self.diversity;
        Ok(())
    }
}

/// Loads event files into an in-memory store, saying what was loaded and skipped.
pub fn load_events(engine: &Engine, files: &[PathBuf]) -> Result<EventStore> {
    let (store, loaded) = EventStore::load_files(files, &|id: &str| engine.product(id).is_some())?;
    for f in loaded {
        if f.skipped > 0 {
            eprintln!(
                "{}: skipped {} lines (first: {})",
                f.path.display(),
                f.skipped,
                f.first_problem.unwrap_or_default()
            );
        }
        eprintln!("loaded {} events from {}", f.events, f.path.display());
    }
    Ok(store)
}

/// Progress bars on standard error (or nothing with `--quiet`); messages go above
/// the bar.
pub struct Bars {
    quiet: bool,
    bar: Mutex<Option<ProgressBar>>,
}

impl Bars {
    /// Bars, unless `quiet`.
    pub fn new(quiet: bool) -> Self {
        Bars {
            quiet,
            bar: Mutex::new(None),
        }
    }

    fn with_bar(&self, f: impl FnOnce(&ProgressBar)) {
        if let Ok(guard) = self.bar.lock() {
            if let Some(bar) = guard.as_ref() {
                f(bar);
            }
        }
    }
}

impl Progress for Bars {
    fn start(&self, phase: &str, total: usize) {
        let target = if self.quiet {
            ProgressDrawTarget::hidden()
        } else {
            ProgressDrawTarget::stderr()
        };
        let bar = ProgressBar::with_draw_target(Some(total as u64), target);
        if let Ok(style) = ProgressStyle::with_template(
            "{prefix:>10} [{bar:30}] {pos}/{len} ({per_sec}, ETA {eta})",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_prefix(phase.to_string());
        if let Ok(mut guard) = self.bar.lock() {
            *guard = Some(bar);
        }
    }

    fn set(&self, done: usize) {
        self.with_bar(|b| b.set_position(done as u64));
    }

    fn message(&self, line: &str) {
        let mut shown = false;
        self.with_bar(|b| {
            if !b.is_hidden() {
                b.println(line);
                shown = true;
            }
        });
        if !shown {
            eprintln!("{line}");
        }
    }

    fn finish(&self) {
        if let Ok(mut guard) = self.bar.lock() {
            if let Some(bar) = guard.take() {
                bar.finish();
            }
        }
    }
}

/// Parses a comma-separated list of numbers, naming the flag on error.
pub fn number_list<T: std::str::FromStr>(flag: &str, list: &str) -> Result<Vec<T>> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<T>()
                .ok()
                .with_context(|| format!("{flag}: bad number {s:?}"))
        })
        .collect()
}

/// Median of `v` (0 when empty).
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}
