//! Evaluating retrieval modes against graded judgements: every query is retrieved
//! once (both lists), then fused each way asked for, so a table of modes and fusions
//! costs one retrieval. `shelfrank eval --queries --qrels` is this and a print.

use std::path::Path;
use std::str::FromStr;
use std::time::Instant;

use rayon::prelude::*;
use serde::Serialize;

use super::files::{write_json, write_trec_run, Qrels, Query, ScoredRanking};
use super::report::{evaluate_run, markdown_table, ModeReport};
use crate::engine::{Candidates, Engine, Hit, Mode, SearchRequest, DEFAULT_RERANK_DEPTH};
use crate::error::{Error, Result};
use crate::fuse::Fusion;
use crate::profile::ItemStats;
use crate::progress::Progress;
use crate::rank::RerankMode;
use crate::store::durable::fnv1a64;

/// One evaluated configuration: a name and how it ranks from the candidate lists.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalMode {
    /// The name as given (`hybrid`, `rrf:60`, `weighted:0.7` ...).
    pub name: String,
    /// Which retrievers.
    pub mode: Mode,
    /// The fusion; `None`: the engine's default.
    pub fusion: Option<Fusion>,
    /// Hybrid retrieval reranked by the trained head.
    pub rerank: bool,
}

impl FromStr for EvalMode {
    type Err = Error;

    /// `bm25`, `dense`, `hybrid` (the engine's default fusion), `rrf[:K]`,
    /// `absolute:W` (absolute fusion, W = BM25 weight, dense = 1 - W), `weighted:W`
    /// (min-max, likewise), or `rerank`.
    fn from_str(raw: &str) -> Result<Self> {
        let raw = raw.trim();
        let (head, arg) = match raw.split_once(':') {
            Some((h, a)) => (h, Some(a)),
            None => (raw, None),
        };
        let weight = |what: &str| -> Result<f32> {
            let w: f32 = arg
                .ok_or_else(|| {
                    Error::invalid(
                        "eval mode",
                        format!("{what} needs a BM25 weight, e.g. {what}:0.7"),
                    )
                })?
                .parse()
                .map_err(|_| Error::invalid("eval mode", format!("{raw}: bad weight")))?;
            if !(0.0..=1.0).contains(&w) {
                return Err(Error::invalid(
                    "eval mode",
                    format!("{raw}: the weight must be within 0..=1"),
                ));
            }
            Ok(w)
        };
        let (mode, fusion, rerank) = match head {
            "bm25" | "dense" | "hybrid" if arg.is_none() => (head.parse()?, None, false),
            "rerank" if arg.is_none() => (Mode::Hybrid, None, true),
            "rrf" => {
                let k = match arg {
                    Some(a) => a.parse().map_err(|_| {
                        Error::invalid("eval mode", format!("{raw}: bad RRF constant"))
                    })?,
                    None => 60.0,
                };
                (Mode::Hybrid, Some(Fusion::rrf(k)), false)
            }
            "weighted" => {
                let w = weight("weighted")?;
                let fusion = Fusion::Weighted {
                    bm25: w,
                    dense: 1.0 - w,
                };
                (Mode::Hybrid, Some(fusion), false)
            }
            "absolute" => {
                let w = weight("absolute")?;
                let fusion = Fusion::Absolute {
                    bm25: w,
                    dense: 1.0 - w,
                };
                (Mode::Hybrid, Some(fusion), false)
            }
            _ => {
                return Err(Error::invalid(
                    "eval mode",
                    format!(
                        "unknown mode {raw:?}; expected bm25, dense, hybrid, rrf[:K], absolute:W, weighted:W or rerank"
                    ),
                ))
            }
        };
        Ok(EvalMode {
            name: raw.to_string(),
            mode,
            fusion,
            rerank,
        })
    }
}

/// Parses a comma-separated list of modes (at least one).
pub fn parse_modes(list: &str) -> Result<Vec<EvalMode>> {
    let modes = list
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::parse)
        .collect::<Result<Vec<EvalMode>>>()?;
    if modes.is_empty() {
        return Err(Error::invalid("eval modes", "the list names no mode"));
    }
    Ok(modes)
}

