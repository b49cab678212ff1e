//! Writes the tiny random BERT used by the tests into `fixtures/tiny-bert`.
//!
//! ```text
//! cargo run --example make_tiny_model [-- OUT_DIR]
//! ```
//!
//! Its vocabulary is the words of `fixtures/catalog.jsonl` plus single characters,
//! so every text tokenises; the weights are random (fixed seed).

use std::collections::BTreeSet;
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("fixtures/tiny-bert"));
    let catalog = shelfrank::catalog::read_catalog(
        "fixtures/catalog.jsonl".as_ref(),
        &shelfrank::catalog::ReadOptions::default(),
    )?;
    let mut words = BTreeSet::new();
    for p in &catalog.products {
        let text = format!("{} {}", p.title, p.description.as_deref().unwrap_or(""));
        for w in text.split(|c: char| !c.is_alphanumeric()) {
            if w.chars().count() > 1 {
                words.insert(w.to_lowercase());
            }
        }
    }
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    shelfrank::encoder::create_tiny_model(&out, &words, 42)?;
    println!(
        "wrote {} ({} words in the vocabulary)",
        out.display(),
        words.len()
    );
    Ok(())
}
