//! Fine-tuning the sentence encoder on (query, product) pairs.
//!
//! The loss is the multiple-negatives ranking loss: for a batch of `B` pairs, the
//! softmax cross-entropy of each query over the batch's products (every other
//! query's product is a negative), with cosine similarities times a scale (20, as
//! sentence-transformers uses). Each query may bring one hard negative, a product
//! that ranked high for it but was judged not relevant (or shown and not clicked);
//! products unjudged for a query are never used as its negatives except in-batch,
//! and a product known to be relevant to a query is masked out of its negatives.
//!
//! Only the top `layers` BERT layers train; the frozen lower layers run once per
//! text and their output is cached, so a step costs the top layers alone. AdamW,
//! linear warm-up then linear decay, gradient clipping by global norm; batches are
//! shuffled by a seeded generator, so the same seed gives the same model on the
//! same machine. After every epoch the model is scored on the validation queries by
//! exact dense retrieval over the whole catalog (NDCG@10); the best epoch is kept,
//! and training stops when `patience` epochs bring no gain.

mod model;

use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use candle_transformers::models::bert::Config as BertConfig;
use serde::Serialize;

use super::bert::FastBert;
use super::{candle_err, in_workers, DeviceSpec, Encoder, EncoderOptions, Pooling};
use crate::error::{Error, Result};
use crate::eval::metrics::ndcg_of_gains;
use crate::progress::Progress;
use crate::rng::SplitMix64;

pub(crate) use model::TrainBert;

/// What the encoder is tuned on. Queries and products are referred to by their
/// position in [`queries`](Self::queries) and [`products`](Self::products).
#[derive(Debug, Clone, Default)]
pub struct TuneData {
    /// Query texts.
    pub queries: Vec<String>,
    /// The catalog's texts as the index embeds them; validation retrieves from all.
    pub products: Vec<String>,
    /// Training pairs: (query, a product relevant to it).
    pub pairs: Vec<(usize, usize)>,
    /// Per query (same length as `queries`, may be empty): products that ranked high
    /// for it and are known not to be relevant.
    pub hard_negatives: Vec<Vec<usize>>,
    /// Per query (same length as `queries`): every product known to be relevant to
    /// it, never used as its negative.
    pub positives: Vec<Vec<usize>>,
    /// Validation queries with their judged products and gains.
    pub validation: Vec<(usize, Vec<(usize, f64)>)>,
}

/// How to tune.
#[derive(Debug, Clone, Serialize)]
pub struct TuneOptions {
    /// Top BERT layers trained (the rest frozen).
    pub layers: usize,
    /// Pairs per batch.
    pub batch_size: usize,
    /// Upper bound on epochs.
    pub epochs: usize,
    /// Peak learning rate.
    pub learning_rate: f64,
    /// Fraction of the steps spent warming the learning rate up from 0.
    pub warmup: f64,
    /// AdamW weight decay.
    pub weight_decay: f64,
    /// Gradients are scaled down to this global L2 norm when above it.
    pub max_grad_norm: f64,
    /// Similarity scale of the loss.
    pub scale: f64,
    /// Epochs without validation gain before stopping.
    pub patience: usize,
    /// At most this many pairs of one query per epoch (chosen at random each epoch).
    pub pairs_per_query: usize,
    /// Seed of the batch order and the hard-negative choice.
    pub seed: u64,
    /// Cut-off of the validation NDCG.
    pub eval_k: usize,
    /// Where to run.
    #[serde(skip)]
    pub device: DeviceSpec,
}

impl Default for TuneOptions {
    fn default() -> Self {
        TuneOptions {
            layers: 2,
            batch_size: 64,
            epochs: 1,
            learning_rate: 5e-5,
            warmup: 0.1,
            weight_decay: 0.01,
            max_grad_norm: 1.0,
            scale: 20.0,
            patience: 1,
            pairs_per_query: 16,
            seed: 42,
            eval_k: 10,
            device: DeviceSpec::Cpu,
        }
    }
}

/// One epoch of training.
#[derive(Debug, Clone, Serialize)]
pub struct EpochReport {
    /// 1-based.
    pub epoch: usize,
    /// Mean training loss.
    pub loss: f64,
    /// Validation NDCG after it.
    pub validation_ndcg: f64,
    /// Seconds (training and validation).
    pub seconds: f64,
}

