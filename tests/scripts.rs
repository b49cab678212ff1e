//! The GPU check script, run end to end on the CPU with the fixtures and the tiny
//! model, so that it stays ready for a GPU machine (it is not run there in CI).

use std::path::Path;
use std::process::Command;

#[test]
fn gpu_check_runs_every_step_on_the_cpu() {
    if Command::new("python3").arg("--version").output().is_err() {
        assert!(
            std::env::var_os("SHELFRANK_REQUIRE_MODEL").is_none(),
            "python3 is needed by scripts/gpu-check.sh"
        );
        eprintln!("skipped: no python3");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let hd = data.join("homedepot");
    std::fs::create_dir_all(&hd).unwrap();
    for (from, to) in [
        ("catalog.jsonl", "catalog.jsonl"),
        ("queries.tsv", "queries.dev.tsv"),
        ("qrels.txt", "qrels.dev.txt"),
    ] {
        std::fs::copy(Path::new("fixtures").join(from), hd.join(to)).unwrap();
    }
    let out = tmp.path().join("figures.txt");
    let status = Command::new("bash")
        .arg("scripts/gpu-check.sh")
        .args([
            "--device",
            "cpu",
            "--quick",
            "--bin",
            env!("CARGO_BIN_EXE_shelfrank"),
        ])
        .args(["--model", "fixtures/tiny-bert"])
        .arg("--data")
        .arg(&data)
        .arg("--out")
        .arg(&out)
        .arg("--work")
        .arg(tmp.path().join("work"))
        .args(["--tune-args", "--validation 0.5 --min-grade 2 --batch 4"])
        .status()
        .expect("run bash");
    let figures = std::fs::read_to_string(&out).unwrap_or_default();
    let log = std::fs::read_to_string(tmp.path().join("figures.txt.log")).unwrap_or_default();
    assert!(status.success(), "{figures}\n{log}");
    for dtype in ["f32", "f16", "bf16"] {
        for batch in [64, 256, 1024] {
            // bf16 on the CPU names its kernel: "(cpu, bf16 (avx2), ".
            let needle = format!("40 titles, batch {batch} (cpu, {dtype}");
            assert!(figures.contains(&needle), "{needle:?} missing:\n{figures}");
        }
        assert!(
            figures.contains(&format!("single query (cpu, {dtype}")),
            "{figures}"
        );
    }
    // The agreement with the CPU's f32 embeddings, for each half format.
    assert_eq!(figures.matches("cosine to cpu f32").count(), 2, "{figures}");
    for needle in [
        "build: ",
        "ndcg@10 dense: ",
        "ndcg@10 hybrid: ",
        "tune: ",
        "tune report: {\"base_ndcg\"",
        "total: ",
    ] {
        assert!(figures.contains(needle), "{needle:?} missing:\n{figures}");
    }
    // A wrong flag is refused before any work.
    let refused = Command::new("bash")
        .args(["scripts/gpu-check.sh", "--frobnicate"])
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(2));
}

/// `examples/spark/parts_to_bulk.py` turns parts into `_bulk` NDJSON whose
/// vectors are the parts' float32 values exactly, and stops on a foreign product.
#[test]
fn parts_become_bulk_documents_with_exact_vectors() {
    if Command::new("python3").arg("--version").output().is_err() {
        assert!(
            std::env::var_os("SHELFRANK_REQUIRE_MODEL").is_none(),
            "python3 is needed by examples/spark/parts_to_bulk.py"
        );
        eprintln!("skipped: no python3");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let part = tmp.path().join("part");
    let ok = Command::new(env!("CARGO_BIN_EXE_shelfrank"))
        .args(["embed", "--catalog", "fixtures/catalog.jsonl", "--quiet"])
        .args(["--model", "fixtures/tiny-bert", "--out"])
        .arg(&part)
        .status()
        .unwrap();
    assert!(ok.success());
    let run = |catalog: &str| {
        Command::new("python3")
            .arg("examples/spark/parts_to_bulk.py")
            .args(["--catalog", catalog, "--index", "products"])
            .arg(&part)
            .output()
            .unwrap()
    };
    let out = run("fixtures/catalog.jsonl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 80);
    let stored: Vec<f32> = std::fs::read(part.join("vectors.f32"))
        .unwrap()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    let dim = stored.len() / 40;
    for (row, pair) in lines.chunks(2).enumerate() {
        assert_eq!(pair[0]["index"]["_index"], "products");
        assert_eq!(pair[0]["index"]["_id"], pair[1]["product_id"]);
        let v: Vec<f32> = pair[1]["embedding"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap() as f32)
            .collect();
        assert_eq!(v, stored[row * dim..(row + 1) * dim], "row {row}");
        assert!(pair[1]["title"].is_string());
    }
    // A catalog without those products is refused, naming the part's line.
    let other = tmp.path().join("other.jsonl");
    std::fs::write(&other, "{\"id\": \"zz\", \"title\": \"x\"}\n").unwrap();
    let out = run(other.to_str().unwrap());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("ids.jsonl line 1"),
        "{err}"
    );
}