/// True when `qid` falls in `fold` (0 or 1) of the two-fold split by query id
/// (FNV-1a of the id, modulo 2); every id is in the fold `None`.
pub fn in_fold(qid: &str, fold: Option<u8>) -> bool {
    fold.is_none_or(|f| fnv1a64(qid.as_bytes()) % 2 == u64::from(f))
}

/// How to evaluate.
#[derive(Debug, Clone)]
pub struct RetrievalOptions {
    /// The modes, in the order of the table.
    pub modes: Vec<EvalMode>,
    /// Relevant for recall and MRR: grade >= this.
    pub min_grade: i32,
    /// Recall cut-off (and the depth of each run).
    pub recall_k: usize,
    /// Candidates per retriever before fusion (at least `recall_k`); `None`: the
    /// larger of `recall_k` and 100.
    pub candidates: Option<usize>,
    /// HNSW search breadth; `None`: the index's.
    pub ef: Option<usize>,
}

impl Default for RetrievalOptions {
    fn default() -> Self {
        RetrievalOptions {
            modes: vec![
                "bm25".parse().expect("a known mode"),
                "dense".parse().expect("a known mode"),
                "hybrid".parse().expect("a known mode"),
            ],
            min_grade: 3,
            recall_k: 100,
            candidates: None,
            ef: None,
        }
    }
}

/// One mode's run: its name and each query's ranking with scores.
#[derive(Debug, Clone)]
pub struct Run {
    /// The mode's name.
    pub name: String,
    /// Per query id, the ranking, best first.
    pub rankings: Vec<(String, ScoredRanking)>,
}

/// The result of [`retrieval`].
#[derive(Debug, Clone, Serialize)]
pub struct RetrievalEval {
    /// One report per mode, in the order asked.
    pub reports: Vec<ModeReport>,
    /// Queries evaluated.
    pub queries: usize,
    /// Seconds spent encoding queries.
    pub encode_secs: f64,
    /// Seconds spent retrieving (and reranking).
    pub search_secs: f64,
    /// The runs, for TREC run files.
    #[serde(skip)]
    pub runs: Vec<Run>,
}

impl RetrievalEval {
    /// The markdown table of the reports.
    pub fn table(&self) -> String {
        markdown_table(&self.reports)
    }

    /// Writes `report.json` and a TREC run file per mode (`run.NAME.txt`) into `dir`.
    pub fn write(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        for run in &self.runs {
            let file_name: String = run
                .name
                .chars()
                .map(|c| {
                    if c.is_alphanumeric() || c == '.' {
                        c
                    } else {
                        '_'
                    }
                })
                .collect();
            write_trec_run(
                &dir.join(format!("run.{file_name}.txt")),
                &file_name,
                &run.rankings,
            )?;
        }
        write_json(&dir.join("report.json"), &self.reports)?;
        Ok(())
    }
}

