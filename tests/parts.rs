//! Precomputed embedding parts (`shelfrank embed`) assembled into an index
//! (`build --embeddings`): the assembled index equals a one-machine build, and a
//! part from another model, a missing, duplicated, stale or foreign product, and a
//! damaged part are each refused with an error naming the part file.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use shelfrank::encoder::EncoderOptions;
use shelfrank::parts::embed_part;
use shelfrank::{Engine, IndexBuilder, Mode, Product, SearchRequest, Silent};

/// Embeds `products` with `model` into `dir/name`.
fn part(dir: &Path, name: &str, products: &[Product], model: &Path) -> PathBuf {
    let out = dir.join(name);
    embed_part(
        products,
        &EncoderOptions::new(model),
        7,
        &out,
        name,
        &Silent,
    )
    .unwrap();
    out
}

fn tiny() -> &'static Path {
    Path::new(common::TINY_MODEL)
}

/// The fixture catalog split into three parts of uneven size.
fn three_parts(dir: &Path) -> Vec<PathBuf> {
    let p = common::products();
    let (a, rest) = p.split_at(p.len() / 5);
    let (b, c) = rest.split_at(rest.len() / 2);
    vec![
        part(dir, "p0", a, tiny()),
        part(dir, "p1", b, tiny()),
        part(dir, "p2", c, tiny()),
    ]
}

fn build_from(index: &Path, parts: Vec<PathBuf>) -> shelfrank::Result<shelfrank::BuildSummary> {
    IndexBuilder::new(index, tiny())
        .precomputed_embeddings(parts)
        .build(&common::products())
}

fn answers(index: &Path) -> Vec<Vec<(String, f32)>> {
    let engine = Engine::open(index).unwrap();
    ["cordless drill", "shower head", "garden hose", "led bulb"]
        .iter()
        .flat_map(|q| {
            [Mode::Dense, Mode::Hybrid].map(|mode| {
                engine
                    .search(&SearchRequest::new(*q).mode(mode).k(10))
                    .unwrap()
                    .into_iter()
                    .map(|h| (h.id, h.score))
                    .collect()
            })
        })
        .collect()
}

fn vectors_of(index: &Path) -> Vec<u8> {
    fs::read(common::data_dir(index).join("vectors.f32")).unwrap()
}

#[test]
fn an_index_assembled_from_parts_equals_a_one_machine_build() {
    let tmp = tempfile::tempdir().unwrap();
    let parts = three_parts(tmp.path());
    let single = common::build_index(tmp.path(), "single");
    let assembled = tmp.path().join("assembled");
    let summary = build_from(&assembled, parts).unwrap();
    assert_eq!(summary.products, common::products().len());
    assert_eq!(vectors_of(&single), vectors_of(&assembled));
    assert_eq!(answers(&single), answers(&assembled));
    // The part's files are plain: ids.jsonl has one line per product.
    let ids = fs::read_to_string(tmp.path().join("p0/ids.jsonl")).unwrap();
    assert_eq!(ids.lines().count(), common::products().len() / 5);
}

fn error_of(parts: Vec<PathBuf>) -> String {
    let tmp = tempfile::tempdir().unwrap();
    let index = tmp.path().join("idx");
    let e = build_from(&index, parts).unwrap_err().to_string();
    // Nothing was published.
    assert!(!index.join("CURRENT").exists(), "{e}");
    e
}

#[test]
fn a_part_from_another_model_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    // Another model: the tiny one with one weight changed.
    let other = tmp.path().join("other-model");
    common::copy_tree(tiny(), &other);
    let weights = other.join("model.safetensors");
    let mut bytes = fs::read(&weights).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    fs::write(&weights, &bytes).unwrap();
    let p = common::products();
    let (a, b) = p.split_at(10);
    let parts = vec![
        part(tmp.path(), "a", a, tiny()),
        part(tmp.path(), "b", b, &other),
    ];
    let e = error_of(parts);
    assert!(e.contains("b/part.json") && e.contains("sha256"), "{e}");
}

#[test]
fn a_missing_product_is_refused_by_id() {
    let tmp = tempfile::tempdir().unwrap();
    let p = common::products();
    let missing = p[3].id.clone();
    let some: Vec<Product> = p.iter().filter(|x| x.id != missing).cloned().collect();
    let e = error_of(vec![part(tmp.path(), "a", &some, tiny())]);
    assert!(
        e.contains("1 of") && e.contains(&format!("{missing:?}")),
        "{e}"
    );
}

