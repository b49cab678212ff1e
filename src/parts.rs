//! Precomputed embeddings of catalog parts: the offline build spread over many
//! machines (`shelfrank embed` per part, `shelfrank build --embeddings` to
//! assemble; `examples/spark/` runs the first on Spark executors).
//!
//! A part is a directory:
//!
//! ```text
//! part.json     header: format "shelfrank-embeddings", version 1, the model (name,
//!               sha256 of model.safetensors, dim, pooling, max_tokens, precision),
//!               rows, the catalog it came from, and bytes + CRC-32 of the two files
//! ids.jsonl     one line per row: {"id": product id, "text": FNV-1a 64 of the text
//!               the row was embedded from, 16 hex digits}
//! vectors.f32   rows x dim little-endian float32, row i for line i of ids.jsonl
//! ```
//!
//! The files are plain so that other tools can read them (a bulk load into a
//! search engine's vector field reads `ids.jsonl` and `vectors.f32` with numpy).
//! [`embed_part`] writes a part into a temporary sibling directory, fsyncs it and
//! renames it into place, so a part is whole or absent. [`assemble`] checks every
//! part against the model the index is built with (checksum, dimension, token
//! limit, one precision for all), and the parts against the catalog: every product
//! embedded exactly once, from the text it has now.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::build::embedding_text;
use crate::catalog::Product;
use crate::encoder::{Encoder, EncoderOptions, ModelInfo, Precision};
use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::store::{self, durable, FileEntry, VectorFile};

/// The `format` of `part.json`.
pub const PART_FORMAT: &str = "shelfrank-embeddings";
/// The version of the part layout this build writes and reads.
pub const PART_VERSION: u32 = 1;
/// The header's file name.
pub const HEADER: &str = "part.json";
/// The ids' file name.
pub const IDS: &str = "ids.jsonl";
/// The vectors' file name.
pub const VECTORS: &str = "vectors.f32";
/// The longest `part.json` read (it holds a few short fields).
const MAX_HEADER_BYTES: u64 = 1 << 20;

/// The model a part was embedded with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartModel {
    /// Model name.
    pub name: String,
    /// SHA-256 of `model.safetensors`, hex.
    pub sha256: String,
    /// Embedding dimension.
    pub dim: usize,
    /// Pooling (`mean` or `cls`).
    pub pooling: String,
    /// Token limit per text.
    pub max_tokens: usize,
    /// The format the encoder ran in.
    pub precision: Precision,
}

/// The content of `part.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartHeader {
    /// Always [`PART_FORMAT`].
    pub format: String,
    /// [`PART_VERSION`].
    pub version: u32,
    /// The encoder.
    pub model: PartModel,
    /// Number of rows (products).
    pub rows: usize,
    /// The catalog part the rows came from, as given.
    pub source: String,
    /// Bytes and CRC-32 of `ids.jsonl` and `vectors.f32`.
    pub files: BTreeMap<String, FileEntry>,
}

/// One row's line in `ids.jsonl`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct IdLine {
    id: String,
    text: String,
}

/// The hash of a product's embedding text recorded per row.
pub fn text_hash(p: &Product) -> String {
    format!("{:016x}", durable::fnv1a64(embedding_text(p).as_bytes()))
}

/// What [`embed_part`] wrote.
#[derive(Debug, Clone, Serialize)]
pub struct PartSummary {
    /// The part directory.
    pub dir: PathBuf,
    /// Rows written.
    pub rows: usize,
    /// Seconds spent encoding.
    pub encode_secs: f64,
}