/// Evaluates `opts.modes` on `queries` against `qrels`: NDCG@10, Recall@`recall_k`,
/// MRR@10 per mode. Reports the "encoding" and "searching" phases to `progress`.
pub fn retrieval(
    engine: &Engine,
    queries: &[Query],
    qrels: &Qrels,
    opts: &RetrievalOptions,
    progress: &dyn Progress,
) -> Result<RetrievalEval> {
    let modes = &opts.modes;
    let wants_rerank = modes.iter().any(|m| m.rerank);
    let need_dense = modes.iter().any(|m| m.mode != Mode::Bm25);
    let need_bm25 = modes.iter().any(|m| m.mode != Mode::Dense);
    if wants_rerank && engine.head().is_none() {
        return Err(Error::NoHead {
            index: engine.dir().to_path_buf(),
        });
    }
    let depth = opts
        .candidates
        .unwrap_or(opts.recall_k.max(100))
        .max(opts.recall_k);
    let t = Instant::now();
    let embeddings: Vec<Option<Vec<f32>>> = if need_dense {
        let texts: Vec<&str> = queries.iter().map(|q| q.text.as_str()).collect();
        progress.start("encoding", texts.len());
        let e = engine.embed_queries(&texts, &|n| progress.set(n))?;
        progress.finish();
        e.into_iter().map(Some).collect()
    } else {
        vec![None; queries.len()]
    };
    let encode_secs = t.elapsed().as_secs_f64();
    let retrieval_mode = match (need_bm25, need_dense) {
        (true, true) => Mode::Hybrid,
        (false, true) => Mode::Dense,
        _ => Mode::Bm25,
    };
    let t = Instant::now();
    progress.start("searching", queries.len());
    let done = std::sync::atomic::AtomicUsize::new(0);
    let per_query: Vec<(Candidates, Option<Vec<Hit>>)> = queries
        .par_iter()
        .zip(embeddings.into_par_iter())
        .map(|(q, emb)| {
            let mut req = SearchRequest::new(q.text.clone())
                .mode(retrieval_mode)
                .k(opts.recall_k);
            req.candidates = Some(depth);
            req.ef_search = opts.ef;
            req.embedding = emb;
            let lists = engine.retrieve(&req)?;
            let reranked = if wants_rerank {
                // The serving default of a reranked request: the head over the hybrid top.
                let mut r = SearchRequest::new(q.text.clone()).k(opts.recall_k);
                r.candidates = Some(
                    opts.candidates
                        .unwrap_or(DEFAULT_RERANK_DEPTH)
                        .max(opts.recall_k),
                );
                r.embedding = req.embedding.take();
                r.rerank = RerankMode::Ctr;
                Some(engine.personalize(&r, None, &ItemStats::default(), 0)?)
            } else {
                None
            };
            progress.set(done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1);
            Ok((lists, reranked))
        })
        .collect::<Result<_>>()?;
    progress.finish();
    let search_secs = t.elapsed().as_secs_f64();
    let mut reports = Vec::with_capacity(modes.len());
    let mut runs = Vec::with_capacity(modes.len());
    for m in modes {
        let mut req = SearchRequest::new("").mode(m.mode).k(opts.recall_k);
        req.fusion = m.fusion;
        let mut ids = Vec::with_capacity(queries.len());
        let mut rankings = Vec::with_capacity(queries.len());
        for (q, (lists, reranked)) in queries.iter().zip(&per_query) {
            let hits = match (m.rerank, reranked) {
                (true, Some(hits)) => hits.clone(),
                _ => engine.fuse(&req, lists),
            };
            ids.push((q.qid.clone(), hits.iter().map(|h| h.id.clone()).collect()));
            rankings.push((
                q.qid.clone(),
                hits.iter()
                    .map(|h| (h.id.clone(), f64::from(h.score)))
                    .collect(),
            ));
        }
        reports.push(evaluate_run(
            &m.name,
            &ids,
            qrels,
            opts.recall_k,
            opts.min_grade,
        ));
        runs.push(Run {
            name: m.name.clone(),
            rankings,
        });
    }
    Ok(RetrievalEval {
        reports,
        queries: queries.len(),
        encode_secs,
        search_secs,
        runs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_and_bad_ones_are_clear() {
        let m = parse_modes("bm25, rrf:30,weighted:0.6,rerank,absolute:0.4").unwrap();
        assert_eq!(m.len(), 5);
        assert_eq!(
            m[4].fusion,
            Some(Fusion::Absolute {
                bm25: 0.4,
                dense: 1.0 - 0.4
            })
        );
        assert_eq!(m[1].fusion, Some(Fusion::rrf(30.0)));
        assert_eq!(
            m[2].fusion,
            Some(Fusion::Weighted {
                bm25: 0.6,
                dense: 1.0 - 0.6
            })
        );
        assert!(m[3].rerank);
        for bad in ["", "fuzzy", "weighted", "weighted:1.5", "rrf:x", "bm25:1"] {
            let e = parse_modes(bad).unwrap_err();
            assert!(e.is_user_error(), "{bad}: {e}");
        }
    }

    #[test]
    fn folds_split_ids_in_two() {
        let ids: Vec<String> = (0..200).map(|i| format!("q{i}")).collect();
        let zero = ids.iter().filter(|q| in_fold(q, Some(0))).count();
        let one = ids.iter().filter(|q| in_fold(q, Some(1))).count();
        assert_eq!(zero + one, 200);
        assert!((60..140).contains(&zero), "{zero}");
        assert!(ids.iter().all(|q| in_fold(q, None)));
    }
}
