//! Training data for the CTR head, from three kinds of logs, with per-sample
//! importance weights.
//!
//! Sources:
//!
//! * **Personalised search tasks** (`qid, user, ts, query, target_item`): the
//!   engine's own non-personalised top-N for the query stands for what was shown,
//!   the target for what was chosen (label 1), the rest label 0. The shopper's
//!   profile is built from events strictly before the task's `ts`.
//! * **Impression logs** (`{"user", "query", "ts", "shown": [...], "clicked":
//!   [...]}`): each shown item is a sample at its display position, label = clicked.
//! * **Graded judgements** (queries + TREC qrels): the engine's top-N, label =
//!   grade / max grade (a soft label), no shopper.
//!
//! Weights. A logged choice is observed only if the shopper examined its position,
//! so each positive is weighted by the inverse of its position's examination
//! propensity (Joachims, Swaminathan & Schnabel, "Unbiased Learning-to-Rank with
//! Biased Feedback", WSDM 2017). Propensities are estimated from the logs as the
//! choice rate per position bucket relative to position 1, or given, and clipped
//! from below at `min_propensity` so no sample dominates. Then classes are
//! re-weighted as the importance-weighting estimator `w = p(y|x) / p(y)` suggests
//! for a label-shifted sample: each class's total weight is scaled to one half, so
//! that the rare positives are not drowned by negatives.
//!
//! Validation is split by shopper (or by query for qrels), never by row, so the
//! validation AUC measures generalisation to unseen shoppers.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::head::TrainData;
use super::{Feature, FeatureVector, ScoredCandidate};
use crate::error::Result;
use crate::eval::{PersonalTask, Qrels, Query};
use crate::lines::{json_error_message, read_lines, skip_bom};
use crate::profile::events::{timestamp_value, EventError, EventErrorKind};
use crate::profile::{Event, EventStore, ItemStats, Profile};
use crate::store::durable::fnv1a64;

/// A query to find candidates for, as training sees it.
#[derive(Debug, Clone, Copy)]
pub struct CandidateQuery<'a> {
    /// What the shopper typed.
    pub text: &'a str,
    /// Its embedding, when computed already.
    pub embedding: Option<&'a [f32]>,
    /// How many candidates retrieval should return (the "shown" list).
    pub depth: usize,
}

/// What building training samples needs from an index: ids, profiles, and
/// candidates with their features for a query as of a time. [`crate::Engine`]
/// implements it; so can a test double over a few products.
pub trait CandidateSource: Sync {
    /// The row of product `id`.
    fn ord_of(&self, id: &str) -> Option<u32>;
    /// The product id in row `ord`.
    fn id_of(&self, ord: u32) -> Option<&str>;
    /// Embeddings of the distinct texts among `texts`, keyed by text (queries repeat
    /// a lot in logs); empty when the index has no encoder.
    fn embed_distinct(&self, texts: &[&str]) -> Result<HashMap<String, Vec<f32>>>;
    /// A shopper's profile from their events (sorted by time) strictly before `as_of`.
    fn profile_from(&self, user: &str, events: &[Event], as_of: i64) -> Profile;
    /// The candidates retrieval finds for `query` (for a shopper, plus their own
    /// matching past items), with features.
    fn retrieved(
        &self,
        query: &CandidateQuery<'_>,
        profile: Option<&Profile>,
        stats: &ItemStats,
        as_of: i64,
    ) -> Result<Vec<ScoredCandidate>>;
    /// The listed rows as candidates for `query`, in that order, with features
    /// (BM25 among them; list position stands for the dense rank).
    fn listed(
        &self,
        query: &CandidateQuery<'_>,
        ords: &[u32],
        profile: Option<&Profile>,
        stats: &ItemStats,
        as_of: i64,
    ) -> Result<Vec<ScoredCandidate>>;
}

/// Position buckets for propensity estimation: 1, 2, 3, 4, 5, 6-10, 11-20,
/// 21-50, 51-100, 101+. Deep positions are rare, so they share an estimate.
const BUCKET_ENDS: [usize; 10] = [1, 2, 3, 4, 5, 10, 20, 50, 100, usize::MAX];

/// The bucket of a 1-based position.
pub fn bucket(position: usize) -> usize {
    BUCKET_ENDS
        .iter()
        .position(|&end| position <= end)
        .unwrap_or(BUCKET_ENDS.len() - 1)
}

