//! A manifest's numbers and file list are checked before anything is allocated or
//! read on their say-so: each case is refused with an error naming manifest.json
//! and the field.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;
use shelfrank::vector::{HnswParams, Quantization};
use shelfrank::{Engine, EngineBuilder, Error};

/// Builds the fixture index, lets `edit` change its manifest, and returns the
/// error of opening it (with and without checksum verification, which must
/// agree: these checks do not depend on it).
fn open_with(edit: impl Fn(&mut Value)) -> (String, PathBuf) {
    open_edited(HnswParams::default().quantization, edit)
}

/// [`open_with`] on an index whose graph holds its vectors as `quantization` says.
fn open_edited(quantization: Quantization, edit: impl Fn(&mut Value)) -> (String, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let index = common::build_index_quantized(tmp.path(), "idx", quantization);
    let manifest = common::data_dir(&index).join("manifest.json");
    let mut value: Value = serde_json::from_str(&fs::read_to_string(&manifest).unwrap()).unwrap();
    edit(&mut value);
    fs::write(&manifest, serde_json::to_string_pretty(&value).unwrap()).unwrap();
    let err = Engine::open(&index).unwrap_err();
    assert!(matches!(err, Error::CorruptIndex { .. }), "{err}");
    let unverified = EngineBuilder::new(&index)
        .verify_checksums(false)
        .build()
        .unwrap_err();
    assert_eq!(unverified.to_string(), err.to_string());
    assert!(
        err.to_string().contains(&*manifest.to_string_lossy()),
        "{err}"
    );
    (err.to_string(), manifest)
}

fn assert_names(err: &str, words: &[&str]) {
    for w in words {
        assert!(err.contains(w), "{w:?} missing from: {err}");
    }
}

#[test]
fn huge_ef_search_is_refused() {
    let (err, _) = open_with(|m| m["hnsw"]["ef_search"] = 1_000_000_000_000u64.into());
    assert_names(&err, &["hnsw.ef_search", "1000000000000", "100000"]);
}

#[test]
fn huge_ef_construction_and_m_are_refused() {
    let (err, _) = open_with(|m| m["hnsw"]["ef_construction"] = u64::MAX.into());
    assert_names(&err, &["hnsw.ef_construction"]);
    let (err, _) = open_with(|m| m["hnsw"]["m"] = 100_000.into());
    assert_names(&err, &["hnsw.m", "100000", "255"]);
}

#[test]
fn huge_dim_products_and_max_tokens_are_refused() {
    let (err, _) = open_with(|m| m["model"]["dim"] = 1_000_000_000u64.into());
    assert_names(&err, &["model.dim", "16384"]);
    let (err, _) = open_with(|m| m["products"] = 1u64.wrapping_shl(40).into());
    assert_names(&err, &["products", "4294967295"]);
    let (err, _) = open_with(|m| m["model"]["max_tokens"] = 10_000_000.into());
    assert_names(&err, &["model.max_tokens", "8192"]);
}

#[test]
fn products_and_dim_must_match_the_vector_file() {
    // Within the bounds, but the vectors file cannot hold them.
    let (err, _) = open_with(|m| m["products"] = 41.into());
    assert_names(&err, &["vectors.f32", "41 products"]);
    let (err, _) = open_with(|m| m["model"]["dim"] = 4096.into());
    assert_names(&err, &["vectors.f32", "4096 dims"]);
}

#[test]
fn a_huge_file_size_is_refused() {
    let (err, _) = open_with(|m| m["files"]["products.bin"]["bytes"] = u64::MAX.into());
    assert_names(&err, &["products.bin", "bytes", "limit"]);
}

#[test]
fn an_empty_file_list_is_refused() {
    let (err, _) = open_with(|m| m["files"] = serde_json::json!({}));
    assert_names(&err, &["files is empty", "rebuilt"]);
}

#[test]
fn a_required_file_missing_from_the_list_is_refused() {
    for file in [
        "products.bin",
        "vectors.f32",
        "hnsw/graph.hnsw.graph",
        "hnsw/graph.hnsw.data",
        "text/meta.json",
    ] {
        let (err, _) = open_with(|m| {
            m["files"].as_object_mut().unwrap().remove(file);
        });
        assert_names(&err, &["does not list", file]);
    }
}

#[test]
fn an_unlisted_segment_file_is_refused() {
    // Drop one tantivy segment file from the list: the file exists but the
    // manifest does not vouch for it.
    let tmp = tempfile::tempdir().unwrap();
    let index = common::build_index(tmp.path(), "idx");
    let data = common::data_dir(&index);
    let manifest = data.join("manifest.json");
    let mut value: Value = serde_json::from_str(&fs::read_to_string(&manifest).unwrap()).unwrap();
    let files = value["files"].as_object_mut().unwrap();
    let segment = files
        .keys()
        .find(|k| k.starts_with("text/") && k.ends_with(".idx"))
        .expect("a segment file is listed")
        .clone();
    files.remove(&segment);
    fs::write(&manifest, serde_json::to_string_pretty(&value).unwrap()).unwrap();
    let err = Engine::open(&index).unwrap_err().to_string();
    assert_names(&err, &[segment.rsplit('/').next().unwrap(), "not listed"]);
}

