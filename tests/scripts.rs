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
            let needle = format!("40 titles, batch {batch} (cpu, {dtype}, ");
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
