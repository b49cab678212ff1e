//! Evaluating personalised ranking on search tasks: for each task (a shopper searched
//! `query` at `ts` and then chose `target`), rank the candidates with the shopper's
//! profile built only from events before `ts`, and score where the target lands:
//! HR@10, MRR@100 and NDCG@10 with the target as the one relevant item.
//! `shelfrank eval --personal-queries` is this and a print.

use std::collections::HashMap;
use std::str::FromStr;

use rayon::prelude::*;
use serde::Serialize;

use super::files::PersonalTask;
use super::metrics::{hit_at_k, ndcg_at_k, reciprocal_rank_at_k, Mean};
use crate::engine::{Engine, SearchRequest, DEFAULT_RERANK_DEPTH};
use crate::error::{Error, Result};
use crate::profile::EventStore;
use crate::progress::Progress;
use crate::rank::RerankMode;

/// Rank cut-off of the hit rate and NDCG (the first page).
pub const PERSONAL_TOP: usize = 10;
/// Rank cut-off of the reciprocal rank.
pub const PERSONAL_MRR_K: usize = 100;

/// A personalised evaluation mode: how the candidates are ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PersonalMode {
    /// The name in the table: `hybrid`, `+profile` or `+ctr`.
    pub name: &'static str,
    /// The reranking it stands for.
    pub rerank: RerankMode,
}

impl FromStr for PersonalMode {
    type Err = Error;

    /// `hybrid` (not personalised), `profile` (the fallback formula) or `ctr` (the
    /// trained head); a leading `+` is allowed.
    fn from_str(s: &str) -> Result<Self> {
        let (name, rerank) = match s.trim() {
            "hybrid" => ("hybrid", RerankMode::Off),
            "profile" | "+profile" => ("+profile", RerankMode::Profile),
            "ctr" | "+ctr" => ("+ctr", RerankMode::Ctr),
            other => {
                return Err(Error::invalid(
                    "personalised eval mode",
                    format!("{other:?}; expected hybrid, profile or ctr"),
                ))
            }
        };
        Ok(PersonalMode { name, rerank })
    }
}

/// How to evaluate.
#[derive(Debug, Clone)]
pub struct PersonalOptions {
    /// The modes, in the order of the table.
    pub modes: Vec<PersonalMode>,
    /// Candidates per task (plus the shopper's own matching items).
    pub candidates: usize,
}

impl Default for PersonalOptions {
    fn default() -> Self {
        PersonalOptions {
            modes: ["hybrid", "profile"]
                .iter()
                .map(|m| m.parse().expect("a known mode"))
                .collect(),
            candidates: DEFAULT_RERANK_DEPTH,
        }
    }
}

/// One mode's figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PersonalReport {
    /// The mode's name.
    pub mode: String,
    /// Share of tasks whose target is in the top 10.
    pub hr_at_10: f64,
    /// Mean reciprocal rank of the target within the top 100 (0 beyond).
    pub mrr_at_100: f64,
    /// Mean NDCG@10 with the target as the one relevant item.
    pub ndcg_at_10: f64,
    /// Tasks evaluated.
    pub tasks: usize,
}

/// Evaluates `opts.modes` on `tasks`, with profiles from `events` (only events before
/// each task's time count). Reports the "tasks" phase to `progress`.
pub fn personal(
    engine: &Engine,
    tasks: &[PersonalTask],
    events: &EventStore,
    opts: &PersonalOptions,
    progress: &dyn Progress,
) -> Result<Vec<PersonalReport>> {
    if opts.modes.iter().any(|m| m.rerank == RerankMode::Ctr) && engine.head().is_none() {
        return Err(Error::NoHead {
            index: engine.dir().to_path_buf(),
        });
    }
    let stats = engine.item_stats(events.iter());
    let texts: Vec<&str> = tasks.iter().map(|t| t.query.as_str()).collect();
    let qvecs = engine.embed_distinct(&texts, &|_| {})?;
    progress.start("tasks", tasks.len());
    let done = std::sync::atomic::AtomicUsize::new(0);
    // Per task and mode: the ranked ids (the top PERSONAL_MRR_K).
    let ranked: Vec<Vec<Vec<String>>> = tasks
        .par_iter()
        .map(|t| -> Result<Vec<Vec<String>>> {
            let profile = engine.profile_from(&t.user, events.user_events(&t.user), t.ts);
            let mut req = SearchRequest::new(t.query.clone()).k(PERSONAL_MRR_K);
            req.candidates = Some(opts.candidates);
            req.embedding = qvecs.get(t.query.as_str()).cloned();
            let cands = engine.personal_candidates(&req, Some(&profile), &stats, t.ts)?;
            let mut out = Vec::with_capacity(opts.modes.len());
            for mode in &opts.modes {
                req.rerank = mode.rerank;
                let hits = engine.rank_candidates(&req, &cands)?;
                out.push(hits.into_iter().map(|h| h.id).collect());
            }
            progress.set(done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1);
            Ok(out)
        })
        .collect::<Result<_>>()?;
    progress.finish();
    let mut reports = Vec::with_capacity(opts.modes.len());
    for (mi, mode) in opts.modes.iter().enumerate() {
        let (mut hr, mut mrr, mut ndcg) = (Mean::new(), Mean::new(), Mean::new());
        for (t, per_mode) in tasks.iter().zip(&ranked) {
            let ids: Vec<&str> = per_mode[mi].iter().map(String::as_str).collect();
            let judged: HashMap<String, i32> = [(t.target.clone(), 1)].into_iter().collect();
            hr.add(Some(f64::from(u8::from(hit_at_k(
                &ids,
                &t.target,
                PERSONAL_TOP,
            )))));
            mrr.add(reciprocal_rank_at_k(&ids, &judged, PERSONAL_MRR_K, 1));
            ndcg.add(ndcg_at_k(&ids, &judged, PERSONAL_TOP));
        }
        reports.push(PersonalReport {
            mode: mode.name.to_string(),
            hr_at_10: hr.value().unwrap_or(0.0),
            mrr_at_100: mrr.value().unwrap_or(0.0),
            ndcg_at_10: ndcg.value().unwrap_or(0.0),
            tasks: tasks.len(),
        });
    }
    Ok(reports)
}

/// The markdown table of personalised reports.
pub fn personal_table(reports: &[PersonalReport]) -> String {
    let mut out = String::from(
        "| mode | HR@10 | MRR@100 | NDCG@10 | tasks |\n| --- | ---: | ---: | ---: | ---: |\n",
    );
    for r in reports {
        out.push_str(&format!(
            "| {} | {:.4} | {:.4} | {:.4} | {} |\n",
            r.mode, r.hr_at_10, r.mrr_at_100, r.ndcg_at_10, r.tasks
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse() {
        assert_eq!(
            "+ctr".parse::<PersonalMode>().unwrap().rerank,
            RerankMode::Ctr
        );
        assert_eq!("hybrid".parse::<PersonalMode>().unwrap().name, "hybrid");
        assert!("bm25".parse::<PersonalMode>().unwrap_err().is_user_error());
    }
}
