//! Dense text encoder: a BERT sentence encoder run with candle.
//!
//! The only module that names candle. [`Encoder::load`] reads a Hugging Face model
//! directory (`config.json`, `tokenizer.json`, `model.safetensors`, optional
//! `1_Pooling/config.json` and `sentence_bert_config.json`), runs BERT on it,
//! pools the token states as the model's pooling config says and L2-normalises the
//! result, which is what sentence-transformers does for all-MiniLM-L6-v2
//! (`Transformer -> Pooling(mean) -> Normalize`).
//!
//! Two implementations of the same forward pass ([`Implementation`]): the default
//! `Fast` one (`bert.rs`: weights pre-transposed for the CPU matrix kernels, fused
//! query/key/value, fused element-wise CPU kernels in `cpu_ops.rs`) and
//! `Reference`, candle-transformers' stock `BertModel` (a port of Hugging Face's),
//! which tests hold the fast one to.
//!
//! Batches are built from texts of similar token length ([`Encoder::embed_many`]
//! sorts by length) so that little work goes into padding.

mod attention;
mod batch;
mod bert;
pub mod bf16;
mod cpu_ops;
mod device;
pub mod int8;
mod pooling;
mod precision;
#[cfg(target_arch = "x86_64")]
mod tiling;
mod tiny;
pub mod tune;

pub use batch::{QueryBatcher, MAX_QUERY_BATCH};
pub use cpu_ops::simd_level;
pub use device::{DeviceSpec, CUDA_COMPILED};
pub use pooling::Pooling;
pub use precision::Precision;
pub use tiny::create_tiny_model;

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config as BertConfig};
use rayon::prelude::*;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokenizers::{Tokenizer, TruncationParams};

use crate::error::{Error, Result};

/// Files every model directory must have.
const REQUIRED_FILES: [&str; 3] = ["config.json", "tokenizer.json", "model.safetensors"];

/// Default batch size for bulk encoding: sentence-transformers' default (32).
pub const DEFAULT_BATCH_SIZE: usize = 32;

/// Used when the model directory states no maximum sequence length: BERT's
/// position table size (512) is the hard limit; 256 is what sentence-transformers
/// uses for all-MiniLM-L6-v2.
const FALLBACK_MAX_TOKENS: usize = 256;

/// How to load an encoder.
#[derive(Debug, Clone)]
pub struct EncoderOptions {
    /// The model directory.
    pub model_dir: PathBuf,
    /// Where to run it.
    pub device: DeviceSpec,
    /// Maximum tokens per text (longer texts are truncated). `None`: the model's
    /// `sentence_bert_config.json` `max_seq_length`, else 256, never more than the
    /// model's position table.
    pub max_tokens: Option<usize>,
    /// Threads for bulk encoding ([`Encoder::embed_many`]); `None`: one per core
    /// on the CPU, one on a GPU.
    pub workers: Option<usize>,
    /// Which forward pass runs the model.
    pub implementation: Implementation,
    /// The format of weights and activations (f32 unless asked; f16/bf16 are for
    /// GPUs, int8 for CPUs, and run only with the fast implementation).
    pub precision: Precision,
    /// With [`Precision::Int8`]: the integer kernel to run instead of the fastest
    /// this CPU has (to measure or test a fallback); one the CPU lacks is an error.
    pub int8_kernel: Option<int8::Kernel>,
    /// With [`Precision::Bf16`] on the CPU: the bf16 kernel to run instead of the
    /// fastest this CPU has (every kernel gives the same bits; this measures or
    /// tests a fallback); one the CPU lacks is an error.
    pub bf16_kernel: Option<bf16::Bf16Kernel>,
}

/// Which implementation of BERT's forward pass an [`Encoder`] runs. Both compute the
/// same function of the same weights; they differ in memory layout and speed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Implementation {
    /// shelfrank's own layout (pre-transposed weights, fused query/key/value,
    /// fused element-wise CPU kernels). On a 2-core AVX-512 machine a short query
    /// takes about a fifth of the reference's time and a batch of 32 titles about
    /// 60% (criterion: 1.73 vs 9.0 ms, 87 vs 150 ms).
    #[default]
    Fast,
    /// candle-transformers' stock `BertModel`, kept to check the fast path against.
    Reference,
}

