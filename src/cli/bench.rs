//! `shelfrank embed-bench`: encoder throughput on catalog titles at one or more
//! batch sizes, single-query latency, and optionally the cosine agreement of the
//! chosen device and format with the CPU in f32.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Result};
use clap::Args;

use shelfrank::catalog::{self, ReadOptions};
use shelfrank::encoder::{self, DeviceSpec, Encoder, Precision};

use super::{median, number_list, ModelArgs};

#[derive(Args)]
pub struct EmbedBenchArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Catalog whose titles are encoded (JSONL with "title").
    #[arg(long)]
    catalog: PathBuf,
    /// Number of titles (the first ones of the catalog).
    #[arg(long, default_value_t = 2000)]
    limit: usize,
    /// Texts per batch; a comma-separated list measures each.
    #[arg(long, default_value_t = encoder::DEFAULT_BATCH_SIZE.to_string())]
    batch_size: String,
    /// Maximum tokens per text.
    #[arg(long, default_value_t = 64)]
    max_tokens: usize,
    /// Encoder worker threads for batches (default: one per core on the CPU, one
    /// on a GPU).
    #[arg(long)]
    workers: Option<usize>,
    /// Timed repetitions (the median is reported).
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    /// Single-query encodes for the latency figure.
    #[arg(long, default_value_t = 50)]
    queries: usize,
    /// Also embed the first N titles on the CPU in f32 and report the cosine of
    /// each to the benchmarked encoder's embedding (lowest and mean).
    #[arg(long, default_value_t = 0)]
    compare_cpu: usize,
    /// With --dtype int8: run this integer kernel (avx512vnni, avx2 or scalar)
    /// instead of the fastest the CPU has, to measure a fallback.
    #[arg(long)]
    int8_kernel: Option<String>,
    /// With --dtype bf16: run this bf16 kernel (avx512bf16, avx2 or portable)
    /// instead of the fastest the CPU has; all give the same embeddings.
    #[arg(long)]
    bf16_kernel: Option<String>,
}

pub fn run(a: EmbedBenchArgs) -> Result<()> {
    let batch_sizes: Vec<usize> = number_list("--batch-size", &a.batch_size)?;
    if batch_sizes.is_empty() || batch_sizes.contains(&0) {
        bail!("--batch-size: give one or more sizes above 0, such as 64,256,1024");
    }
    let mut opts = a.model.encoder_options()?;
    opts.max_tokens = Some(a.max_tokens);
    opts.workers = a.workers;
    if let Some(kernel) = &a.int8_kernel {
        if opts.precision != Precision::Int8 {
            bail!("--int8-kernel needs --dtype int8");
        }
        opts.int8_kernel = Some(kernel.parse()?);
    }
    if let Some(kernel) = &a.bf16_kernel {
        if opts.precision != Precision::Bf16 {
            bail!("--bf16-kernel needs --dtype bf16");
        }
        opts.bf16_kernel = Some(kernel.parse()?);
    }
    let enc = Encoder::load(&opts)?;
    let cat = catalog::read_catalog(
        &a.catalog,
        &ReadOptions {
            skip_invalid: true,
            ..ReadOptions::default()
        },
    )?;
    let titles: Vec<&str> = cat
        .products
        .iter()
        .take(a.limit)
        .map(|p| p.title.as_str())
        .collect();
    if titles.is_empty() {
        bail!("{}: no titles to encode", a.catalog.display());
    }
    outln!("machine: {}", machine());
    let format = match enc.kernel_name() {
        Some(kernel) => format!("{} ({kernel})", enc.precision()),
        None => enc.precision().to_string(),
    };
    let at = format!("{}, {format}, {} workers", enc.device_name(), enc.workers());
    for &batch in &batch_sizes {
        // Warm-up: kernels loaded, buffers sized for this batch.
        enc.embed_many(&titles[..titles.len().min(batch)], batch, &|_| {})?;
        let mut rates = Vec::new();
        for _ in 0..a.repeat.max(1) {
            let t = Instant::now();
            enc.embed_many(&titles, batch, &|_| {})?;
            rates.push(titles.len() as f64 / t.elapsed().as_secs_f64());
        }
        outln!(
            "shelfrank: {} titles, batch {batch} ({at}): {:.1} texts/s (median of {})",
            titles.len(),
            median(rates),
            a.repeat.max(1),
        );
    }
    let mut lat = Vec::new();
    for _ in 0..a.queries.max(1) {
        let t = Instant::now();
        enc.embed("rain shower head")?;
        lat.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    outln!(
        "shelfrank: single query ({at}): {:.2} ms median of {}",
        median(lat),
        a.queries.max(1)
    );
    if a.compare_cpu > 0 {
        let sample = &titles[..titles.len().min(a.compare_cpu)];
        let mut cpu_opts = opts.clone();
        cpu_opts.device = DeviceSpec::Cpu;
        cpu_opts.precision = Precision::F32;
        cpu_opts.int8_kernel = None;
        cpu_opts.bf16_kernel = None;
        cpu_opts.workers = None;
        let cpu = Encoder::load(&cpu_opts)?;
        let batch = encoder::DEFAULT_BATCH_SIZE;
        let base = cpu.embed_many(sample, batch, &|_| {})?;
        let got = enc.embed_many(sample, batch_sizes[0], &|_| {})?;
        let agreement = Agreement::of(&base, &got);
        outln!(
            "shelfrank: cosine to cpu f32 ({at}) over {} titles: lowest {:.6}, mean {:.6}",
            sample.len(),
            agreement.lowest,
            agreement.mean
        );
    }
    Ok(())
}

/// The CPU's model name, family and model, core count, the SIMD level the f32
/// kernels use and the int8 kernel, so that figures from different machines are not taken for one.
fn machine() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let field = |key: &str| {
        info.lines()
            .find(|l| l.split(':').next().map(str::trim) == Some(key))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
    };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    format!(
        "{} (family {}, model {}), {cores} cores, SIMD {}, int8 kernel {}, bf16 kernel {}",
        field("model name").unwrap_or_else(|| std::env::consts::ARCH.to_string()),
        field("cpu family").unwrap_or_else(|| "?".into()),
        field("model").unwrap_or_else(|| "?".into()),
        encoder::simd_level(),
        encoder::int8::Kernel::detect().name(),
        encoder::bf16::Bf16Kernel::detect().name()
    )
}

/// Lowest and mean cosine between paired embeddings.
struct Agreement {
    lowest: f64,
    mean: f64,
}

impl Agreement {
    fn of(a: &[Vec<f32>], b: &[Vec<f32>]) -> Agreement {
        let cosines: Vec<f64> = a.iter().zip(b).map(|(x, y)| cosine(x, y)).collect();
        Agreement {
            lowest: cosines.iter().copied().fold(f64::INFINITY, f64::min),
            mean: cosines.iter().sum::<f64>() / cosines.len().max(1) as f64,
        }
    }
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum();
    let na: f64 = a.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    if na == 0.0 || nb == 0.0 {
        return 0.0;
    }
    dot / (na * nb)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agreement_reports_the_lowest_and_mean_cosine() {
        let a = vec![vec![1.0, 0.0], vec![0.0, 1.0]];
        let b = vec![vec![2.0, 0.0], vec![1.0, 1.0]];
        let ag = Agreement::of(&a, &b);
        assert!((ag.lowest - 0.5f64.sqrt()).abs() < 1e-9);
        assert!((ag.mean - (1.0 + 0.5f64.sqrt()) / 2.0).abs() < 1e-9);
        assert_eq!(cosine(&[0.0, 0.0], &[1.0, 0.0]), 0.0);
    }
}