/// Embeds `products` with the model of `opts` and writes the part to `out`, which
/// must not exist yet (its parent must). `source` is recorded as where the
/// products came from.
pub fn embed_part(
    products: &[Product],
    opts: &EncoderOptions,
    batch_size: usize,
    out: &Path,
    source: &str,
    progress: &dyn Progress,
) -> Result<PartSummary> {
    crate::catalog::check_products(products)?;
    if out.exists() {
        return Err(Error::invalid(
            "--out",
            format!(
                "{} already exists; a part is written once (remove it to embed again)",
                out.display()
            ),
        ));
    }
    let encoder = Encoder::load(opts)?;
    let info = encoder.info().clone();
    let start = std::time::Instant::now();
    let texts: Vec<String> = products.iter().map(embedding_text).collect();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    progress.start("encoding", refs.len());
    let vectors = encoder.embed_many(&refs, batch_size.max(1), &|n| progress.set(n))?;
    progress.finish();
    let encode_secs = start.elapsed().as_secs_f64();
    let model = part_model(&info, encoder.precision());
    write_part(out, &model, products, &vectors, source)?;
    Ok(PartSummary {
        dir: out.to_path_buf(),
        rows: products.len(),
        encode_secs,
    })
}

fn part_model(info: &ModelInfo, precision: Precision) -> PartModel {
    PartModel {
        name: info.name.clone(),
        sha256: info.sha256.clone(),
        dim: info.dim,
        pooling: info.pooling.name().to_string(),
        max_tokens: info.max_tokens,
        precision,
    }
}