#[test]
fn keys_outside_the_directory_are_refused() {
    let entry = serde_json::json!({"bytes": 1, "crc32": 0});
    for key in [
        "../../../../etc/passwd",
        "/etc/passwd",
        "text/../../outside",
    ] {
        let (err, _) = open_with(|m| m["files"][key] = entry.clone());
        assert_names(&err, &["field files", key]);
    }
}

#[cfg(unix)]
#[test]
fn a_symbolic_link_inside_the_index_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let index = common::build_index(tmp.path(), "idx");
    let data = common::data_dir(&index);
    let products = data.join("products.bin");
    let elsewhere = tmp.path().join("products-elsewhere.bin");
    fs::rename(&products, &elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &products).unwrap();
    for verify in [true, false] {
        let err = EngineBuilder::new(&index)
            .verify_checksums(verify)
            .build()
            .unwrap_err();
        assert!(matches!(err, Error::CorruptIndex { .. }), "{err}");
        assert_names(&err.to_string(), &["products.bin", "symbolic link"]);
    }
}

#[cfg(unix)]
#[test]
fn a_built_index_is_readable_by_everyone() {
    use std::os::unix::fs::PermissionsExt;
    fn walk(dir: &Path, out: &mut Vec<(PathBuf, u32)>) {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o7777;
            if path.is_dir() {
                walk(&path, out);
            }
            out.push((path, mode));
        }
    }
    let tmp = tempfile::tempdir().unwrap();
    let index = common::build_index(tmp.path(), "idx");
    let data = common::data_dir(&index);
    let mut modes = Vec::new();
    walk(&data, &mut modes);
    assert!(modes.iter().any(|(p, _)| p.ends_with("manifest.json")));
    assert!(modes.iter().any(|(p, _)| p.ends_with("text/meta.json")));
    for (path, mode) in modes {
        let want = if path.is_dir() { 0o755 } else { 0o644 };
        assert_eq!(mode, want, "{}", path.display());
    }
}

#[test]
fn every_file_of_the_index_is_listed_with_its_checksum() {
    let tmp = tempfile::tempdir().unwrap();
    let index = common::build_index(tmp.path(), "idx");
    let data = common::data_dir(&index);
    let value: Value =
        serde_json::from_str(&fs::read_to_string(data.join("manifest.json")).unwrap()).unwrap();
    let files = value["files"].as_object().unwrap();
    let text_files: Vec<_> = files.keys().filter(|k| k.starts_with("text/")).collect();
    assert!(text_files.len() > 3, "{text_files:?}");
    assert!(files.contains_key("text/meta.json"));
    for (key, entry) in files {
        let bytes = fs::read(data.join(key)).unwrap();
        assert_eq!(entry["bytes"], bytes.len() as u64, "{key}");
        assert_eq!(entry["crc32"], crc32fast::hash(&bytes), "{key}");
    }
}

#[test]
fn quantization_fields_must_agree_with_each_other_and_the_version() {
    let f32_with = |edit: &dyn Fn(&mut Value)| open_edited(Quantization::F32, edit).0;
    let int8_with = |edit: &dyn Fn(&mut Value)| open_edited(Quantization::Int8, edit).0;
    // An int8 graph needs a positive step ...
    let err = f32_with(&|m| m["hnsw"]["quantization"] = "int8".into());
    assert_names(&err, &["hnsw.int8_step", "finite positive"]);
    let err = int8_with(&|m| {
        m["hnsw"].as_object_mut().unwrap().remove("int8_step");
    });
    assert_names(&err, &["hnsw.int8_step", "finite positive"]);
    let err = int8_with(&|m| m["hnsw"]["int8_step"] = (-0.5).into());
    assert_names(&err, &["hnsw.int8_step", "-0.5"]);
    // ... and format version 3, which older releases refuse by number.
    let err = f32_with(&|m| {
        m["hnsw"]["quantization"] = "int8".into();
        m["hnsw"]["int8_step"] = 0.01.into();
    });
    assert_names(&err, &["hnsw.quantization", "format version 3"]);
    let err = int8_with(&|m| m["format_version"] = 2.into());
    assert_names(&err, &["hnsw.quantization", "format version 3"]);
    // A float32 graph has no step.
    let err = f32_with(&|m| m["hnsw"]["int8_step"] = 0.01.into());
    assert_names(&err, &["hnsw.int8_step", "f32"]);
    let err = int8_with(&|m| m["hnsw"]["quantization"] = "f32".into());
    assert_names(&err, &["hnsw.int8_step", "f32"]);
    // An unknown kind is not a valid manifest.
    let err = int8_with(&|m| m["hnsw"]["quantization"] = "int4".into());
    assert_names(&err, &["not a valid manifest", "int4"]);
}