impl std::str::FromStr for Implementation {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "fast" => Ok(Implementation::Fast),
            "reference" => Ok(Implementation::Reference),
            other => Err(Error::invalid(
                "encoder implementation",
                format!("'{other}' (expected fast or reference)"),
            )),
        }
    }
}

enum Model {
    Fast(bert::FastBert),
    Reference(BertModel),
}

impl EncoderOptions {
    /// Options for `model_dir` on the CPU with the model's own token limit.
    pub fn new(model_dir: impl Into<PathBuf>) -> Self {
        EncoderOptions {
            model_dir: model_dir.into(),
            device: DeviceSpec::Cpu,
            max_tokens: None,
            workers: None,
            implementation: Implementation::default(),
            precision: Precision::default(),
            int8_kernel: None,
            bf16_kernel: None,
        }
    }
}

/// What identifies a model: recorded in an index's manifest and compared on open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelInfo {
    /// Name (the directory's name).
    pub name: String,
    /// Absolute path of the directory.
    pub path: PathBuf,
    /// Embedding dimension.
    pub dim: usize,
    /// Pooling.
    pub pooling: Pooling,
    /// Maximum tokens per text.
    pub max_tokens: usize,
    /// SHA-256 of `model.safetensors`, hex.
    pub sha256: String,
}

/// A loaded sentence encoder. Thread-safe: share one behind an `Arc`.
pub struct Encoder {
    model: Model,
    tokenizer: Tokenizer,
    device: Device,
    info: ModelInfo,
    workers: usize,
    precision: Precision,
    int8_kernel: Option<int8::Kernel>,
    /// The bf16 kernel of a bf16 encoder whose linear layers run on the CPU.
    bf16_kernel: Option<bf16::Bf16Kernel>,
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encoder")
            .field("info", &self.info)
            .field("device", &self.device)
            .finish()
    }
}

fn candle_err(e: candle_core::Error) -> Error {
    Error::Encoder(e.to_string())
}

#[derive(Deserialize)]
struct SentenceBertConfig {
    max_seq_length: Option<usize>,
}

