//! A tiny random BERT for tests and demos, so that nothing needs a download.
//!
//! The architecture and files are those of a real sentence-transformers model
//! (config.json, tokenizer.json with a BERT WordPiece tokenizer, model.safetensors,
//! 1_Pooling/config.json), at a size of a few hundred kilobytes. Its embeddings mean
//! nothing semantically, but they are deterministic for a given seed and exercise
//! every code path.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use tokenizers::decoders::wordpiece::WordPiece as WordPieceDecoder;
use tokenizers::models::wordpiece::WordPiece;
use tokenizers::normalizers::bert::BertNormalizer;
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
use tokenizers::processors::bert::BertProcessing;
use tokenizers::Tokenizer;

use crate::error::{Error, Result};
use crate::rng::SplitMix64;

/// Hidden size of the tiny model.
pub const TINY_HIDDEN: usize = 32;
const TINY_LAYERS: usize = 2;
const TINY_HEADS: usize = 4;
const TINY_INTERMEDIATE: usize = 64;
const TINY_POSITIONS: usize = 128;

/// Uniform in [-1, 1) from the crate's generator: the test weights' distribution.
fn next_f32(rng: &mut SplitMix64) -> f32 {
    ((rng.next_u64() >> 40) as f32 / (1u64 << 23) as f32) - 1.0
}

