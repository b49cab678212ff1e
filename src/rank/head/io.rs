//! Saving and loading the CTR head.
//!
//! [`CtrHead::save`] writes `ctr_head.safetensors` (the layers as `mlp.{i}.weight`
//! `[out, in]` / `mlp.{i}.bias` `[out]`, as in PyTorch's `nn.Linear`, plus `norm.mean` and
//! `norm.std`) and `ctr_head.json`, the model card: whatever the caller passes, merged with
//! `format_version`, `feature_names`, `hidden`, `normalisation` and a size + FNV-1a
//! checksum of the weights file. `normalisation` holds `mean`, `std` and `clip` (the bound on
//! standardised values, [`Z_CLIP`](super::Z_CLIP)); cards from before `clip` existed load
//! with the default bound, and their standard deviations are raised to the relative floor
//! ([`RELATIVE_STD_FLOOR`](super::RELATIVE_STD_FLOOR) x |mean|, the range being unknown);
//! heads with `clip` load verbatim. The format version stays 1: every older file still
//! loads. The weights file is named after its content
//! (`ctr_head-<FNV-1a 64, hex>.safetensors`) and written first, the card last, each through
//! a temporary file, fsync and rename. The card names its weights file, so the card is the
//! commit point: a save interrupted between the two leaves the previous card and the
//! previous weights untouched (the head in use stays loadable), and the next save removes
//! the orphaned weights file. Heads saved before content naming (`ctr_head.safetensors`,
//! or a card without `weights.file`) still load.

use std::collections::HashMap;
use std::fs;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use serde_json::{json, Map, Value};

use super::fit::{floored_std, Z_CLIP};
use super::{be, corrupt, invalid, io_err, validate_names, CtrHead, HeadError, Layer, MAX_HIDDEN};
use crate::store::durable;
use crate::store::layout::{HEAD_CARD as CARD_FILE, HEAD_WEIGHTS as WEIGHTS_FILE};

/// Start of every weights file's name (`ctr_head-<checksum>.safetensors`).
const WEIGHTS_PREFIX: &str = "ctr_head";
/// End of every weights file's name.
const WEIGHTS_SUFFIX: &str = ".safetensors";

