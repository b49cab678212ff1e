//! Shared helpers for the integration tests: a fixture index built with the
//! project's tiny BERT.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use shelfrank::catalog::{read_catalog, ReadOptions};
use shelfrank::{IndexBuilder, Product};

pub const TINY_MODEL: &str = "fixtures/tiny-bert";

pub fn products() -> Vec<Product> {
    read_catalog(Path::new("fixtures/catalog.jsonl"), &ReadOptions::default())
        .expect("fixture catalog")
        .products
}

/// Builds the fixture catalog into `dir/name` and returns the index path.
pub fn build_index(dir: &Path, name: &str) -> PathBuf {
    let index = dir.join(name);
    IndexBuilder::new(&index, TINY_MODEL)
        .build(&products())
        .expect("build fixture index");
    index
}