/// Writes a tiny random BERT sentence encoder into `dir` (created if needed).
///
/// The vocabulary holds the BERT special tokens, single characters (and their
/// `##` continuations) so that any text tokenises, and the lower-cased `words`.
pub fn create_tiny_model(dir: &Path, words: &[&str], seed: u64) -> Result<()> {
    let io = |p: &Path, e: std::io::Error| Error::io(p, e);
    std::fs::create_dir_all(dir.join("1_Pooling")).map_err(|e| io(dir, e))?;

    // Vocabulary.
    let mut vocab: Vec<String> = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let chars: Vec<char> = ('a'..='z')
        .chain('0'..='9')
        .chain("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~".chars())
        .collect();
    for c in &chars {
        vocab.push(c.to_string());
    }
    for c in &chars {
        if c.is_alphanumeric() {
            vocab.push(format!("##{c}"));
        }
    }
    for w in words {
        let w = w.to_lowercase();
        if !w.is_empty() && w.chars().all(char::is_alphanumeric) && !vocab.contains(&w) {
            vocab.push(w);
        }
    }
    let vocab_path = dir.join("vocab.txt");
    std::fs::write(&vocab_path, vocab.join("\n") + "\n").map_err(|e| io(&vocab_path, e))?;

    let tok_err = |e: tokenizers::Error| Error::Tokenizer(e.to_string());
    let wordpiece = WordPiece::from_file(&vocab_path.to_string_lossy())
        .unk_token("[UNK]".into())
        .continuing_subword_prefix("##".into())
        .build()
        .map_err(tok_err)?;
    let mut tokenizer = Tokenizer::new(wordpiece);
    tokenizer.with_normalizer(Some(BertNormalizer::new(true, true, None, true)));
    tokenizer.with_pre_tokenizer(Some(BertPreTokenizer));
    tokenizer.with_post_processor(Some(BertProcessing::new(
        ("[SEP]".into(), 3),
        ("[CLS]".into(), 2),
    )));
    tokenizer.with_decoder(Some(WordPieceDecoder::default()));
    let tok_path = dir.join("tokenizer.json");
    tokenizer.save(&tok_path, true).map_err(tok_err)?;

    let config = serde_json::json!({
        "architectures": ["BertModel"],
        "model_type": "bert",
        "vocab_size": vocab.len(),
        "hidden_size": TINY_HIDDEN,
        "num_hidden_layers": TINY_LAYERS,
        "num_attention_heads": TINY_HEADS,
        "intermediate_size": TINY_INTERMEDIATE,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "max_position_embeddings": TINY_POSITIONS,
        "type_vocab_size": 2,
        "initializer_range": 0.02,
        "layer_norm_eps": 1e-12,
        "pad_token_id": 0,
        "position_embedding_type": "absolute",
    });
    write_json(&dir.join("config.json"), &config)?;
    write_json(
        &dir.join("1_Pooling").join("config.json"),
        &serde_json::json!({
            "word_embedding_dimension": TINY_HIDDEN,
            "pooling_mode_cls_token": false,
            "pooling_mode_mean_tokens": true,
            "pooling_mode_max_tokens": false,
            "pooling_mode_mean_sqrt_len_tokens": false,
        }),
    )?;
    write_json(
        &dir.join("sentence_bert_config.json"),
        &serde_json::json!({ "max_seq_length": 64, "do_lower_case": false }),
    )?;

    // Weights, named as Hugging Face's BertModel names them.
    let mut rng = SplitMix64::new(seed);
    let mut tensors: HashMap<String, Tensor> = HashMap::new();
    let mut add = |name: String, shape: &[usize], scale: f32, offset: f32| -> Result<()> {
        let n: usize = shape.iter().product();
        let data: Vec<f32> = (0..n)
            .map(|_| offset + scale * next_f32(&mut rng))
            .collect();
        let t = Tensor::from_vec(data, shape, &Device::Cpu)
            .map_err(|e| Error::Encoder(e.to_string()))?;
        tensors.insert(name, t);
        Ok(())
    };
    let h = TINY_HIDDEN;
    add(
        "embeddings.word_embeddings.weight".into(),
        &[vocab.len(), h],
        0.5,
        0.0,
    )?;
    add(
        "embeddings.position_embeddings.weight".into(),
        &[TINY_POSITIONS, h],
        0.1,
        0.0,
    )?;
    add(
        "embeddings.token_type_embeddings.weight".into(),
        &[2, h],
        0.1,
        0.0,
    )?;
    add("embeddings.LayerNorm.weight".into(), &[h], 0.1, 1.0)?;
    add("embeddings.LayerNorm.bias".into(), &[h], 0.1, 0.0)?;
    for l in 0..TINY_LAYERS {
        let p = format!("encoder.layer.{l}");
        for m in ["query", "key", "value"] {
            add(format!("{p}.attention.self.{m}.weight"), &[h, h], 0.3, 0.0)?;
            add(format!("{p}.attention.self.{m}.bias"), &[h], 0.05, 0.0)?;
        }
        add(
            format!("{p}.attention.output.dense.weight"),
            &[h, h],
            0.3,
            0.0,
        )?;
        add(format!("{p}.attention.output.dense.bias"), &[h], 0.05, 0.0)?;
        add(
            format!("{p}.attention.output.LayerNorm.weight"),
            &[h],
            0.1,
            1.0,
        )?;
        add(
            format!("{p}.attention.output.LayerNorm.bias"),
            &[h],
            0.1,
            0.0,
        )?;
        add(
            format!("{p}.intermediate.dense.weight"),
            &[TINY_INTERMEDIATE, h],
            0.3,
            0.0,
        )?;
        add(
            format!("{p}.intermediate.dense.bias"),
            &[TINY_INTERMEDIATE],
            0.05,
            0.0,
        )?;
        add(
            format!("{p}.output.dense.weight"),
            &[h, TINY_INTERMEDIATE],
            0.3,
            0.0,
        )?;
        add(format!("{p}.output.dense.bias"), &[h], 0.05, 0.0)?;
        add(format!("{p}.output.LayerNorm.weight"), &[h], 0.1, 1.0)?;
        add(format!("{p}.output.LayerNorm.bias"), &[h], 0.1, 0.0)?;
    }
    let weights = dir.join("model.safetensors");
    candle_core::safetensors::save(&tensors, &weights)
        .map_err(|e| Error::Encoder(format!("cannot write {}: {e}", weights.display())))?;
    let _ = DType::F32;
    Ok(())
}

fn write_json(path: &Path, value: &serde_json::Value) -> Result<()> {
    let text =
        serde_json::to_string_pretty(value).map_err(|e| Error::invalid("json", e.to_string()))?;
    std::fs::write(path, text + "\n").map_err(|e| Error::io(path, e))
}