/// What tuning did.
#[derive(Debug, Clone, Serialize)]
pub struct TuneReport {
    /// Validation NDCG@k of the base model.
    pub base_ndcg: f64,
    /// Validation NDCG@k of the model kept (the best epoch, or the base).
    pub tuned_ndcg: f64,
    /// The epoch kept (0: none beat the base).
    pub best_epoch: usize,
    /// Every epoch run.
    pub epochs: Vec<EpochReport>,
    /// Optimiser steps taken.
    pub steps: usize,
    /// Training pairs, validation queries.
    pub pairs: usize,
    /// Validation queries.
    pub validation_queries: usize,
    /// Seconds computing the frozen layers' outputs.
    pub cache_seconds: f64,
    /// Seconds in all.
    pub seconds: f64,
}

/// A tuned model, not yet written anywhere.
pub struct TunedEncoder {
    model: TrainBert,
    base_dir: std::path::PathBuf,
    /// What happened.
    pub report: TuneReport,
}

/// Tunes the encoder in `model_dir` on `data` (see the [module docs](self)).
pub fn tune_encoder(
    model_dir: &Path,
    data: &TuneData,
    opts: &TuneOptions,
    progress: &dyn Progress,
) -> Result<TunedEncoder> {
    let start = Instant::now();
    check_data(data)?;
    if opts.batch_size < 2 {
        return Err(Error::invalid(
            "batch size",
            "at least 2 (in-batch negatives)",
        ));
    }
    let encoder = Encoder::load(&EncoderOptions {
        device: opts.device,
        ..EncoderOptions::new(model_dir)
    })?;
    let device = opts.device.to_candle()?;
    let config = super::read_bert_config(model_dir)?;
    let pooling = Pooling::from_model_dir(model_dir)?;
    let weights = model_dir.join("model.safetensors");
    let model = TrainBert::load(&weights, &config, pooling, opts.layers, &device).map_err(|e| {
        Error::InvalidModel {
            path: weights.clone(),
            reason: e.to_string(),
        }
    })?;

    // The frozen layers' outputs, once per text, by the fast inference path.
    let cache_start = Instant::now();
    let needed_queries: Vec<usize> = {
        let mut q: Vec<usize> = data
            .pairs
            .iter()
            .map(|p| p.0)
            .chain(data.validation.iter().map(|v| v.0))
            .collect();
        q.sort_unstable();
        q.dedup();
        q
    };
    let frozen = Frozen {
        fast: fast_model(&model, &config, &device)?,
        encoder: &encoder,
        device: &device,
        first: model.first_trainable(),
        hidden: model.hidden(),
    };
    progress.start("frozen layers", data.products.len() + needed_queries.len());
    let done = AtomicUsize::new(0);
    let query_states = frozen.lower_states(&data.queries, &needed_queries, progress, &done)?;
    let all_products: Vec<usize> = (0..data.products.len()).collect();
    let product_states = frozen.lower_states(&data.products, &all_products, progress, &done)?;
    progress.finish();
    let cache_seconds = cache_start.elapsed().as_secs_f64();
    let states = States {
        queries: query_states,
        products: product_states,
        hidden: model.hidden(),
    };

    let validate = |model: &TrainBert, label: &str| -> Result<f64> {
        let frozen = Frozen {
            fast: fast_model(model, &config, &device)?,
            ..frozen
        };
        frozen.validation_ndcg(&states, data, opts.eval_k, pooling, progress, label)
    };
    let base_ndcg = validate(&model, "validating the base model")?;
    progress.message(&format!(
        "base model: validation NDCG@{} {base_ndcg:.4} ({} queries)",
        opts.eval_k,
        data.validation.len()
    ));

    let mut rng = SplitMix64::new(opts.seed);
    let mut optimiser = AdamW::new(
        model.vars(),
        ParamsAdamW {
            lr: opts.learning_rate,
            weight_decay: opts.weight_decay,
            ..ParamsAdamW::default()
        },
    )
    .map_err(candle_err)?;
    let batches_per_epoch =
        pairs_per_epoch(&data.pairs, opts.pairs_per_query).div_ceil(opts.batch_size);
    let total_steps = (batches_per_epoch * opts.epochs).max(1);
    let warmup_steps = (total_steps as f64 * opts.warmup).round() as usize;
    let positives: Vec<HashSet<usize>> = data
        .positives
        .iter()
        .map(|p| p.iter().copied().collect())
        .collect();
    let mut step = 0;
    // The kept weights: the base's until an epoch beats it.
    let mut best = (base_ndcg, 0usize, model.snapshot().map_err(candle_err)?);
    let mut epochs = Vec::new();
    let mut stale = 0;
    for epoch in 1..=opts.epochs {
        let epoch_start = Instant::now();
        let batches = make_batches(&data.pairs, opts.batch_size, opts.pairs_per_query, &mut rng);
        progress.start(&format!("epoch {epoch}/{}", opts.epochs), batches.len());
        let mut loss_sum = 0.0;
        for (b, batch) in batches.iter().enumerate() {
            let lr = learning_rate(opts.learning_rate, step, warmup_steps, total_steps);
            optimiser.set_learning_rate(lr);
            let loss = train_step(
                &model,
                &states,
                batch,
                data,
                &positives,
                opts,
                &mut rng,
                &device,
                &mut optimiser,
            )?;
            if !loss.is_finite() {
                return Err(Error::invalid(
                    "training",
                    format!("the loss became {loss} at step {step}; try a lower --lr"),
                ));
            }
            loss_sum += loss;
            step += 1;
            progress.set(b + 1);
            if (b + 1) % 10 == 0 || b + 1 == batches.len() {
                progress.message(&format!(
                    "epoch {epoch} step {}/{}: loss {:.4} (mean {:.4}), lr {lr:.2e}",
                    b + 1,
                    batches.len(),
                    loss,
                    loss_sum / (b + 1) as f64
                ));
            }
        }
        progress.finish();
        let ndcg = validate(&model, &format!("validating epoch {epoch}"))?;
        let report = EpochReport {
            epoch,
            loss: loss_sum / batches.len().max(1) as f64,
            validation_ndcg: ndcg,
            seconds: epoch_start.elapsed().as_secs_f64(),
        };
        progress.message(&format!(
            "epoch {epoch}: mean loss {:.4}, validation NDCG@{} {ndcg:.4} (base {base_ndcg:.4}), {:.0}s",
            report.loss, opts.eval_k, report.seconds
        ));
        epochs.push(report);
        if ndcg > best.0 {
            best = (ndcg, epoch, model.snapshot().map_err(candle_err)?);
            stale = 0;
        } else {
            stale += 1;
            if stale >= opts.patience.max(1) {
                break;
            }
        }
    }
    // Keep the best epoch; when none beat the base, that is the base.
    let (tuned_ndcg, best_epoch, snapshot) = best;
    model.restore(&snapshot).map_err(candle_err)?;
    Ok(TunedEncoder {
        model,
        base_dir: model_dir.to_path_buf(),
        report: TuneReport {
            base_ndcg,
            tuned_ndcg,
            best_epoch,
            epochs,
            steps: step,
            pairs: data.pairs.len(),
            validation_queries: data.validation.len(),
            cache_seconds,
            seconds: start.elapsed().as_secs_f64(),
        },
    })
}