/// How training samples are built and weighted.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SampleOptions {
    /// Candidates per task/query (the "shown" list).
    pub depth: usize,
    /// Share of shoppers (or queries) held out for validation.
    pub val_fraction: f64,
    /// Inverse-propensity weighting of positives.
    pub ips: bool,
    /// Propensities per bucket (see [`bucket`]); `None`: estimated from the data.
    pub propensities: Option<Vec<f32>>,
    /// Lower clip of a propensity (so a weight is at most `1 / min_propensity`).
    pub min_propensity: f32,
    /// Re-weight classes to equal total weight.
    pub class_weights: bool,
}

impl Default for SampleOptions {
    fn default() -> Self {
        SampleOptions {
            depth: 100,
            val_fraction: 0.1,
            ips: true,
            propensities: None,
            min_propensity: 0.05,
            class_weights: true,
        }
    }
}

/// One task or query: its candidates, labels and positions.
#[derive(Debug, Clone)]
pub struct Group {
    /// Who (for the validation split): the shopper, or the query id.
    pub key: String,
    /// Features per candidate.
    pub features: Vec<FeatureVector>,
    /// Label per candidate in [0, 1].
    pub labels: Vec<f32>,
    /// 1-based display position per candidate.
    pub positions: Vec<usize>,
}

/// A weighted dataset and how it was made.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// Training part.
    pub train: TrainData,
    /// Validation part.
    pub val: TrainData,
    /// What was done, for the model card.
    pub summary: DatasetSummary,
}

/// Numbers about a dataset, printed and saved in the model card.
#[derive(Debug, Clone, Serialize)]
pub struct DatasetSummary {
    /// Groups (tasks or queries) used.
    pub groups: usize,
    /// Groups whose chosen item was not among the candidates and was added.
    pub targets_added: usize,
    /// Samples in training / validation.
    pub train_samples: usize,
    /// Validation samples.
    pub val_samples: usize,
    /// Positives (label >= 0.5) in training.
    pub train_positives: usize,
    /// Propensity per position bucket used for IPS (after clipping), or empty.
    pub propensities: Vec<f32>,
    /// Bucket upper ends, for reading `propensities`.
    pub bucket_ends: Vec<String>,
    /// Weight applied to positives and negatives by class re-weighting.
    pub class_weights: (f32, f32),
}

fn is_val(key: &str, fraction: f64) -> bool {
    (fnv1a64(key.as_bytes()) % 10_000) as f64 / 10_000.0 < fraction
}

/// Estimates examination propensities per bucket from where positives sit:
/// choices per shown slot in each bucket, relative to bucket 1, clipped.
pub fn estimate_propensities(groups: &[Group], min: f32) -> Vec<f32> {
    let n = BUCKET_ENDS.len();
    let mut pos = vec![0f64; n];
    let mut shown = vec![0f64; n];
    for g in groups {
        for (l, p) in g.labels.iter().zip(&g.positions) {
            let b = bucket(*p);
            shown[b] += 1.0;
            pos[b] += *l as f64;
        }
    }
    let rate: Vec<f64> = (0..n)
        .map(|b| {
            if shown[b] > 0.0 {
                pos[b] / shown[b]
            } else {
                0.0
            }
        })
        .collect();
    let top = rate[0].max(f64::MIN_POSITIVE);
    rate.iter()
        .map(|r| ((r / top) as f32).clamp(min, 1.0))
        .collect()
}