/// Whether `name` is a weights file's name: `ctr_head.safetensors` (heads saved
/// before content naming) or `ctr_head-<16 hex digits>.safetensors`; a plain name in
/// the head's directory, never a path.
pub(crate) fn is_weights_name(name: &str) -> bool {
    if name == WEIGHTS_FILE {
        return true;
    }
    name.strip_prefix(WEIGHTS_PREFIX)
        .and_then(|rest| rest.strip_prefix('-'))
        .and_then(|rest| rest.strip_suffix(WEIGHTS_SUFFIX))
        .is_some_and(|hex| hex.len() == 16 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Version of the on-disk format written by [`CtrHead::save`]; [`CtrHead::load`] reads
/// only this version.
pub const FORMAT_VERSION: u64 = 1;

impl CtrHead {
    /// Writes `dir/ctr_head.safetensors` and `dir/ctr_head.json` (creating `dir`).
    ///
    /// The card written is `card` (a JSON object, or `null` for none) with the model's
    /// fields merged over it: `format_version`, `feature_names`, `hidden`,
    /// `normalisation: {mean, std, clip}` and `weights: {file, bytes, fnv1a64}`. Each file goes
    /// through a temporary file in `dir`, fsync and rename; the weights first, the card
    /// last (see the module docs).
    pub fn save(&self, dir: &Path, card: &Value) -> Result<(), HeadError> {
        let mut merged = match card {
            Value::Object(m) => m.clone(),
            Value::Null => Map::new(),
            other => {
                return Err(invalid(
                    "card",
                    format!("must be a JSON object or null, got {}", json_kind(other)),
                ))
            }
        };
        fs::create_dir_all(dir).map_err(io_err(dir))?;

        let bytes = safetensors::serialize(&self.tensor_map(), None).map_err(|e| {
            invalid(
                "weights",
                format!("cannot be serialised as safetensors: {e}"),
            )
        })?;
        let sum = format!("{:016x}", durable::fnv1a64(&bytes));
        let weights_name = format!("{WEIGHTS_PREFIX}-{sum}{WEIGHTS_SUFFIX}");
        durable::atomic_write(&dir.join(&weights_name), &bytes)?;
        durable::crash_point("head-weights-written");

        merged.extend(self.model_fields());
        merged.insert(
            "weights".into(),
            json!({
                "file": weights_name,
                "bytes": bytes.len(),
                "fnv1a64": sum,
            }),
        );
        let text = serde_json::to_vec_pretty(&Value::Object(merged))
            .map_err(|e| invalid("card", format!("cannot be serialised: {e}")))?;
        durable::atomic_write(&dir.join(CARD_FILE), &text)?;
        // The card now names the new weights: earlier weights files are unused. A
        // failure to remove one only leaves a file for the next save to remove.
        if let Ok(entries) = fs::read_dir(dir) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if is_weights_name(&name) && name != weights_name {
                    let _ = fs::remove_file(entry.path());
                }
            }
        }
        Ok(())
    }

    /// Reads a head written by [`CtrHead::save`].
    ///
    /// Checks the format version, that the weights file matches the card's size and
    /// checksum (when the card records them), that every tensor is present, `f32`, finite
    /// and shaped as the card's `feature_names` and `hidden` imply, and that the card's
    /// normalisation agrees with the weights file. Missing files are [`HeadError::Io`];
    /// truncated, corrupt or inconsistent ones are [`HeadError::Corrupt`].
    pub fn load(dir: &Path) -> Result<CtrHead, HeadError> {
        let card_path = dir.join(CARD_FILE);
        let text = fs::read(&card_path).map_err(io_err(&card_path))?;
        let card: Value = serde_json::from_slice(&text)
            .map_err(|e| corrupt(&card_path, format!("not valid JSON: {e}")))?;
        let obj = card
            .as_object()
            .ok_or_else(|| corrupt(&card_path, "the card must be a JSON object"))?;
        let field = |name: &str| {
            obj.get(name)
                .ok_or_else(|| corrupt(&card_path, format!("missing field `{name}`")))
        };
        let version = field("format_version")?
            .as_u64()
            .ok_or_else(|| corrupt(&card_path, "`format_version` must be an integer"))?;
        if version != FORMAT_VERSION {
            return Err(corrupt(
                &card_path,
                format!(
                    "format_version {version} is not supported; this build reads version \
                     {FORMAT_VERSION} (re-save the head with this build)"
                ),
            ));
        }
        let names: Vec<String> = parse_field(field("feature_names")?, "feature_names", &card_path)?;
        let hidden: Vec<usize> = parse_field(field("hidden")?, "hidden", &card_path)?;
        let norm = field("normalisation")?;
        let mean: Vec<f32> = parse_field(
            norm.get("mean").unwrap_or(&Value::Null),
            "normalisation.mean",
            &card_path,
        )?;
        let std: Vec<f32> = parse_field(
            norm.get("std").unwrap_or(&Value::Null),
            "normalisation.std",
            &card_path,
        )?;
        // `clip` marks a head saved with the relative floor already applied.
        let legacy = norm.get("clip").is_none_or(Value::is_null);
        let z_clip = match norm.get("clip") {
            None | Some(Value::Null) => Z_CLIP,
            Some(v) => {
                let clip: f32 = parse_field(v, "normalisation.clip", &card_path)?;
                if !(clip.is_finite() && clip > 0.0) {
                    return Err(corrupt(
                        &card_path,
                        format!("normalisation.clip must be a finite number > 0, got {clip}"),
                    ));
                }
                clip
            }
        };
        validate_names(&names).map_err(|e| corrupt(&card_path, e.to_string()))?;
        if let Some(h) = hidden.iter().find(|&&h| h == 0 || h > MAX_HIDDEN) {
            return Err(corrupt(
                &card_path,
                format!("hidden layer width {h} is outside 1..={MAX_HIDDEN}"),
            ));
        }
        let d = names.len();
        if mean.len() != d || std.len() != d {
            return Err(corrupt(
                &card_path,
                format!(
                    "{d} feature_names but normalisation has {} means and {} stds",
                    mean.len(),
                    std.len()
                ),
            ));
        }

        let weights_name = match obj.get("weights").and_then(|w| w.get("file")) {
            None => WEIGHTS_FILE,
            Some(Value::String(name)) if is_weights_name(name) => name.as_str(),
            Some(other) => {
                return Err(corrupt(
                    &card_path,
                    format!(
                        "`weights.file` must name a {WEIGHTS_PREFIX}*{WEIGHTS_SUFFIX} file in the same directory, got {other}"
                    ),
                ))
            }
        };
        let weights_path = dir.join(weights_name);
        let bytes = fs::read(&weights_path).map_err(io_err(&weights_path))?;
        if let Some(w) = obj
            .get("weights")
            .filter(|w| w.get("bytes").is_some() || w.get("fnv1a64").is_some())
        {
            let want_len = w.get("bytes").and_then(Value::as_u64);
            let want_sum = w.get("fnv1a64").and_then(Value::as_str);
            let sum = format!("{:016x}", durable::fnv1a64(&bytes));
            if want_len != Some(bytes.len() as u64) || want_sum != Some(sum.as_str()) {
                return Err(corrupt(
                    &weights_path,
                    format!(
                        "does not match the card ({} bytes, checksum {sum}; the card expects \
                         {} bytes, checksum {}): the file is truncated or damaged, or a save \
                         was interrupted; re-save or re-train the head",
                        bytes.len(),
                        want_len.map_or("?".into(), |v| v.to_string()),
                        want_sum.unwrap_or("?"),
                    ),
                ));
            }
        }
        let mut tensors = candle_core::safetensors::load_buffer(&bytes, &Device::Cpu)
            .map_err(|e| corrupt(&weights_path, format!("not a valid safetensors file: {e}")))?;

        let dims: Vec<usize> = std::iter::once(d)
            .chain(hidden.iter().copied())
            .chain(std::iter::once(1))
            .collect();
        let mut take = |name: &str, shape: &[usize]| -> Result<Tensor, HeadError> {
            let t = tensors
                .remove(name)
                .ok_or_else(|| corrupt(&weights_path, format!("missing tensor `{name}`")))?;
            if t.dtype() != DType::F32 {
                return Err(corrupt(
                    &weights_path,
                    format!("tensor `{name}` is {:?}, expected f32", t.dtype()),
                ));
            }
            if t.dims() != shape {
                return Err(corrupt(
                    &weights_path,
                    format!(
                        "tensor `{name}` has shape {:?} but the card ({d} feature_names, \
                         hidden {hidden:?}) implies {shape:?}",
                        t.dims()
                    ),
                ));
            }
            let values = t
                .flatten_all()
                .and_then(|f| f.to_vec1::<f32>())
                .map_err(be)?;
            if values.iter().any(|v| !v.is_finite()) {
                return Err(corrupt(
                    &weights_path,
                    format!("tensor `{name}` holds non-finite values"),
                ));
            }
            Ok(t)
        };
        let mut layers = Vec::with_capacity(dims.len() - 1);
        for (i, pair) in dims.windows(2).enumerate() {
            let weight = take(&format!("mlp.{i}.weight"), &[pair[1], pair[0]])?;
            let bias = take(&format!("mlp.{i}.bias"), &[pair[1]])?;
            layers.push(Layer { weight, bias });
        }
        let file_mean = take("norm.mean", &[d])?.to_vec1::<f32>().map_err(be)?;
        let file_std = take("norm.std", &[d])?.to_vec1::<f32>().map_err(be)?;
        if let Some(name) = tensors.keys().next() {
            return Err(corrupt(
                &weights_path,
                format!("unexpected tensor `{name}` for the architecture in the card"),
            ));
        }
        if file_std.iter().any(|&s| s <= 0.0) {
            return Err(corrupt(&weights_path, "norm.std has a value <= 0"));
        }
        let close = |a: &[f32], b: &[f32]| {
            a.iter()
                .zip(b)
                .all(|(x, y)| (x - y).abs() <= 1e-6 * x.abs().max(1.0))
        };
        if !close(&mean, &file_mean) || !close(&std, &file_std) {
            return Err(corrupt(
                &card_path,
                format!("normalisation disagrees with {WEIGHTS_FILE}; the two files are from different saves"),
            ));
        }
        // A head saved before the relative floor: raise the near-zero deviations of its
        // near-constant features (see the module docs). Newer heads load verbatim.
        let std = if legacy {
            file_mean
                .iter()
                .zip(&file_std)
                .map(|(&m, &s)| floored_std(f64::from(s), f64::from(m), 0.0) as f32)
                .collect()
        } else {
            file_std
        };
        Ok(CtrHead {
            feature_names: names,
            hidden,
            mean: file_mean,
            std,
            z_clip,
            layers,
            card,
        })
    }

    /// The fields of the card that describe the model itself.
    fn model_fields(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("format_version".into(), json!(FORMAT_VERSION));
        m.insert("feature_names".into(), json!(self.feature_names));
        m.insert("hidden".into(), json!(self.hidden));
        m.insert(
            "normalisation".into(),
            json!({ "mean": self.mean, "std": self.std, "clip": self.z_clip }),
        );
        m
    }

    /// Merges the model's own fields over the current card.
    pub(super) fn refresh_card(&mut self) {
        let mut m = match std::mem::take(&mut self.card) {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        m.extend(self.model_fields());
        self.card = Value::Object(m);
    }

    fn tensor_map(&self) -> HashMap<String, Tensor> {
        let mut map = HashMap::new();
        for (i, l) in self.layers.iter().enumerate() {
            map.insert(format!("mlp.{i}.weight"), l.weight.clone());
            map.insert(format!("mlp.{i}.bias"), l.bias.clone());
        }
        let d = self.mean.len();
        // Tensor::from_slice on a CPU device with a matching length cannot fail.
        if let Ok(t) = Tensor::from_slice(&self.mean, d, &Device::Cpu) {
            map.insert("norm.mean".into(), t);
        }
        if let Ok(t) = Tensor::from_slice(&self.std, d, &Device::Cpu) {
            map.insert("norm.std".into(), t);
        }
        map
    }
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn parse_field<T: serde::de::DeserializeOwned>(
    v: &Value,
    name: &str,
    path: &Path,
) -> Result<T, HeadError> {
    T::deserialize(v).map_err(|e| corrupt(path, format!("field `{name}`: {e}")))
}