impl TunedEncoder {
    /// Whether the kept model beats the base on the validation queries.
    pub fn improved(&self) -> bool {
        self.report.best_epoch > 0 && self.report.tuned_ndcg > self.report.base_ndcg
    }

    /// Writes the model as a Hugging Face / sentence-transformers directory `out`
    /// (which must not exist): the base directory's files, the tuned
    /// `model.safetensors`, and `README.md` with `card` (the model card). Written
    /// into a temporary sibling directory and renamed into place, so `out` is
    /// either absent or complete.
    pub fn save(&self, out: &Path, card: &str) -> Result<()> {
        if out.exists() {
            return Err(Error::invalid(
                "output directory",
                format!("{} exists already; choose a new one", out.display()),
            ));
        }
        let parent = crate::store::durable::parent_dir(out);
        std::fs::create_dir_all(&parent).map_err(|e| Error::io(&parent, e))?;
        let name = out
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "model".into());
        let tmp = parent.join(format!(".{name}.partial-{}", std::process::id()));
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
        }
        let result = (|| {
            copy_model_files(&self.base_dir, &tmp)?;
            let weights = tmp.join("model.safetensors");
            self.model
                .save(&weights)
                .map_err(|e| Error::invalid("model.safetensors", e.to_string()))?;
            let card_path = tmp.join("README.md");
            std::fs::write(&card_path, card).map_err(|e| Error::io(&card_path, e))?;
            crate::store::durable::sync_tree(&tmp)?;
            std::fs::rename(&tmp, out).map_err(|e| Error::io(out, e))?;
            crate::store::durable::sync_dir(&parent)?;
            Ok(())
        })();
        if result.is_err() {
            let _ = std::fs::remove_dir_all(&tmp);
        }
        result
    }
}