/// Turns groups into weighted train/validation data.
pub fn weigh(groups: Vec<Group>, opts: &SampleOptions, targets_added: usize) -> Dataset {
    let propensities = if opts.ips {
        opts.propensities
            .clone()
            .map(|p| {
                p.into_iter()
                    .map(|x| x.clamp(opts.min_propensity, 1.0))
                    .collect()
            })
            .unwrap_or_else(|| estimate_propensities(&groups, opts.min_propensity))
    } else {
        Vec::new()
    };
    let mut train = TrainData::default();
    let mut val = TrainData::default();
    let n_groups = groups.len();
    for (gi, g) in groups.into_iter().enumerate() {
        let part = if is_val(&g.key, opts.val_fraction) {
            &mut val
        } else {
            &mut train
        };
        for ((f, l), p) in g.features.iter().zip(&g.labels).zip(&g.positions) {
            let w = if *l > 0.0 && !propensities.is_empty() {
                let b = bucket(*p).min(propensities.len() - 1);
                1.0 / propensities[b]
            } else {
                1.0
            };
            part.rows.push(f.as_slice().to_vec());
            part.labels.push(*l);
            part.weights.push(w);
            part.groups.push(gi as u64);
        }
    }
    let mut class_weights = (1.0, 1.0);
    if opts.class_weights {
        for (is_train, part) in [(true, &mut train), (false, &mut val)] {
            let (mut wp, mut wn) = (0f64, 0f64);
            for (l, w) in part.labels.iter().zip(&part.weights) {
                wp += (*l * *w) as f64;
                wn += ((1.0 - *l) * *w) as f64;
            }
            if wp > 0.0 && wn > 0.0 {
                let total = wp + wn;
                let (cp, cn) = ((0.5 * total / wp) as f32, (0.5 * total / wn) as f32);
                for (l, w) in part.labels.iter().zip(part.weights.iter_mut()) {
                    *w *= *l * cp + (1.0 - *l) * cn;
                }
                if is_train {
                    class_weights = (cp, cn);
                }
            }
        }
    }
    let summary = DatasetSummary {
        groups: n_groups,
        targets_added,
        train_samples: train.labels.len(),
        val_samples: val.labels.len(),
        train_positives: train.labels.iter().filter(|l| **l >= 0.5).count(),
        propensities,
        bucket_ends: BUCKET_ENDS
            .iter()
            .map(|e| {
                if *e == usize::MAX {
                    "inf".into()
                } else {
                    e.to_string()
                }
            })
            .collect(),
        class_weights,
    };
    Dataset {
        train,
        val,
        summary,
    }
}

fn group_from(cands: Vec<ScoredCandidate>, key: String, label: &dyn Fn(u32) -> f32) -> Group {
    let mut g = Group {
        key,
        features: Vec::with_capacity(cands.len()),
        labels: Vec::with_capacity(cands.len()),
        positions: Vec::with_capacity(cands.len()),
    };
    for (i, c) in cands.into_iter().enumerate() {
        g.labels.push(label(c.ord));
        g.positions.push(i + 1);
        g.features.push(c.features);
    }
    g
}

/// Samples from personalised search tasks, with profiles from `events` before
/// each task's time. Tasks whose target is not in the catalog are skipped.
pub fn personal_task_groups(
    source: &dyn CandidateSource,
    tasks: &[PersonalTask],
    events: &EventStore,
    stats: &ItemStats,
    opts: &SampleOptions,
    progress: &(dyn Fn(usize) + Sync),
) -> Result<(Vec<Group>, usize)> {
    let texts: Vec<&str> = tasks.iter().map(|t| t.query.as_str()).collect();
    let qvecs = source.embed_distinct(&texts)?;
    let done = std::sync::atomic::AtomicUsize::new(0);
    let out: Vec<Option<(Group, bool)>> = tasks
        .par_iter()
        .map(|t| -> Result<Option<(Group, bool)>> {
            let n = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if n.is_multiple_of(100) {
                progress(n);
            }
            let Some(target) = source.ord_of(&t.target) else {
                return Ok(None);
            };
            let ts = t.ts;
            let profile = source.profile_from(&t.user, events.user_events(&t.user), ts);
            let query = CandidateQuery {
                text: &t.query,
                embedding: qvecs.get(&t.query).map(Vec::as_slice),
                depth: opts.depth,
            };
            let mut cands = source.retrieved(&query, Some(&profile), stats, ts)?;
            let mut added = false;
            if !cands.iter().any(|c| c.ord == target) {
                // The chosen item was not in the shown list: add it, with ranks that
                // say "beyond the list" (not the 1 of a one-item list).
                let mut extra = source.listed(&query, &[target], Some(&profile), stats, ts)?;
                let beyond = 1.0 / (opts.depth as f32 + 1.0);
                for c in &mut extra {
                    let rrank = if c.fused.bm25.is_some() { beyond } else { 0.0 };
                    c.features.set(Feature::Bm25Rrank, rrank);
                    c.features.set(Feature::DenseRrank, 0.0);
                    c.features.set(Feature::Fused, 0.0);
                }
                cands.extend(extra);
                added = true;
            }
            let g = group_from(cands, t.user.clone(), &|o| {
                if o == target {
                    1.0
                } else {
                    0.0
                }
            });
            Ok(Some((g, added)))
        })
        .collect::<Result<_>>()?;
    progress(tasks.len());
    let mut groups = Vec::new();
    let mut added = 0;
    for (g, a) in out.into_iter().flatten() {
        added += a as usize;
        groups.push(g);
    }
    Ok((groups, added))
}

