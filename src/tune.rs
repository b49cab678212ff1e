//! Fine-tuning data from a shop's judgements and logs, for
//! [`encoder::tune`](crate::encoder::tune).
//!
//! Pairs are (query, product text as the index embeds it, [`embedding_text`]):
//!
//! - **graded judgements**: every product judged at `min_grade` or above;
//! - **search tasks**: the item the shopper picked;
//! - **impressions**: the items clicked.
//!
//! Hard negatives are mined with care for false negatives: only products known not to
//! be relevant qualify, that is judged below `min_grade` and ranked in the current
//! index's dense top `mine_depth` for the query (judgements), or shown and not
//! clicked for that query in any impression (impressions). Search tasks name no
//! non-relevant products, so they train on in-batch negatives only.
//!
//! The validation split is by query text (a seeded hash), never by row, so no query
//! has pairs on both sides. Validation gains: the judged grade (judgements), 1 for
//! the picked or clicked items (tasks, impressions).

use std::collections::{HashMap, HashSet};

use crate::build::embedding_text;
use crate::encoder::tune::TuneData;
use crate::engine::{Engine, Mode, SearchRequest};
use crate::error::{Error, Result};
use crate::eval::{PersonalTask, Qrels, Query};
use crate::progress::Progress;
use crate::rank::samples::Impression;
use crate::store::durable::fnv1a64;

/// Where the pairs come from.
#[derive(Debug, Clone)]
pub enum TuneSource {
    /// Graded judgements (TREC qrels) of these queries.
    Judgements {
        /// The queries.
        queries: Vec<Query>,
        /// Their judgements.
        qrels: Qrels,
    },
    /// Personalised search tasks: query, then the item picked.
    Tasks(Vec<PersonalTask>),
    /// Impression logs: query, items shown, items clicked.
    Impressions(Vec<Impression>),
}

/// How to turn a source into [`TuneData`].
#[derive(Debug, Clone)]
pub struct TuneSpec {
    /// The logs.
    pub source: TuneSource,
    /// Judged relevant: grade at or above this.
    pub min_grade: i32,
    /// Share of the queries held out for validation (by query, seeded).
    pub validation: f64,
    /// Seed of the validation split.
    pub seed: u64,
    /// Depth of the dense ranking hard negatives are mined from (0: none).
    pub mine_depth: usize,
}

impl TuneSpec {
    /// Defaults for `source`: relevant from grade 3, 15% of the queries for
    /// validation, hard negatives from the dense top 30.
    pub fn new(source: TuneSource) -> Self {
        TuneSpec {
            source,
            min_grade: 3,
            validation: 0.15,
            seed: 42,
            mine_depth: 30,
        }
    }
}

/// What [`tune_data`] found, besides the data.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct TuneDataSummary {
    /// Distinct training queries.
    pub train_queries: usize,
    /// Distinct validation queries.
    pub validation_queries: usize,
    /// Training pairs.
    pub pairs: usize,
    /// Training queries with at least one hard negative.
    pub queries_with_hard_negatives: usize,
    /// Hard negatives in all.
    pub hard_negatives: usize,
    /// Log entries naming a product the index does not hold (skipped).
    pub unknown_products: usize,
}

/// Per query (by position): products known for it, with gains, relevant or not.
#[derive(Default)]
struct Known {
    query_of: HashMap<String, usize>,
    judged: Vec<HashMap<usize, f64>>,
    relevant: Vec<HashSet<usize>>,
    not_relevant: Vec<HashSet<usize>>,
}

impl Known {
    /// The position of query `text` (case and surrounding space ignored), added if new.
    fn intern(&mut self, text: &str, data: &mut TuneData) -> usize {
        let key = text.trim().to_lowercase();
        if let Some(&i) = self.query_of.get(&key) {
            return i;
        }
        data.queries.push(text.trim().to_string());
        self.judged.push(HashMap::new());
        self.relevant.push(HashSet::new());
        self.not_relevant.push(HashSet::new());
        self.query_of.insert(key, data.queries.len() - 1);
        data.queries.len() - 1
    }
}