/// Copies a model directory's files (not its weights, nor a model card) into `to`.
fn copy_model_files(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to).map_err(|e| Error::io(to, e))?;
    for entry in std::fs::read_dir(from).map_err(|e| Error::io(from, e))? {
        let entry = entry.map_err(|e| Error::io(from, e))?;
        let path = entry.path();
        let name = entry.file_name();
        let target = to.join(&name);
        let kind = entry.file_type().map_err(|e| Error::io(&path, e))?;
        if kind.is_dir() {
            copy_model_files(&path, &target)?;
        } else if name != "model.safetensors"
            && name != "README.md"
            && !name.to_string_lossy().ends_with(".bin")
            && !name.to_string_lossy().ends_with(".onnx")
        {
            std::fs::copy(&path, &target).map_err(|e| Error::io(&path, e))?;
        }
    }
    Ok(())
}

fn check_data(data: &TuneData) -> Result<()> {
    let nq = data.queries.len();
    let np = data.products.len();
    if data.pairs.is_empty() {
        return Err(Error::invalid("training data", "no (query, product) pairs"));
    }
    if data.validation.is_empty() {
        return Err(Error::invalid(
            "training data",
            "no validation queries (every tuned model is checked on held-out queries)",
        ));
    }
    if data.hard_negatives.len() != nq || data.positives.len() != nq {
        return Err(Error::invalid(
            "training data",
            "hard_negatives and positives need one entry per query",
        ));
    }
    let bad = data.pairs.iter().any(|&(q, p)| q >= nq || p >= np)
        || data
            .hard_negatives
            .iter()
            .chain(&data.positives)
            .flatten()
            .any(|&p| p >= np)
        || data
            .validation
            .iter()
            .any(|(q, judged)| *q >= nq || judged.iter().any(|(p, _)| *p >= np));
    if bad {
        return Err(Error::invalid(
            "training data",
            "a query or product position out of range",
        ));
    }
    Ok(())
}

/// Outputs of the frozen layers: per text, `tokens x hidden` values.
struct States {
    queries: Vec<Option<Vec<f32>>>,
    products: Vec<Option<Vec<f32>>>,
    hidden: usize,
}

impl States {
    fn get<'a>(&self, of: &'a [Option<Vec<f32>>], i: usize) -> Result<&'a [f32]> {
        of.get(i)
            .and_then(Option::as_deref)
            .ok_or_else(|| Error::invalid("tuning", "a text's frozen states are missing"))
    }
}

/// A model in the fast inference layout (`bert.rs`) with the given weights.
fn fast_model(model: &TrainBert, config: &BertConfig, device: &Device) -> Result<FastBert> {
    let tensors = model.current_tensors().map_err(candle_err)?;
    let vb = candle_nn::VarBuilder::from_tensors(tensors, DType::F32, device);
    FastBert::load(vb, config).map_err(candle_err)
}

/// The no-gradient work of tuning, on the fast inference path spread over the
/// encoder's workers: the frozen layers once, the whole model for validation.
struct Frozen<'a> {
    fast: FastBert,
    encoder: &'a Encoder,
    device: &'a Device,
    /// The first trainable layer.
    first: usize,
    hidden: usize,
}