/// Samples from graded judgements: the engine's top-N per query, label = grade /
/// max grade.
pub fn qrels_groups(
    source: &dyn CandidateSource,
    queries: &[Query],
    qrels: &Qrels,
    opts: &SampleOptions,
    progress: &(dyn Fn(usize) + Sync),
) -> Result<Vec<Group>> {
    let max_grade = qrels
        .values()
        .flat_map(|m| m.values())
        .copied()
        .max()
        .unwrap_or(1)
        .max(1) as f32;
    let texts: Vec<&str> = queries.iter().map(|q| q.text.as_str()).collect();
    let qvecs = source.embed_distinct(&texts)?;
    let empty = ItemStats::default();
    let done = std::sync::atomic::AtomicUsize::new(0);
    let groups: Vec<Group> = queries
        .par_iter()
        .filter(|q| qrels.contains_key(&q.qid))
        .map(|q| -> Result<Group> {
            let n = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if n.is_multiple_of(100) {
                progress(n);
            }
            let judged = &qrels[&q.qid];
            let query = CandidateQuery {
                text: &q.text,
                embedding: qvecs.get(&q.text).map(Vec::as_slice),
                depth: opts.depth,
            };
            let cands = source.retrieved(&query, None, &empty, 0)?;
            Ok(group_from(cands, q.qid.clone(), &|o| {
                source
                    .id_of(o)
                    .and_then(|id| judged.get(id))
                    .map_or(0.0, |g| (*g).max(0) as f32 / max_grade)
            }))
        })
        .collect::<Result<_>>()?;
    progress(queries.len());
    Ok(groups)
}

/// One line of an impression log.
#[derive(Debug, Clone, PartialEq)]
pub struct Impression {
    /// The shopper.
    pub user: String,
    /// What they typed.
    pub query: String,
    /// When, Unix seconds.
    pub ts: i64,
    /// Item ids in display order.
    pub shown: Vec<String>,
    /// Item ids clicked.
    pub clicked: Vec<String>,
}

/// An impression line as written: `{"user", "query", "ts", "shown", "clicked"?}`, the
/// timestamp as in event logs (a string or Unix seconds).
#[derive(Deserialize)]
struct ImpressionLine {
    user: String,
    query: String,
    ts: serde_json::Value,
    shown: Vec<String>,
    #[serde(default)]
    clicked: Vec<String>,
}

/// Reads an impression log (JSONL); errors name the file, line and field.
pub fn read_impressions(path: &Path) -> std::result::Result<Vec<Impression>, EventError> {
    let name = path.display().to_string();
    let io = |line, source| {
        EventError::at(
            name.as_str(),
            line,
            None,
            EventErrorKind::Io {
                action: "read",
                source,
            },
        )
    };
    let file = std::fs::File::open(path).map_err(|source| {
        EventError::whole(
            name.as_str(),
            EventErrorKind::Io {
                action: "open",
                source,
            },
        )
    })?;
    let reader = skip_bom(file).map_err(|e| io(1, e))?;
    let mut out = Vec::new();
    read_lines(reader, io, |line, bytes| {
        let raw: ImpressionLine = serde_json::from_slice(bytes).map_err(|e| {
            EventError::at(
                name.as_str(),
                line,
                None,
                EventErrorKind::InvalidJson {
                    message: json_error_message(&e),
                },
            )
        })?;
        let ts = timestamp_value(raw.ts)
            .map_err(|kind| EventError::at(name.as_str(), line, Some("ts"), kind))?;
        out.push(Impression {
            user: raw.user,
            query: raw.query,
            ts,
            shown: raw.shown,
            clicked: raw.clicked,
        });
        Ok(())
    })?;
    Ok(out)
}