impl Encoder {
    /// Loads the model directory named in `opts`.
    pub fn load(opts: &EncoderOptions) -> Result<Self> {
        let dir = &opts.model_dir;
        if !dir.is_dir() {
            return Err(Error::ModelNotFound {
                path: dir.clone(),
                missing: "directory".into(),
            });
        }
        for f in REQUIRED_FILES {
            if !dir.join(f).is_file() {
                return Err(Error::ModelNotFound {
                    path: dir.clone(),
                    missing: f.into(),
                });
            }
        }
        let invalid = |file: &str, reason: String| Error::InvalidModel {
            path: dir.join(file),
            reason,
        };
        let config = read_bert_config(dir)?;
        let pooling = Pooling::from_model_dir(dir)?;

        let model_limit = config.max_position_embeddings;
        let st_limit = match std::fs::read_to_string(dir.join("sentence_bert_config.json")) {
            Ok(text) => serde_json::from_str::<SentenceBertConfig>(&text)
                .ok()
                .and_then(|c| c.max_seq_length),
            Err(_) => None,
        };
        let max_tokens = opts
            .max_tokens
            .or(st_limit)
            .unwrap_or(FALLBACK_MAX_TOKENS)
            .min(model_limit);
        if max_tokens < 2 {
            return Err(Error::invalid(
                "max tokens",
                format!("{max_tokens} leaves no room for [CLS] and [SEP]"),
            ));
        }

        let mut tokenizer = Tokenizer::from_file(dir.join("tokenizer.json"))
            .map_err(|e| invalid("tokenizer.json", e.to_string()))?;
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: max_tokens,
                ..Default::default()
            }))
            .map_err(|e| invalid("tokenizer.json", e.to_string()))?;
        tokenizer.with_padding(None);

        if opts.precision != Precision::F32 && opts.implementation == Implementation::Reference {
            return Err(Error::invalid(
                "dtype",
                format!(
                    "{} with the reference encoder; it runs in f32 only (use the fast one)",
                    opts.precision
                ),
            ));
        }
        let device = opts.device.to_candle()?;
        if opts.precision == Precision::Int8 && !device.is_cpu() {
            return Err(Error::invalid(
                "dtype",
                "int8 runs on the CPU only; on a GPU use f16 or bf16".to_string(),
            ));
        }
        let weights_path = dir.join("model.safetensors");
        let weights = std::fs::read(&weights_path).map_err(|e| Error::io(&weights_path, e))?;
        let sha256 = hex(&Sha256::digest(&weights));
        // On the CPU, int8 and bf16 apply to the linear layers' products
        // (`int8.rs`, `bf16.rs`); the model is loaded in f32 around them.
        let host_linears = device.is_cpu() && opts.implementation == Implementation::Fast;
        let dtype = match opts.precision {
            Precision::Bf16 if host_linears => DType::F32,
            p => p.dtype(),
        };
        let vb = VarBuilder::from_buffered_safetensors(weights, dtype, &device)
            .map_err(|e| invalid("model.safetensors", e.to_string()))?;
        let model = match opts.implementation {
            Implementation::Fast => bert::FastBert::load(vb, &config)
                .and_then(|m| match opts.precision {
                    Precision::Int8 | Precision::Bf16 if host_linears => m.lower_linears(
                        opts.precision,
                        bert::LowerKernels {
                            int8: opts.int8_kernel,
                            bf16: opts.bf16_kernel,
                        },
                    ),
                    _ => Ok(m),
                })
                .map(Model::Fast),
            Implementation::Reference => BertModel::load(vb, &config).map(Model::Reference),
        }
        .map_err(|e| {
            invalid(
                "model.safetensors",
                format!("weights do not fit config.json: {e}"),
            )
        })?;

        let abs = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.clone());
        let name = abs
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "model".into());
        let workers = match (&device, opts.workers) {
            (_, Some(n)) => n.max(1),
            (Device::Cpu, None) => std::thread::available_parallelism().map_or(1, |n| n.get()),
            _ => 1,
        };
        Ok(Encoder {
            model,
            tokenizer,
            workers,
            precision: opts.precision,
            int8_kernel: (opts.precision == Precision::Int8)
                .then(|| opts.int8_kernel.unwrap_or_else(int8::Kernel::detect)),
            bf16_kernel: (opts.precision == Precision::Bf16 && host_linears)
                .then(|| opts.bf16_kernel.unwrap_or_else(bf16::Bf16Kernel::detect)),
            device,
            info: ModelInfo {
                name,
                path: abs,
                dim: config.hidden_size,
                pooling,
                max_tokens,
                sha256,
            },
        })
    }

    /// The model's identity.
    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    /// The format weights and activations are held in.
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// The integer kernel of an int8 encoder (`None` at other precisions).
    pub fn int8_kernel(&self) -> Option<int8::Kernel> {
        self.int8_kernel
    }

    /// The bf16 kernel of a bf16 encoder on the CPU (`None` at other precisions
    /// and on GPUs, where bf16 runs as candle's tensors).
    pub fn bf16_kernel(&self) -> Option<bf16::Bf16Kernel> {
        self.bf16_kernel
    }

    /// The name of the kernel the lower-precision linear layers run (`None`
    /// for f32, and for half formats on GPUs): what speed reports print beside the
    /// precision.
    pub fn kernel_name(&self) -> Option<&'static str> {
        self.int8_kernel
            .map(int8::Kernel::name)
            .or(self.bf16_kernel.map(bf16::Bf16Kernel::name))
    }

    /// Where the model runs, as `cpu` or `cuda:N`.
    pub fn device_name(&self) -> String {
        match self.device.location() {
            candle_core::DeviceLocation::Cpu => "cpu".into(),
            candle_core::DeviceLocation::Cuda { gpu_id } => format!("cuda:{gpu_id}"),
            candle_core::DeviceLocation::Metal { gpu_id } => format!("metal:{gpu_id}"),
        }
    }

    /// Embedding dimension.
    pub fn dim(&self) -> usize {
        self.info.dim
    }

    /// Token ids of `text` after truncation, with `[CLS]`/`[SEP]`.
    pub fn tokenize(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self
            .tokenizer
            .encode(text, true)
            .map_err(|e| Error::Tokenizer(e.to_string()))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Embeds one text.
    pub fn embed(&self, text: &str) -> Result<Vec<f32>> {
        let mut v = self.embed_batch(&[text])?;
        v.pop().ok_or_else(|| Error::Encoder("empty output".into()))
    }

    /// Embeds `texts` in one forward pass (padded to the longest).
    pub fn embed_batch(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        let ids = texts
            .iter()
            .map(|t| self.tokenize(t))
            .collect::<Result<Vec<_>>>()?;
        self.forward_ids(&ids)
    }

    /// Embeds any number of texts in batches of at most `batch_size` texts of the
    /// same token count, so nothing is padded and a text's embedding does not
    /// depend on the texts it was batched with (bit for bit: embeddings computed
    /// in separate runs or on separate machines, such as catalog parts, agree
    /// exactly); results are in input order. `progress` is called with the
    /// number of texts done so far.
    ///
    /// Batches are spread over [`Encoder::workers`] threads, each running whole
    /// batches with single-threaded kernels (data parallelism). For bulk encoding
    /// this beats splitting every matrix product across cores, which spends much
    /// of its time waking and synchronising threads on these small matrices.
    pub fn embed_many(
        &self,
        texts: &[&str],
        batch_size: usize,
        progress: &(dyn Fn(usize) + Sync),
    ) -> Result<Vec<Vec<f32>>> {
        let batch_size = batch_size.max(1);
        // Tokenising is a few percent of a CPU encode but a large share of a GPU
        // one, where it would otherwise run on one core: spread it over the pool.
        let ids = texts
            .par_iter()
            .map(|t| self.tokenize(t))
            .collect::<Result<Vec<_>>>()?;
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.sort_by_key(|&i| ids[i].len());
        let chunks = same_length_batches(&order, |i| ids[i].len(), batch_size);
        let done = std::sync::atomic::AtomicUsize::new(0);
        let outputs = in_workers(chunks.len(), self.workers, |c| {
            let batch: Vec<Vec<u32>> = chunks[c].iter().map(|&i| ids[i].clone()).collect();
            let vecs = self.forward_ids(&batch)?;
            let n = done.fetch_add(chunks[c].len(), std::sync::atomic::Ordering::Relaxed)
                + chunks[c].len();
            progress(n);
            Ok(vecs)
        })?;
        let mut out: Vec<Vec<f32>> = vec![Vec::new(); texts.len()];
        for (chunk, vecs) in chunks.iter().zip(outputs) {
            for (&i, v) in chunk.iter().zip(vecs) {
                out[i] = v;
            }
        }
        Ok(out)
    }

    /// Threads used by [`Encoder::embed_many`].
    pub fn workers(&self) -> usize {
        self.workers
    }

    /// Runs the model on pre-tokenised inputs, padding to the longest.
    fn forward_ids(&self, ids: &[Vec<u32>]) -> Result<Vec<Vec<f32>>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let batch = ids.len();
        let seq = ids.iter().map(Vec::len).max().unwrap_or(0).max(1);
        let mut flat_ids = vec![0u32; batch * seq];
        let mut flat_mask = vec![0u32; batch * seq];
        for (b, row) in ids.iter().enumerate() {
            flat_ids[b * seq..b * seq + row.len()].copy_from_slice(row);
            for m in &mut flat_mask[b * seq..b * seq + row.len()] {
                *m = 1;
            }
        }
        let run = || -> candle_core::Result<Vec<Vec<f32>>> {
            let input = Tensor::from_vec(flat_ids, (batch, seq), &self.device)?;
            let mask = Tensor::from_vec(flat_mask, (batch, seq), &self.device)?;
            let hidden = match &self.model {
                Model::Fast(model) => model.forward(&input, &mask)?,
                Model::Reference(model) => {
                    model.forward(&input, &input.zeros_like()?, Some(&mask))?
                }
            };
            // Pooled in f32 whatever the model's format.
            let pooled = self
                .info
                .pooling
                .apply(&hidden.to_dtype(DType::F32)?, &mask)?;
            pooling::l2_normalize(&pooled)?.to_vec2::<f32>()
        };
        run().map_err(candle_err)
    }
}