impl Frozen<'_> {
    /// Runs the frozen layers over `texts[i]` for each `i` in `which`.
    fn lower_states(
        &self,
        texts: &[String],
        which: &[usize],
        progress: &dyn Progress,
        done: &AtomicUsize,
    ) -> Result<Vec<Option<Vec<f32>>>> {
        let mut tokens: Vec<(usize, Vec<u32>)> = which
            .iter()
            .map(|&i| Ok((i, self.encoder.tokenize(&texts[i])?)))
            .collect::<Result<_>>()?;
        tokens.sort_by_key(|(_, t)| t.len());
        let chunks: Vec<&[(usize, Vec<u32>)]> = tokens.chunks(32).collect();
        let outputs = in_workers(chunks.len(), self.encoder.workers(), |c| {
            let chunk = chunks[c];
            let (ids, mask) = pad_ids(chunk.iter().map(|(_, t)| t.as_slice()), self.device)?;
            let states = self
                .fast
                .forward_lower(&ids, &mask, self.first)
                .and_then(|s| s.to_vec3::<f32>())
                .map_err(candle_err)?;
            let rows: Vec<Vec<f32>> = chunk
                .iter()
                .zip(states)
                .map(|((_, t), rows)| rows.into_iter().take(t.len()).flatten().collect())
                .collect();
            progress.set(done.fetch_add(chunk.len(), Ordering::Relaxed) + chunk.len());
            Ok(rows)
        })?;
        let mut out: Vec<Option<Vec<f32>>> = vec![None; texts.len()];
        for (chunk, rows) in chunks.iter().zip(outputs) {
            for ((i, _), r) in chunk.iter().zip(rows) {
                out[*i] = Some(r);
            }
        }
        Ok(out)
    }

    /// Embeds the texts `ids` of `of` from their frozen states with the whole model:
    /// one L2-normalised vector each, in the order of `ids`.
    fn embed(
        &self,
        states: &States,
        of: &[Option<Vec<f32>>],
        ids: &[usize],
        pooling: Pooling,
        progress: &dyn Progress,
    ) -> Result<Vec<Vec<f32>>> {
        let mut order: Vec<usize> = (0..ids.len()).collect();
        order.sort_by_key(|&i| of[ids[i]].as_ref().map_or(0, Vec::len));
        let chunks: Vec<&[usize]> = order.chunks(64).collect();
        let done = AtomicUsize::new(0);
        let outputs = in_workers(chunks.len(), self.encoder.workers(), |c| {
            let rows: Vec<&[f32]> = chunks[c]
                .iter()
                .map(|&i| states.get(of, ids[i]))
                .collect::<Result<_>>()?;
            let run = || -> candle_core::Result<Vec<Vec<f32>>> {
                let (x, mask) = pad_states(&rows, self.hidden, self.device)?;
                let hidden = self.fast.forward_upper(&x, &mask, self.first)?;
                let pooled = pooling.apply(&hidden, &mask)?;
                super::pooling::l2_normalize(&pooled)?.to_vec2::<f32>()
            };
            let out = run().map_err(candle_err)?;
            progress.set(done.fetch_add(1, Ordering::Relaxed) + 1);
            Ok(out)
        })?;
        let mut out = vec![Vec::new(); ids.len()];
        for (chunk, vecs) in chunks.iter().zip(outputs) {
            for (&i, v) in chunk.iter().zip(vecs) {
                out[i] = v;
            }
        }
        Ok(out)
    }

    /// Mean NDCG@k of the validation queries, retrieving by exact dot product from
    /// every product of the catalog.
    fn validation_ndcg(
        &self,
        states: &States,
        data: &TuneData,
        k: usize,
        pooling: Pooling,
        progress: &dyn Progress,
        label: &str,
    ) -> Result<f64> {
        let all: Vec<usize> = (0..data.products.len()).collect();
        progress.start(label, all.len().div_ceil(64));
        let products = self.embed(states, &states.products, &all, pooling, progress)?;
        progress.finish();
        let qids: Vec<usize> = data.validation.iter().map(|v| v.0).collect();
        let queries = self.embed(
            states,
            &states.queries,
            &qids,
            pooling,
            &crate::progress::Silent,
        )?;
        Ok(mean_ndcg(&queries, &products, &data.validation, k))
    }
}

