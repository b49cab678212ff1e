//! Shared helpers for the integration tests: a fixture index built with the
//! project's tiny BERT.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use shelfrank::catalog::{read_catalog, ReadOptions};
use shelfrank::profile::events::{read_events, EventReadOptions};
use shelfrank::{Engine, EventStore, IndexBuilder, Product};

pub const TINY_MODEL: &str = "fixtures/tiny-bert";

/// The real model (`scripts/fetch-model.sh`), or `None` to skip a test without it.
/// With `SHELFRANK_REQUIRE_MODEL` set (as CI sets it), a missing model fails instead.
pub fn real_model() -> Option<&'static Path> {
    let dir = Path::new("models/all-MiniLM-L6-v2");
    if shelfrank::encoder::is_model_dir(dir) {
        return Some(dir);
    }
    if std::env::var_os("SHELFRANK_REQUIRE_MODEL").is_some() {
        panic!(
            "SHELFRANK_REQUIRE_MODEL is set but {} is missing; run scripts/fetch-model.sh",
            dir.display()
        );
    }
    eprintln!(
        "skipping: {} not found (run scripts/fetch-model.sh)",
        dir.display()
    );
    None
}

pub fn products() -> Vec<Product> {
    read_catalog(Path::new("fixtures/catalog.jsonl"), &ReadOptions::default())
        .expect("fixture catalog")
        .products
}

/// Builds the fixture catalog into `dir/name` and returns the index path.
pub fn build_index(dir: &Path, name: &str) -> PathBuf {
    build_index_with(dir, name, Path::new(TINY_MODEL))
}

/// Builds the fixture catalog into `dir/name` with the model in `model`.
pub fn build_index_with(dir: &Path, name: &str, model: &Path) -> PathBuf {
    let index = dir.join(name);
    IndexBuilder::new(&index, model)
        .build(&products())
        .expect("build fixture index");
    index
}

/// Builds the fixture catalog into `dir/name` with the tiny model and an HNSW
/// graph storing its vectors as `quantization` says.
#[allow(dead_code)]
pub fn build_index_quantized(
    dir: &Path,
    name: &str,
    quantization: shelfrank::vector::Quantization,
) -> PathBuf {
    let index = dir.join(name);
    IndexBuilder::new(&index, TINY_MODEL)
        .hnsw(shelfrank::vector::HnswParams {
            quantization,
            ..Default::default()
        })
        .build(&products())
        .expect("build fixture index");
    index
}

/// Rewrites the `manifest.json` of the generation `index` serves now, passing its
/// JSON to `edit` (to make what an older or damaged index would hold).
pub fn edit_manifest(index: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let generation = Engine::open(index).unwrap().generation_dir().to_path_buf();
    let path = generation.join("manifest.json");
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    edit(&mut json);
    std::fs::write(&path, serde_json::to_string_pretty(&json).unwrap()).unwrap();
}

/// The directory holding the index's `manifest.json` and the files it lists: the
/// index directory itself, or the one sub-directory of it that holds a manifest.
pub fn data_dir(index: &Path) -> PathBuf {
    if index.join("manifest.json").is_file() {
        return index.to_path_buf();
    }
    std::fs::read_dir(index)
        .expect("index directory")
        .map(|e| e.expect("entry").path())
        .find(|p| p.join("manifest.json").is_file())
        .expect("a directory holding manifest.json")
}

/// Copies the directory tree `from` to `to` (regular files and directories only).
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create copy");
    for entry in std::fs::read_dir(from).expect("list") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

/// The fixture events (`fixtures/events.jsonl`) in an in-memory store, for
/// training and evaluation against `engine`'s catalog.
pub fn fixture_events(engine: &Engine) -> EventStore {
    let batch = read_events(
        Path::new("fixtures/events.jsonl"),
        &EventReadOptions::default(),
        &|id: &str| engine.product(id).is_some(),
    )
    .expect("read the fixture events");
    let mut store = EventStore::open_in_memory();
    store
        .append(&batch.events)
        .expect("store the fixture events");
    store
}