#[test]
fn a_product_in_two_parts_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let p = common::products();
    let parts = vec![
        part(tmp.path(), "a", &p[..12], tiny()),
        part(tmp.path(), "b", &p[11..], tiny()),
    ];
    let e = error_of(parts);
    assert!(
        e.contains("embedded twice") && e.contains(&format!("{:?}", p[11].id)),
        "{e}"
    );
    assert!(
        e.contains("b/ids.jsonl") && e.contains("a/ids.jsonl"),
        "{e}"
    );
}

#[test]
fn a_stale_or_foreign_product_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let mut p = common::products();
    // Embedded from an older title.
    p[0].title.push_str(" (old title)");
    let e = error_of(vec![part(tmp.path(), "stale", &p, tiny())]);
    assert!(
        e.contains("another text") && e.contains("stale/ids.jsonl") && e.contains("line 1"),
        "{e}"
    );
    // A product the catalog does not have.
    let mut p = common::products();
    let mut extra = p[0].clone();
    extra.id = "not-in-the-catalog".into();
    p.push(extra);
    let e = error_of(vec![part(tmp.path(), "foreign", &p, tiny())]);
    assert!(
        e.contains("not-in-the-catalog") && e.contains("not in the catalog"),
        "{e}"
    );
}

#[test]
fn a_damaged_part_is_refused_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let parts = three_parts(tmp.path());
    for (file, at) in [
        ("vectors.f32", 100usize),
        ("ids.jsonl", 5),
        ("part.json", 0),
    ] {
        let copy = tmp.path().join(format!("damaged-{file}"));
        common::copy_tree(&parts[1], &copy);
        let path = copy.join(file);
        let mut bytes = fs::read(&path).unwrap();
        bytes[at] ^= 0xFF;
        fs::write(&path, &bytes).unwrap();
        let e = error_of(vec![parts[0].clone(), copy.clone(), parts[2].clone()]);
        assert!(e.contains(&*path.to_string_lossy()), "{file}: {e}");
    }
    // Not a part at all.
    let e = error_of(vec![tmp.path().to_path_buf()]);
    assert!(e.contains("part.json"), "{e}");
}

#[test]
fn a_part_is_written_once() {
    let tmp = tempfile::tempdir().unwrap();
    let p = common::products();
    let out = part(tmp.path(), "a", &p, tiny());
    let before = fs::read(out.join("vectors.f32")).unwrap();
    let e = embed_part(&p, &EncoderOptions::new(tiny()), 7, &out, "again", &Silent)
        .unwrap_err()
        .to_string();
    assert!(e.contains("already exists"), "{e}");
    assert_eq!(fs::read(out.join("vectors.f32")).unwrap(), before);
    // No temporary directory is left beside it.
    let names: Vec<String> = fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec!["a".to_string()]);
}

#[test]
fn the_cli_embeds_parts_and_builds_from_them() {
    let tmp = tempfile::tempdir().unwrap();
    let catalog = fs::read_to_string("fixtures/catalog.jsonl").unwrap();
    let lines: Vec<&str> = catalog.lines().collect();
    let (a, b) = lines.split_at(lines.len() / 2);
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_shelfrank"))
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let mut parts = Vec::new();
    for (i, half) in [a, b].iter().enumerate() {
        let file = tmp.path().join(format!("part-{i}.jsonl"));
        fs::write(&file, half.join("\n")).unwrap();
        let out = tmp.path().join(format!("emb-{i}"));
        let said = run(&[
            "embed",
            "--catalog",
            file.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--model",
            common::TINY_MODEL,
            "--quiet",
        ]);
        assert!(
            said.contains(&format!("embedded {} products", half.len())),
            "{said}"
        );
        parts.push(out);
    }
    let index = tmp.path().join("idx");
    let said = run(&[
        "build",
        "--catalog",
        "fixtures/catalog.jsonl",
        "--index",
        index.to_str().unwrap(),
        "--model",
        common::TINY_MODEL,
        "--quiet",
        "--embeddings",
        parts[0].to_str().unwrap(),
        parts[1].to_str().unwrap(),
    ]);
    assert!(said.contains("from 2 precomputed parts"), "{said}");
    let single = common::build_index(tmp.path(), "single");
    assert_eq!(vectors_of(&single), vectors_of(&index));
}