/// Mean NDCG@k of `validation` (query position in `queries`' order, judged gains)
/// when each query retrieves its top `k` of `products` by dot product.
fn mean_ndcg(
    queries: &[Vec<f32>],
    products: &[Vec<f32>],
    validation: &[(usize, Vec<(usize, f64)>)],
    k: usize,
) -> f64 {
    let mut sum = 0.0;
    let mut n = 0usize;
    for (q, (_, judged)) in queries.iter().zip(validation) {
        let scores: Vec<f32> = products
            .iter()
            .map(|p| p.iter().zip(q).map(|(a, b)| a * b).sum())
            .collect();
        let gain_of = |p: usize| {
            judged
                .iter()
                .find(|(j, _)| *j == p)
                .map_or(0.0, |(_, g)| *g)
        };
        let ranked: Vec<f64> = top_k(&scores, k).into_iter().map(gain_of).collect();
        let ideal: Vec<f64> = judged.iter().map(|(_, g)| *g).collect();
        if let Some(v) = ndcg_of_gains(&ranked, &ideal, k) {
            sum += v;
            n += 1;
        }
    }
    if n == 0 {
        0.0
    } else {
        sum / n as f64
    }
}

/// Token ids padded with 0 into `batch x max_len`, and the mask.
fn pad_ids<'a>(
    seqs: impl Iterator<Item = &'a [u32]> + Clone,
    device: &Device,
) -> Result<(Tensor, Tensor)> {
    let len = seqs.clone().map(<[u32]>::len).max().unwrap_or(0).max(1);
    let mut ids = Vec::new();
    let mut mask = Vec::new();
    let mut rows = 0;
    for s in seqs {
        ids.extend_from_slice(s);
        ids.extend(std::iter::repeat_n(0, len - s.len()));
        mask.extend(std::iter::repeat_n(1u32, s.len()));
        mask.extend(std::iter::repeat_n(0u32, len - s.len()));
        rows += 1;
    }
    let ids = Tensor::from_vec(ids, (rows, len), device).map_err(candle_err)?;
    let mask = Tensor::from_vec(mask, (rows, len), device).map_err(candle_err)?;
    Ok((ids, mask))
}

/// Frozen states (`tokens x hidden` each, flat) padded with zeros into
/// `batch x max_tokens x hidden`, and the mask.
fn pad_states(
    rows: &[&[f32]],
    hidden: usize,
    device: &Device,
) -> candle_core::Result<(Tensor, Tensor)> {
    let len = rows
        .iter()
        .map(|r| r.len() / hidden)
        .max()
        .unwrap_or(0)
        .max(1);
    let mut x = vec![0f32; rows.len() * len * hidden];
    let mut mask = vec![0u32; rows.len() * len];
    for (b, r) in rows.iter().enumerate() {
        let n = r.len() / hidden;
        x[b * len * hidden..b * len * hidden + r.len()].copy_from_slice(r);
        mask[b * len..b * len + n].fill(1);
    }
    Ok((
        Tensor::from_vec(x, (rows.len(), len, hidden), device)?,
        Tensor::from_vec(mask, (rows.len(), len), device)?,
    ))
}

/// Positions of the `k` largest values, largest first (ties: lower position first).
fn top_k(row: &[f32], k: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..row.len()).collect();
    let k = k.min(row.len());
    if k == 0 {
        return Vec::new();
    }
    let by_score = |a: &usize, b: &usize| row[*b].total_cmp(&row[*a]).then(a.cmp(b));
    idx.select_nth_unstable_by(k - 1, by_score);
    idx.truncate(k);
    idx.sort_by(by_score);
    idx
}

/// Learning rate at `step`: linear warm-up to `peak` over `warmup` steps, then
/// linear decay to 0 at `total`.
fn learning_rate(peak: f64, step: usize, warmup: usize, total: usize) -> f64 {
    if step < warmup {
        peak * (step + 1) as f64 / warmup as f64
    } else {
        let left = total.saturating_sub(step) as f64;
        let span = total.saturating_sub(warmup).max(1) as f64;
        peak * (left / span).clamp(0.0, 1.0)
    }
}

/// How many pairs an epoch of [`make_batches`] takes: every pair of a query, up to
/// `per_query`.
fn pairs_per_epoch(pairs: &[(usize, usize)], per_query: usize) -> usize {
    let mut count = std::collections::HashMap::new();
    for &(q, _) in pairs {
        *count.entry(q).or_insert(0usize) += 1;
    }
    count.values().map(|&n| n.min(per_query.max(1))).sum()
}