/// Samples from impressions: each known shown item at its position, label =
/// clicked. Unknown item ids are skipped and counted.
pub fn impression_groups(
    source: &dyn CandidateSource,
    imps: &[Impression],
    events: &EventStore,
    stats: &ItemStats,
) -> Result<(Vec<Group>, usize)> {
    let mut unknown = 0;
    let mut groups = Vec::new();
    for imp in imps {
        let profile = source.profile_from(&imp.user, events.user_events(&imp.user), imp.ts);
        let mut ords = Vec::new();
        let mut positions = Vec::new();
        for (i, id) in imp.shown.iter().enumerate() {
            match source.ord_of(id) {
                Some(o) => {
                    ords.push(o);
                    positions.push(i + 1);
                }
                None => unknown += 1,
            }
        }
        if ords.is_empty() {
            continue;
        }
        let query = CandidateQuery {
            text: &imp.query,
            embedding: None,
            depth: ords.len(),
        };
        let cands = source.listed(&query, &ords, Some(&profile), stats, imp.ts)?;
        let clicked: HashSet<&str> = imp.clicked.iter().map(String::as_str).collect();
        let mut g = group_from(cands, imp.user.clone(), &|o| {
            source
                .id_of(o)
                .map_or(0.0, |id| if clicked.contains(id) { 1.0 } else { 0.0 })
        });
        g.positions = positions;
        groups.push(g);
    }
    Ok((groups, unknown))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(key: &str, labels: &[f32]) -> Group {
        Group {
            key: key.into(),
            features: vec![FeatureVector::zeros(); labels.len()],
            labels: labels.to_vec(),
            positions: (1..=labels.len()).collect(),
        }
    }

    #[test]
    fn buckets() {
        assert_eq!(bucket(1), 0);
        assert_eq!(bucket(5), 4);
        assert_eq!(bucket(6), 5);
        assert_eq!(bucket(10), 5);
        assert_eq!(bucket(101), 9);
    }

    #[test]
    fn propensities_fall_with_position_and_are_clipped() {
        // Positives at position 1 in 3 groups, at position 2 in 1 group, never deeper.
        let groups = vec![
            group("a", &[1.0, 0.0, 0.0]),
            group("b", &[1.0, 0.0, 0.0]),
            group("c", &[1.0, 0.0, 0.0]),
            group("d", &[0.0, 1.0, 0.0]),
        ];
        let p = estimate_propensities(&groups, 0.05);
        assert_eq!(p[0], 1.0);
        assert!((p[1] - 1.0 / 3.0).abs() < 1e-6);
        assert_eq!(p[2], 0.05, "never chosen: clipped at the floor");
    }

    #[test]
    fn weights_balance_classes_and_split_by_key() {
        let groups: Vec<Group> = (0..200)
            .map(|i| group(&format!("user{i}"), &[1.0, 0.0, 0.0, 0.0]))
            .collect();
        let opts = SampleOptions {
            ips: false,
            ..SampleOptions::default()
        };
        let d = weigh(groups, &opts, 0);
        assert!(!d.val.labels.is_empty() && d.train.labels.len() > d.val.labels.len());
        // Every group is wholly in one part.
        assert_eq!(d.train.labels.len() % 4, 0);
        let (wp, wn): (f32, f32) = d
            .train
            .labels
            .iter()
            .zip(&d.train.weights)
            .fold((0.0, 0.0), |(p, n), (l, w)| (p + l * w, n + (1.0 - l) * w));
        assert!((wp - wn).abs() / wn < 1e-4, "{wp} vs {wn}");
    }

    #[test]
    fn ips_upweights_deep_positives() {
        let groups = vec![
            group("a", &[1.0, 0.0]),
            group("b", &[1.0, 0.0]),
            group("c", &[0.0, 1.0]),
        ];
        let opts = SampleOptions {
            class_weights: false,
            val_fraction: 0.0,
            ..SampleOptions::default()
        };
        let d = weigh(groups, &opts, 0);
        // The position-2 positive weighs 1 / (0.5 / 1.0) = 2.
        assert_eq!(d.train.weights[0], 1.0);
        assert!(
            (d.train.weights[5] - 2.0).abs() < 1e-6,
            "{:?}",
            d.train.weights
        );
    }
}