/// Reads a model directory's `config.json` as a BERT config.
fn read_bert_config(dir: &Path) -> Result<BertConfig> {
    let path = dir.join("config.json");
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    serde_json::from_str(&text).map_err(|e| Error::InvalidModel {
        path,
        reason: format!("not a BERT config: {e}"),
    })
}

/// Splits `order` (sorted by `len`) into runs of equal `len`, each cut into
/// batches of at most `batch_size`. Padding a text to a longer batch partner
/// changes the order of the sums over positions in attention, and so the last bits
/// of its embedding; batches of one length need no padding.
fn same_length_batches(
    order: &[usize],
    len: impl Fn(usize) -> usize,
    batch_size: usize,
) -> Vec<&[usize]> {
    let mut out = Vec::with_capacity(order.len() / batch_size.max(1) + 1);
    let mut start = 0;
    while start < order.len() {
        let l = len(order[start]);
        let mut end = start + 1;
        while end < order.len() && end - start < batch_size && len(order[end]) == l {
            end += 1;
        }
        out.push(&order[start..end]);
        start = end;
    }
    out
}

/// Runs `job(0..jobs)` on `workers` threads, each with a one-thread rayon pool so
/// that candle's kernels run serially inside a job (data parallelism: for bulk
/// encoding this beats splitting every matrix product across cores, which spends
/// much of its time waking and synchronising threads on these small matrices).
/// Returns the results in job order; the first error wins.
pub(crate) fn in_workers<T: Send>(
    jobs: usize,
    workers: usize,
    job: impl Fn(usize) -> Result<T> + Sync,
) -> Result<Vec<T>> {
    let workers = workers.min(jobs).max(1);
    let next = std::sync::atomic::AtomicUsize::new(0);
    let run_worker = || -> Result<Vec<(usize, T)>> {
        let mut out = Vec::new();
        loop {
            let j = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if j >= jobs {
                break;
            }
            out.push((j, job(j)?));
        }
        Ok(out)
    };
    let results: Vec<Result<Vec<(usize, T)>>> = if workers == 1 {
        vec![run_worker()]
    } else {
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..workers)
                .map(|_| {
                    scope.spawn(
                        || match rayon::ThreadPoolBuilder::new().num_threads(1).build() {
                            Ok(pool) => pool.install(run_worker),
                            Err(e) => Err(Error::Encoder(format!("cannot start a worker: {e}"))),
                        },
                    )
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| {
                        Err(Error::Encoder("an encoder worker panicked".into()))
                    })
                })
                .collect()
        })
    };
    let mut slots: Vec<Option<T>> = (0..jobs).map(|_| None).collect();
    for r in results {
        for (j, t) in r? {
            slots[j] = Some(t);
        }
    }
    slots
        .into_iter()
        .map(|s| s.ok_or_else(|| Error::Encoder("a batch was not encoded".into())))
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The model directory used when none is given: `models/all-MiniLM-L6-v2`, where
/// `scripts/fetch-model.sh` puts it.
pub fn default_model_dir() -> PathBuf {
    PathBuf::from("models").join("all-MiniLM-L6-v2")
}