/// One epoch's batches: `pairs` shuffled, at most `per_query` pairs of any one query
/// (a random choice each epoch, so that a few frequent queries do not make up the
/// epoch), cut into batches of `size`. A batch may hold a query or a product twice:
/// the loss masks every known positive of a query out of its negatives.
fn make_batches(
    pairs: &[(usize, usize)],
    size: usize,
    per_query: usize,
    rng: &mut SplitMix64,
) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..pairs.len()).collect();
    rng.shuffle(&mut order);
    let mut taken: std::collections::HashMap<usize, usize> = std::collections::HashMap::new();
    order.retain(|&i| {
        let n = taken.entry(pairs[i].0).or_insert(0);
        *n += 1;
        *n <= per_query.max(1)
    });
    order.chunks(size.max(1)).map(<[usize]>::to_vec).collect()
}

/// One optimiser step on `batch` (positions in `data.pairs`); returns the loss.
#[allow(clippy::too_many_arguments)]
fn train_step(
    model: &TrainBert,
    states: &States,
    batch: &[usize],
    data: &TuneData,
    positives: &[HashSet<usize>],
    opts: &TuneOptions,
    rng: &mut SplitMix64,
    device: &Device,
    optimiser: &mut AdamW,
) -> Result<f64> {
    let pairs: Vec<(usize, usize)> = batch.iter().map(|&i| data.pairs[i]).collect();
    let mut columns: Vec<usize> = pairs.iter().map(|p| p.1).collect();
    for &(q, _) in &pairs {
        let candidates: Vec<usize> = data.hard_negatives[q]
            .iter()
            .copied()
            .filter(|p| !positives[q].contains(p))
            .collect();
        if !candidates.is_empty() {
            columns.push(candidates[rng.below(candidates.len())]);
        }
    }
    let q_states: Vec<&[f32]> = pairs
        .iter()
        .map(|p| states.get(&states.queries, p.0))
        .collect::<Result<_>>()?;
    let p_states: Vec<&[f32]> = columns
        .iter()
        .map(|&p| states.get(&states.products, p))
        .collect::<Result<_>>()?;
    // Known positives of a query other than its own target are not its negatives.
    let mut mask = vec![0f32; pairs.len() * columns.len()];
    for (r, &(q, _)) in pairs.iter().enumerate() {
        for (c, p) in columns.iter().enumerate() {
            if c != r && positives[q].contains(p) {
                mask[r * columns.len() + c] = -1e9;
            }
        }
    }
    let mut run = || -> candle_core::Result<f64> {
        let (qx, qm) = pad_states(&q_states, states.hidden, device)?;
        let (px, pm) = pad_states(&p_states, states.hidden, device)?;
        let qe = model.upper(&qx, &qm)?;
        let pe = model.upper(&px, &pm)?;
        let mask = Tensor::from_vec(mask.clone(), (pairs.len(), columns.len()), device)?;
        let logits = ((qe.matmul(&pe.t()?)? * opts.scale)? + mask)?;
        let targets = Tensor::arange(0u32, pairs.len() as u32, device)?;
        let loss = candle_nn::loss::cross_entropy(&logits, &targets)?;
        let mut grads = loss.backward()?;
        clip_gradients(&mut grads, &model.vars(), opts.max_grad_norm)?;
        optimiser.step(&grads)?;
        loss.to_dtype(DType::F64)?.to_scalar::<f64>()
    };
    run().map_err(candle_err)
}

/// Scales `grads` of `vars` down so that their global L2 norm is at most `max`.
/// Returns the norm before clipping.
pub(crate) fn clip_gradients(
    grads: &mut candle_core::backprop::GradStore,
    vars: &[candle_core::Var],
    max: f64,
) -> candle_core::Result<f64> {
    let mut total = 0f64;
    for v in vars {
        if let Some(g) = grads.get(v.as_tensor()) {
            total += g
                .sqr()?
                .sum_all()?
                .to_dtype(DType::F64)?
                .to_scalar::<f64>()?;
        }
    }
    let norm = total.sqrt();
    if norm > max && max > 0.0 {
        let factor = max / (norm + 1e-6);
        for v in vars {
            if let Some(g) = grads.get(v.as_tensor()) {
                let scaled = (g * factor)?;
                grads.insert(v.as_tensor(), scaled);
            }
        }
    }
    Ok(norm)
}

#[cfg(test)]
mod tests;