/// Writes a part (see the module docs) through a temporary sibling directory.
pub(crate) fn write_part(
    out: &Path,
    model: &PartModel,
    products: &[Product],
    vectors: &[Vec<f32>],
    source: &str,
) -> Result<()> {
    let parent = durable::parent_dir(out);
    let name = out
        .file_name()
        .ok_or_else(|| Error::invalid("--out", format!("{} has no file name", out.display())))?;
    let tmp = parent.join(format!(
        ".{}.tmp-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
    }
    std::fs::create_dir(&tmp).map_err(|e| Error::io(&tmp, e))?;
    let result = (|| {
        let mut ids = Vec::with_capacity(products.len() * 40);
        for p in products {
            let line = IdLine {
                id: p.id.clone(),
                text: text_hash(p),
            };
            serde_json::to_writer(&mut ids, &line)
                .map_err(|e| Error::invalid("product id", e.to_string()))?;
            ids.write_all(b"\n").map_err(|e| Error::io(&tmp, e))?;
        }
        let ids_path = tmp.join(IDS);
        durable::write_synced(&ids_path, &ids)?;
        let vec_path = tmp.join(VECTORS);
        VectorFile::write(&vec_path, vectors)?;
        let mut files = BTreeMap::new();
        files.insert(IDS.to_string(), store::checksum_file(&ids_path)?);
        files.insert(VECTORS.to_string(), store::checksum_file(&vec_path)?);
        let header = PartHeader {
            format: PART_FORMAT.to_string(),
            version: PART_VERSION,
            model: model.clone(),
            rows: products.len(),
            source: source.to_string(),
            files,
        };
        let text = serde_json::to_vec_pretty(&header)
            .map_err(|e| Error::invalid("part header", e.to_string()))?;
        durable::write_synced(&tmp.join(HEADER), &text)?;
        durable::sync_dir(&tmp)?;
        if out.exists() {
            return Err(Error::invalid(
                "--out",
                format!("{} appeared while the part was written", out.display()),
            ));
        }
        std::fs::rename(&tmp, out).map_err(|e| Error::io(out, e))?;
        durable::sync_dir(&parent)?;
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    result
}

/// A part read back: its header, its rows' ids and text hashes, and its vectors.
#[derive(Debug)]
pub struct Part {
    /// The part directory.
    pub dir: PathBuf,
    /// Its header.
    pub header: PartHeader,
    /// Per row: product id and text hash.
    rows: Vec<(String, String)>,
    vectors: VectorFile,
}

impl Part {
    /// Reads and checks the part in `dir`: the header's format, version and bounds,
    /// both files' size and CRC-32, one well-formed line per row.
    pub fn open(dir: &Path) -> Result<Self> {
        let header_path = dir.join(HEADER);
        let bad = |path: &Path, reason: String| Error::Embeddings {
            path: path.to_path_buf(),
            reason,
        };
        let meta = std::fs::metadata(&header_path).map_err(|e| {
            bad(
                &header_path,
                format!("cannot read it ({e}); is this a directory written by `shelfrank embed`?"),
            )
        })?;
        if meta.len() > MAX_HEADER_BYTES {
            return Err(bad(
                &header_path,
                format!("{} bytes; too large", meta.len()),
            ));
        }
        let text = std::fs::read(&header_path).map_err(|e| Error::io(&header_path, e))?;
        let header: PartHeader = serde_json::from_slice(&text)
            .map_err(|e| bad(&header_path, format!("not a valid part header: {e}")))?;
        if header.format != PART_FORMAT || header.version != PART_VERSION {
            return Err(bad(
                &header_path,
                format!(
                    "format {:?} version {}, this shelfrank reads {PART_FORMAT:?} version {PART_VERSION}",
                    header.format, header.version
                ),
            ));
        }
        let m = &header.model;
        if !(1..=store::MAX_DIM).contains(&m.dim) {
            return Err(bad(
                &header_path,
                format!(
                    "field model.dim: {} is outside 1..={}",
                    m.dim,
                    store::MAX_DIM
                ),
            ));
        }
        if header.rows > store::MAX_PRODUCTS {
            return Err(bad(
                &header_path,
                format!(
                    "field rows: {} is above {}",
                    header.rows,
                    store::MAX_PRODUCTS
                ),
            ));
        }
        // The store's file checks name an index; here the file is a part's.
        let as_part = |e: Error| match e {
            Error::CorruptIndex { path, reason } => bad(&path, reason),
            other => other,
        };
        for name in [IDS, VECTORS] {
            let entry = header
                .files
                .get(name)
                .ok_or_else(|| bad(&header_path, format!("field files: {name} is not listed")))?;
            store::verify_file(&dir.join(name), entry).map_err(as_part)?;
        }
        let vec_path = dir.join(VECTORS);
        let vectors = VectorFile::open(&vec_path, header.rows, m.dim).map_err(as_part)?;
        let ids_path = dir.join(IDS);
        let file = std::fs::File::open(&ids_path).map_err(|e| Error::io(&ids_path, e))?;
        let mut rows = Vec::with_capacity(header.rows);
        for (i, line) in BufReader::new(file).lines().enumerate() {
            let line = line.map_err(|e| Error::io(&ids_path, e))?;
            let at = |reason: String| bad(&ids_path, format!("line {}: {reason}", i + 1));
            let row: IdLine = serde_json::from_str(&line).map_err(|e| at(e.to_string()))?;
            if row.id.is_empty() {
                return Err(at("field id: empty".into()));
            }
            if row.text.len() != 16 || !row.text.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(at(format!(
                    "field text: {:?} is not 16 hex digits",
                    row.text
                )));
            }
            rows.push((row.id, row.text));
        }
        if rows.len() != header.rows {
            return Err(bad(
                &ids_path,
                format!("{} lines, the header says {} rows", rows.len(), header.rows),
            ));
        }
        Ok(Part {
            dir: dir.to_path_buf(),
            header,
            rows,
            vectors,
        })
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// True when the part holds no row.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }
}

/// At most this many ids are named in one coverage error.
const NAMED: usize = 5;

fn first_few(ids: &[&str]) -> String {
    let shown: Vec<String> = ids.iter().take(NAMED).map(|s| format!("{s:?}")).collect();
    let more = ids.len().saturating_sub(NAMED);
    if more > 0 {
        format!("{} and {more} more", shown.join(", "))
    } else {
        shown.join(", ")
    }
}

/// The vectors of `products`, in order, from `parts`, checked against the model
/// (`info`) and each other: every part embedded by this model (same weights
/// checksum, dimension, pooling and token limit) at one precision, every product
/// in exactly one part row, embedded from its current text, and no row for a
/// product the catalog does not have. Returns the vectors and the precision.
pub fn assemble(
    products: &[Product],
    parts: &[Part],
    info: &ModelInfo,
) -> Result<(Vec<Vec<f32>>, Precision)> {
    let Some(first) = parts.first() else {
        return Err(Error::invalid("--embeddings", "no part given"));
    };
    let want = part_model(info, first.header.model.precision);
    for part in parts {
        let m = &part.header.model;
        let mismatch = |what: &str, got: String, expected: String| {
            Error::Embeddings {
            path: part.dir.join(HEADER),
            reason: format!(
                "embedded with {what} {got}, but the index is built with {expected} (model {})\nhint: embed every part with the model given to build",
                info.path.display()
            ),
        }
        };
        if m.sha256 != want.sha256 {
            return Err(mismatch(
                "model weights sha256",
                m.sha256.clone(),
                want.sha256.clone(),
            ));
        }
        if m.dim != want.dim {
            return Err(mismatch(
                "dimension",
                m.dim.to_string(),
                want.dim.to_string(),
            ));
        }
        if m.pooling != want.pooling {
            return Err(mismatch("pooling", m.pooling.clone(), want.pooling.clone()));
        }
        if m.max_tokens != want.max_tokens {
            return Err(mismatch(
                "max_tokens",
                m.max_tokens.to_string(),
                want.max_tokens.to_string(),
            ));
        }
        if m.precision != want.precision {
            return Err(Error::Embeddings {
                path: part.dir.join(HEADER),
                reason: format!(
                    "embedded at precision {}, but {} was embedded at {}; an index records one precision",
                    m.precision,
                    first.dir.display(),
                    want.precision
                ),
            });
        }
    }
    // Where each id is: (part, row).
    let total: usize = parts.iter().map(Part::len).sum();
    let mut at: HashMap<&str, (usize, usize)> = HashMap::with_capacity(total);
    for (pi, part) in parts.iter().enumerate() {
        for (ri, (id, _)) in part.rows.iter().enumerate() {
            if let Some((pj, rj)) = at.insert(id.as_str(), (pi, ri)) {
                return Err(Error::Embeddings {
                    path: part.dir.join(IDS),
                    reason: format!(
                        "line {}: product {id:?} is embedded twice (also {} line {}); every product must be in exactly one part",
                        ri + 1,
                        parts[pj].dir.join(IDS).display(),
                        rj + 1
                    ),
                });
            }
        }
    }
    let mut vectors = Vec::with_capacity(products.len());
    let mut missing: Vec<&str> = Vec::new();
    for p in products {
        let Some((pi, ri)) = at.remove(p.id.as_str()) else {
            missing.push(&p.id);
            continue;
        };
        let part = &parts[pi];
        if part.rows[ri].1 != text_hash(p) {
            return Err(Error::Embeddings {
                path: part.dir.join(IDS),
                reason: format!(
                    "line {}: product {:?} was embedded from another text than the catalog's (title, brand or category changed since); embed its part again",
                    ri + 1,
                    p.id
                ),
            });
        }
        let row = part.vectors.row(ri).ok_or_else(|| Error::Embeddings {
            path: part.dir.join(VECTORS),
            reason: format!("row {ri} is missing"),
        })?;
        vectors.push(row.to_vec());
    }
    if !missing.is_empty() {
        return Err(Error::invalid(
            "--embeddings",
            format!(
                "{} of {} catalog products are in no part: {}",
                missing.len(),
                products.len(),
                first_few(&missing)
            ),
        ));
    }
    if !at.is_empty() {
        let mut extra: Vec<(&str, (usize, usize))> = at.into_iter().collect();
        extra.sort_unstable_by_key(|&(_, pos)| pos);
        let ids: Vec<&str> = extra.iter().map(|e| e.0).collect();
        let (pi, ri) = extra[0].1;
        return Err(Error::Embeddings {
            path: parts[pi].dir.join(IDS),
            reason: format!(
                "line {}: {} embedded products are not in the catalog: {} (a part of another catalog?)",
                ri + 1,
                ids.len(),
                first_few(&ids)
            ),
        });
    }
    Ok((vectors, want.precision))
}
