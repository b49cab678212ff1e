//! `shelfrank search`: one query, printed as a table of hits with their scores, or JSON.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;

use shelfrank::rank::features::contributions_by_group;
use shelfrank::{Engine, Filters, Fusion, Hit, Mode, SearchRequest};

use super::{ModelArgs, PersonalArgs, DEFAULT_INDEX};

#[derive(Args)]
pub struct SearchArgs {
    /// The query text.
    query: String,
    /// Index directory.
    #[arg(long, default_value = DEFAULT_INDEX)]
    index: PathBuf,
    #[command(flatten)]
    model: ModelArgs,
    /// bm25, dense or hybrid.
    #[arg(long, default_value = "hybrid")]
    mode: String,
    /// Number of hits.
    #[arg(short, long, default_value_t = 10)]
    k: usize,
    /// Category prefix filter, e.g. "Bath > Faucets".
    #[arg(long)]
    category: Option<String>,
    /// Brand filter (case-insensitive).
    #[arg(long)]
    brand: Option<String>,
    /// Minimum price.
    #[arg(long, allow_negative_numbers = true)]
    min_price: Option<f64>,
    /// Maximum price.
    #[arg(long, allow_negative_numbers = true)]
    max_price: Option<f64>,
    /// Attribute filter KEY=VALUE (repeatable).
    #[arg(long = "attr")]
    attrs: Vec<String>,
    #[command(flatten)]
    fusion: FusionArgs,
    #[command(flatten)]
    personal: PersonalArgs,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct FusionArgs {
    /// Fusion for hybrid mode: absolute, weighted (min-max) or rrf (default: the
    /// engine's default, absolute 0.5/0.5).
    #[arg(long)]
    fusion: Option<String>,
    /// RRF rank constant.
    #[arg(long, default_value_t = 60.0)]
    rrf_k: f32,
    /// Weight of BM25 (all fusions; default 0.5, RRF 1).
    #[arg(long)]
    bm25_weight: Option<f32>,
    /// Weight of the dense score (all fusions; default 0.5, RRF 1).
    #[arg(long)]
    dense_weight: Option<f32>,
}

impl FusionArgs {
    fn fusion(&self) -> Result<Option<Fusion>> {
        let Some(kind) = &self.fusion else {
            if self.bm25_weight.is_some() || self.dense_weight.is_some() {
                bail!("--bm25-weight/--dense-weight need --fusion absolute, weighted or rrf");
            }
            return Ok(None);
        };
        Ok(Some(match kind.as_str() {
            "rrf" => Fusion::Rrf {
                k: self.rrf_k,
                bm25_weight: self.bm25_weight.unwrap_or(1.0),
                dense_weight: self.dense_weight.unwrap_or(1.0),
            },
            "absolute" => Fusion::Absolute {
                bm25: self.bm25_weight.unwrap_or(0.5),
                dense: self.dense_weight.unwrap_or(0.5),
            },
            "weighted" => Fusion::Weighted {
                bm25: self.bm25_weight.unwrap_or(0.5),
                dense: self.dense_weight.unwrap_or(0.5),
            },
            other => bail!("unknown fusion {other:?}; expected absolute, weighted or rrf"),
        }))
    }
}

impl SearchArgs {
    fn filters(&self) -> Result<Filters> {
        let mut f = Filters {
            category_prefix: self.category.as_deref().map(Filters::category),
            brand: self.brand.clone(),
            min_price: self.min_price,
            max_price: self.max_price,
            attributes: Vec::new(),
        };
        for kv in &self.attrs {
            let (k, v) = kv
                .split_once('=')
                .with_context(|| format!("--attr {kv:?}: expected KEY=VALUE"))?;
            f.attributes
                .push((k.trim().to_string(), v.trim().to_string()));
        }
        Ok(f)
    }
}

pub fn run(a: SearchArgs) -> Result<()> {
    let mode: Mode = a.mode.parse()?;
    let engine = a
        .model
        .open(&a.index, mode != Mode::Bm25 || a.personal.user.is_some())?;
    let mut req = SearchRequest::new(a.query.clone())
        .mode(mode)
        .k(a.k)
        .filters(a.filters()?);
    req.fusion = a.fusion.fusion()?;
    a.personal.apply(&mut req)?;
    let t = Instant::now();
    let hits = engine.search(&req)?;
    let ms = t.elapsed().as_secs_f64() * 1000.0;
    if a.json {
        let doc = serde_json::json!({
            "query": a.query,
            "mode": mode.name(),
            "hits": hits_json(&engine, &hits),
        });
        outln!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(());
    }
    outln!(
        "{} hits for {:?} ({}, {:.1} ms)",
        hits.len(),
        a.query,
        mode.name(),
        ms
    );
    print_table(&engine, &hits)?;
    Ok(())
}

/// Prints hits as a table: score, each retriever's score and rank, title, id, and
/// for a personalised ranking the head's probability, the profile term, and how far
/// the query, the shopper's history and popularity each moved the head's score.
pub fn print_table(engine: &Engine, hits: &[Hit]) -> Result<()> {
    outln!(
        "{:>3}  {:>8}  {:<14} {:<14} {:<48} id",
        "#",
        "score",
        "bm25",
        "dense",
        "title"
    );
    for (i, h) in hits.iter().enumerate() {
        let title: String = engine
            .product(&h.id)
            .map(|p| p.title.chars().take(48).collect())
            .unwrap_or_default();
        let mut personal = String::new();
        if let Some(c) = h.breakdown.ctr {
            personal.push_str(&format!("  ctr={c:.3}"));
        }
        if let Some(p) = h.breakdown.profile {
            personal.push_str(&format!("  profile={p:.3}"));
        }
        let why = contributions_by_group(&h.breakdown.contributions);
        if !why.is_empty() {
            let parts: Vec<String> = why
                .iter()
                .map(|(group, c)| format!("{} {c:+.2}", group.name()))
                .collect();
            personal.push_str(&format!("  why: {}", parts.join(", ")));
        }
        outln!(
            "{:>3}  {:>8.4}  {:<14} {:<14} {:<48} {}{}",
            i + 1,
            h.score,
            score_and_rank(h.breakdown.bm25, h.breakdown.bm25_rank),
            score_and_rank(h.breakdown.dense, h.breakdown.dense_rank),
            title,
            h.id,
            personal
        );
    }
    Ok(())
}

/// Hits as JSON objects: id, title, score, breakdown.
pub fn hits_json(engine: &Engine, hits: &[Hit]) -> Vec<serde_json::Value> {
    hits.iter()
        .map(|h| {
            serde_json::json!({
                "id": h.id,
                "title": engine.product(&h.id).map(|p| p.title.as_str()),
                "score": h.score,
                "breakdown": h.breakdown,
            })
        })
        .collect()
}

/// `score (#rank)`, the score alone when the product is not in that retriever's
/// list (an exact score fusion computed), or `-`.
fn score_and_rank(v: Option<f32>, rank: Option<usize>) -> String {
    match (v, rank) {
        (Some(v), Some(r)) => format!("{v:.3} (#{r})"),
        (Some(v), None) => format!("{v:.3}"),
        _ => "-".into(),
    }
}