/// True when `dir` looks like a model directory (has the required files).
pub fn is_model_dir(dir: &Path) -> bool {
    REQUIRED_FILES.iter().all(|f| dir.join(f).is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cosine(a: &[f32], b: &[f32]) -> f32 {
        let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
        dot / (a.iter().map(|x| x * x).sum::<f32>() * b.iter().map(|x| x * x).sum::<f32>()).sqrt()
    }

    /// The model directories to check: the tiny fixture, and the real model where
    /// it has been fetched (CI fetches it).
    fn model_dirs() -> Vec<PathBuf> {
        let mut dirs = vec![PathBuf::from("fixtures/tiny-bert")];
        let real = default_model_dir();
        if is_model_dir(&real) {
            dirs.push(real);
        } else {
            assert!(
                std::env::var_os("SHELFRANK_REQUIRE_MODEL").is_none(),
                "SHELFRANK_REQUIRE_MODEL is set but {} is missing",
                real.display()
            );
        }
        dirs
    }

    /// The path a GPU takes (no fused CPU kernel, every step a candle operation)
    /// computes what the fused CPU path does, in batches that mix padding and none.
    #[test]
    fn the_unfused_path_matches_the_fused_one() {
        let texts = [
            "drill",
            "",
            "cordless drill with two 20V batteries and a carrying case",
            "ÉCLAIRAGE extérieur à DEL",
            "30 gal. electric water heater",
        ];
        for dir in model_dirs() {
            let fused = Encoder::load(&EncoderOptions::new(&dir)).unwrap();
            let mut unfused = Encoder::load(&EncoderOptions::new(&dir)).unwrap();
            unfused.model = match unfused.model {
                Model::Fast(m) => Model::Fast(m.without_fused_kernels()),
                Model::Reference(_) => unreachable!("the fast implementation is the default"),
            };
            // embed_many batches equal lengths only; embed_batch pads to the longest.
            let runs = [1, 2, texts.len()].map(|batch| {
                (
                    fused.embed_many(&texts, batch, &|_| {}).unwrap(),
                    unfused.embed_many(&texts, batch, &|_| {}).unwrap(),
                )
            });
            let padded = (
                fused.embed_batch(&texts).unwrap(),
                unfused.embed_batch(&texts).unwrap(),
            );
            for (a, b) in runs.into_iter().chain([padded]) {
                for ((t, x), y) in texts.iter().zip(&a).zip(&b) {
                    let diff = x
                        .iter()
                        .zip(y)
                        .map(|(p, q)| (p - q).abs())
                        .fold(0.0, f32::max);
                    assert!(diff < 1e-5, "{}: {t:?} differs by {diff}", dir.display());
                    assert!(cosine(x, y) > 0.99999);
                }
            }
        }
    }

    /// A text's embedding does not depend on what it is batched with, bit for bit,
    /// at every CPU precision (int8 and bf16 quantise and round each token's row on
    /// its own): catalog parts embedded on different machines agree with a
    /// one-run build.
    #[test]
    fn embed_many_is_independent_of_batch_partners() {
        let texts: Vec<String> = (0..60)
            .map(|i| {
                let words = [
                    "drill",
                    "cordless",
                    "brushed nickel",
                    "faucet",
                    "1/2 in.",
                    "LED",
                ];
                (0..1 + i % 9)
                    .map(|j| words[(i * 7 + j * 3) % words.len()])
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect();
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let runs = model_dirs().into_iter().flat_map(|dir| {
            [Precision::F32, Precision::Int8, Precision::Bf16].map(|p| (dir.clone(), p))
        });
        for (dir, precision) in runs {
            let mut opts = EncoderOptions::new(&dir);
            opts.precision = precision;
            let enc = Encoder::load(&opts).unwrap();
            let whole = enc.embed_many(&refs, 32, &|_| {}).unwrap();
            for batch in [1, 5, 64] {
                assert_eq!(
                    enc.embed_many(&refs, batch, &|_| {}).unwrap(),
                    whole,
                    "batch {batch}"
                );
            }
            // In two parts of interleaved texts, as a partitioned build embeds them.
            for parity in [0, 1] {
                let (idx, part_texts): (Vec<usize>, Vec<&str>) = refs
                    .iter()
                    .copied()
                    .enumerate()
                    .filter(|(i, _)| i % 2 == parity)
                    .unzip();
                let got = enc.embed_many(&part_texts, 32, &|_| {}).unwrap();
                for (i, v) in idx.into_iter().zip(got) {
                    assert_eq!(v, whole[i], "{} {precision}: {:?}", dir.display(), refs[i]);
                }
            }
            // One text alone is computed as it is in a batch.
            assert_eq!(enc.embed(refs[17]).unwrap(), whole[17]);
        }
    }
}