/// Builds the tuning data for `engine`'s catalog from `spec`.
pub fn tune_data(
    engine: &Engine,
    spec: &TuneSpec,
    progress: &dyn Progress,
) -> Result<(TuneData, TuneDataSummary)> {
    if !(0.0..1.0).contains(&spec.validation) || spec.validation <= 0.0 {
        return Err(Error::invalid(
            "validation share",
            format!("{} (expected more than 0 and less than 1)", spec.validation),
        ));
    }
    let mut data = TuneData::default();
    let mut summary = TuneDataSummary::default();
    let mut position: HashMap<String, usize> = HashMap::new();
    for row in 0..engine.row_count() {
        if let Some(p) = engine.product_at(row) {
            position.insert(p.id.clone(), data.products.len());
            data.products.push(embedding_text(p));
        }
    }
    let mut known = Known::default();
    match &spec.source {
        TuneSource::Judgements { queries, qrels } => {
            for q in queries.iter().filter(|q| !q.text.trim().is_empty()) {
                let Some(grades) = qrels.get(&q.qid) else {
                    continue;
                };
                let qi = known.intern(&q.text, &mut data);
                for (id, &grade) in grades {
                    let Some(&p) = position.get(id) else {
                        summary.unknown_products += 1;
                        continue;
                    };
                    known.judged[qi].insert(p, f64::from(grade.max(0)));
                    if grade >= spec.min_grade {
                        known.relevant[qi].insert(p);
                    } else {
                        known.not_relevant[qi].insert(p);
                    }
                }
            }
        }
        TuneSource::Tasks(tasks) => {
            for t in tasks.iter().filter(|t| !t.query.trim().is_empty()) {
                let qi = known.intern(&t.query, &mut data);
                match position.get(&t.target) {
                    Some(&p) => {
                        known.judged[qi].insert(p, 1.0);
                        known.relevant[qi].insert(p);
                    }
                    None => summary.unknown_products += 1,
                }
            }
        }
        TuneSource::Impressions(impressions) => {
            for imp in impressions.iter().filter(|i| !i.query.trim().is_empty()) {
                let qi = known.intern(&imp.query, &mut data);
                let clicked: HashSet<&str> = imp.clicked.iter().map(String::as_str).collect();
                for id in &imp.shown {
                    let Some(&p) = position.get(id) else {
                        summary.unknown_products += 1;
                        continue;
                    };
                    if clicked.contains(id.as_str()) {
                        known.judged[qi].insert(p, 1.0);
                        known.relevant[qi].insert(p);
                    } else {
                        known.not_relevant[qi].insert(p);
                    }
                }
                for id in imp.clicked.iter().filter(|c| !imp.shown.contains(c)) {
                    match position.get(id) {
                        Some(&p) => {
                            known.judged[qi].insert(p, 1.0);
                            known.relevant[qi].insert(p);
                        }
                        None => summary.unknown_products += 1,
                    }
                }
            }
        }
    }
    let Known {
        judged,
        relevant,
        not_relevant,
        ..
    } = known;
    let n = data.queries.len();
    let held_out = |qi: usize| {
        let key = format!("{}\u{1f}{}", spec.seed, data.queries[qi].to_lowercase());
        (fnv1a64(key.as_bytes()) % 1_000_000) as f64 / 1_000_000.0 < spec.validation
    };
    let validation: Vec<bool> = (0..n).map(held_out).collect();
    data.hard_negatives = vec![Vec::new(); n];
    data.positives = relevant
        .iter()
        .map(|r| {
            let mut v: Vec<usize> = r.iter().copied().collect();
            v.sort_unstable();
            v
        })
        .collect();
    let mut train_queries = Vec::new();
    for qi in 0..n {
        if relevant[qi].is_empty() {
            continue;
        }
        if validation[qi] {
            let mut gains: Vec<(usize, f64)> = judged[qi].iter().map(|(&p, &g)| (p, g)).collect();
            gains.sort_unstable_by_key(|g| g.0);
            data.validation.push((qi, gains));
        } else {
            train_queries.push(qi);
            for &p in &data.positives[qi] {
                data.pairs.push((qi, p));
            }
        }
    }
    // Hard negatives: known non-relevant, and ranked high by the current model.
    let mine = matches!(spec.source, TuneSource::Judgements { .. }) && spec.mine_depth > 0;
    if mine {
        progress.start("mining hard negatives", train_queries.len());
        for (i, &qi) in train_queries.iter().enumerate() {
            if !not_relevant[qi].is_empty() {
                let req = SearchRequest::new(data.queries[qi].clone())
                    .mode(Mode::Dense)
                    .k(spec.mine_depth);
                for hit in engine.search(&req)? {
                    if let Some(&p) = position.get(&hit.id) {
                        if not_relevant[qi].contains(&p) {
                            data.hard_negatives[qi].push(p);
                        }
                    }
                }
            }
            progress.set(i + 1);
        }
        progress.finish();
    } else if matches!(spec.source, TuneSource::Impressions(_)) {
        for &qi in &train_queries {
            let mut v: Vec<usize> = not_relevant[qi]
                .iter()
                .copied()
                .filter(|p| !relevant[qi].contains(p))
                .collect();
            v.sort_unstable();
            data.hard_negatives[qi] = v;
        }
    }
    data.validation.sort_unstable_by_key(|v| v.0);
    summary.train_queries = train_queries.len();
    summary.validation_queries = data.validation.len();
    summary.pairs = data.pairs.len();
    summary.queries_with_hard_negatives =
        data.hard_negatives.iter().filter(|h| !h.is_empty()).count();
    summary.hard_negatives = data.hard_negatives.iter().map(Vec::len).sum();
    if data.pairs.is_empty() {
        return Err(Error::invalid(
            "training logs",
            "no query names a product of this index as relevant",
        ));
    }
    if data.validation.is_empty() {
        return Err(Error::invalid(
            "training logs",
            "too few queries to hold any out for validation; raise --validation or give more logs",
        ));
    }
    Ok((data, summary))
}
