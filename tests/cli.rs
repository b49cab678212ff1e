//! The `shelfrank` binary as a user runs it: build, search, eval, and bad input.

use std::path::Path;
use std::process::Command;

fn shelfrank(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_shelfrank"))
        .args(args)
        .output()
        .expect("run shelfrank");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `shelfrank build` of `catalog` into `index` with the tiny model, plus `extra` flags.
fn build_with(catalog: &Path, index: &Path, extra: &[&str]) -> (bool, String, String) {
    let mut args = vec![
        "build",
        "--catalog",
        catalog.to_str().unwrap(),
        "--index",
        index.to_str().unwrap(),
        "--model",
        "fixtures/tiny-bert",
        "--quiet",
    ];
    args.extend_from_slice(extra);
    shelfrank(&args)
}

fn build(index: &Path) {
    let (ok, stdout, stderr) = build_with(Path::new("fixtures/catalog.jsonl"), index, &[]);
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("built") && stdout.contains("40 products"),
        "{stdout}"
    );
    assert!(stdout.contains("index size"), "{stdout}");
}

#[test]
fn build_search_and_eval() {
    let tmp = tempfile::tempdir().unwrap();
    let index = tmp.path().join("idx");
    build(&index);
    let idx = index.to_str().unwrap();
    let (ok, stdout, stderr) = shelfrank(&[
        "search",
        "rain shower head",
        "--index",
        idx,
        "--mode",
        "bm25",
        "-k",
        "3",
    ]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("p002"), "{stdout}");
    let (ok, stdout, stderr) = shelfrank(&[
        "search",
        "rain shower head",
        "--index",
        idx,
        "--json",
        "--category",
        "Bath",
    ]);
    assert!(ok, "{stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let hits = v["hits"].as_array().unwrap();
    assert!(!hits.is_empty());
    assert!(hits[0]["breakdown"]["fused"].is_number());
    // A negative price bound is refused with the field named (in both spellings).
    for args in [["--min-price", "-5"], ["--max-price=-5", "--brand=Moen"]] {
        let mut all = vec!["search", "shower", "--index", idx];
        all.extend(args);
        let (ok, _, stderr) = shelfrank(&all);
        assert!(!ok, "{args:?}");
        assert!(
            stderr.contains("price") && stderr.contains("negative"),
            "{stderr}"
        );
    }
    let (ok, stdout, stderr) = shelfrank(&[
        "search", "shower", "--index", idx, "--json", "--brand", "moen",
    ]);
    assert!(ok, "{stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let ids: Vec<&str> = v["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec!["p002"], "the only Moen product");
    let out = tmp.path().join("eval");
    let (ok, stdout, stderr) = shelfrank(&[
        "eval",
        "--index",
        idx,
        "--queries",
        "fixtures/queries.tsv",
        "--qrels",
        "fixtures/qrels.txt",
        "--modes",
        "bm25,dense,hybrid,rrf,weighted:0.5",
        "--out",
        out.to_str().unwrap(),
        "--quiet",
    ]);
    assert!(ok, "{stderr}");
    for m in [
        "bm25",
        "dense",
        "hybrid",
        "rrf",
        "weighted:0.5",
        "NDCG@10",
        "Recall@100",
        "MRR@10",
    ] {
        assert!(stdout.contains(m), "{m} missing from {stdout}");
    }
    assert!(out.join("report.json").is_file());
    assert!(out.join("run.bm25.txt").is_file());
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    // BM25 finds the graded products of these easy fixture queries.
    let bm25 = &report[0];
    assert_eq!(bm25["mode"], "bm25");
    assert!(bm25["ndcg_at_10"].as_f64().unwrap() > 0.8, "{bm25}");
}

#[test]
fn bad_catalog_lines_name_file_line_and_field() {
    let tmp = tempfile::tempdir().unwrap();
    let cat = tmp.path().join("bad.jsonl");
    std::fs::write(
        &cat,
        "{\"id\":\"a\",\"title\":\"ok\"}\n{\"id\":\"b\",\"title\":\"x\",\"price\":-2}\n{\"id\":\"c\"}\n",
    )
    .unwrap();
    let index = tmp.path().join("idx");
    let (ok, _, stderr) = build_with(&cat, &index, &[]);
    assert!(!ok);
    assert!(
        stderr.contains("bad.jsonl:2") && stderr.contains("price"),
        "{stderr}"
    );
    assert!(!index.exists(), "no index is written on failure");
    let (ok, stdout, stderr) = build_with(&cat, &index, &["--skip-invalid"]);
    assert!(ok, "{stderr}");
    assert!(stderr.contains("skipped 2 invalid lines"), "{stderr}");
    assert!(
        stderr.contains("bad.jsonl:3") && stderr.contains("title"),
        "{stderr}"
    );
    assert!(stdout.contains("1 products"), "{stdout}");
}

#[test]
fn latin1_catalog_needs_the_flag() {
    let tmp = tempfile::tempdir().unwrap();
    let cat = tmp.path().join("latin1.jsonl");
    let mut bytes = b"{\"id\":\"1\",\"title\":\"Caf".to_vec();
    bytes.push(0xE9); // é in Latin-1
    bytes.extend_from_slice(b" table\"}\n");
    std::fs::write(&cat, bytes).unwrap();
    let index = tmp.path().join("idx");
    let (ok, _, stderr) = build_with(&cat, &index, &[]);
    assert!(!ok);
    assert!(
        stderr.contains("latin1.jsonl:1") && stderr.contains("--encoding latin1"),
        "{stderr}"
    );
    let (ok, _, stderr) = build_with(&cat, &index, &["--encoding", "latin1"]);
    assert!(ok, "{stderr}");
    let (ok, stdout, _) = shelfrank(&[
        "search",
        "café",
        "--index",
        index.to_str().unwrap(),
        "--mode",
        "bm25",
        "--json",
    ]);
    assert!(ok);
    assert!(stdout.contains("Café table"), "{stdout}");
}

#[test]
fn missing_model_says_how_to_fetch_it() {
    let tmp = tempfile::tempdir().unwrap();
    let (ok, _, stderr) = shelfrank(&[
        "build",
        "--catalog",
        "fixtures/catalog.jsonl",
        "--index",
        tmp.path().join("i").to_str().unwrap(),
        "--model",
        tmp.path().join("none").to_str().unwrap(),
    ]);
    assert!(!ok);
    assert!(stderr.contains("scripts/fetch-model.sh"), "{stderr}");
}

#[test]
fn events_train_search_and_rerank_from_the_cli() {
    let tmp = tempfile::tempdir().unwrap();
    let index = tmp.path().join("idx");
    build(&index);
    let idx = index.to_str().unwrap();
    let (ok, stdout, stderr) =
        shelfrank(&["events", "import", "fixtures/events.jsonl", "--index", idx]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("imported 120 events"), "{stdout}");
    let (ok, stdout, stderr) = shelfrank(&[
        "train",
        "--index",
        idx,
        "--tasks",
        "fixtures/personal_queries.tsv",
        "--events",
        "fixtures/events.jsonl",
        "--depth",
        "20",
        "--epochs",
        "3",
        "--quiet",
    ]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("trained the CTR head"), "{stdout}");
    assert!(stderr.contains("position propensities"), "{stderr}");
    assert!(index.join("rank").join("ctr_head.json").is_file());
    let (ok, stdout, stderr) =
        shelfrank(&["search", "white", "--index", idx, "--user", "u1", "--json"]);
    assert!(ok, "{stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert!(v["hits"][0]["breakdown"]["ctr"].is_number(), "{stdout}");
    // The table explains a personalised hit: head probability, profile, and how far
    // the query, the shopper's history and popularity moved the head's score.
    let (ok, stdout, stderr) = shelfrank(&["search", "white", "--index", idx, "--user", "u1"]);
    assert!(ok, "{stderr}");
    let first = stdout.lines().nth(2).unwrap_or_default();
    for part in ["ctr=", "profile=", "why: query ", "shopper ", "popularity "] {
        assert!(first.contains(part), "{part:?} missing: {stdout}");
    }
    let cands = tmp.path().join("cands.txt");
    std::fs::write(&cands, "p032\t2.5\nunknown-id\t1.0\np033\t0.7\n").unwrap();
    let rerank = |extra: &[&str]| {
        let mut args = vec![
            "rerank",
            "--index",
            idx,
            "--query",
            "grill",
            "--candidates",
            cands.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        shelfrank(&args)
    };
    let (ok, stdout, stderr) = rerank(&["--user", "u2"]);
    assert!(ok, "{stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["unknown"][0], "unknown-id");
    assert_eq!(v["hits"].as_array().unwrap().len(), 2);
    let (ok, stdout, stderr) = rerank(&["--table"]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("not in the index: unknown-id"), "{stdout}");
    assert_eq!(
        stdout.lines().filter(|l| l.contains(" p03")).count(),
        2,
        "{stdout}"
    );
    // Integer ids are accepted; a bare JSON object, a NaN score or a repeated id is not.
    std::fs::write(&cands, r#"[{"id": "p032", "score": 2}, {"id": 12345}]"#).unwrap();
    let (ok, stdout, stderr) = rerank(&[]);
    assert!(ok, "{stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["unknown"][0], "12345");
    for (text, words) in [
        (r#"{"id": "p032", "score": 2}"#, "not an array"),
        ("p032\tNaN\n", "not a finite number"),
        ("p032\np033\np032\n", "listed twice"),
    ] {
        std::fs::write(&cands, text).unwrap();
        let (ok, _, stderr) = rerank(&[]);
        assert!(!ok, "{text}");
        assert!(stderr.contains(words), "{text}: {stderr}");
    }
    let (ok, stdout, _) = shelfrank(&["events", "forget", "u1", "--index", idx]);
    assert!(ok);
    assert!(stdout.contains("forgot u1"), "{stdout}");
    let out = tmp.path().join("pe");
    let (ok, stdout, stderr) = shelfrank(&[
        "eval",
        "--index",
        idx,
        "--personal-queries",
        "fixtures/personal_queries.tsv",
        "--events",
        "fixtures/events.jsonl",
        "--modes",
        "hybrid,profile,ctr",
        "--out",
        out.to_str().unwrap(),
        "--quiet",
    ]);
    assert!(ok, "{stderr}");
    for m in ["HR@10", "MRR@100", "+profile", "+ctr"] {
        assert!(stdout.contains(m), "{m}: {stdout}");
    }
}

/// `shelfrank embed-bench` on the fixture catalog with the tiny model, plus `extra`.
fn embed_bench(extra: &[&str]) -> (bool, String, String) {
    let mut args = vec![
        "embed-bench",
        "--catalog",
        "fixtures/catalog.jsonl",
        "--model",
        "fixtures/tiny-bert",
    ];
    args.extend_from_slice(extra);
    shelfrank(&args)
}

#[test]
fn embed_bench_measures_each_batch_size_and_agreement_with_the_cpu() {
    let (ok, stdout, stderr) = embed_bench(&[
        "--dtype",
        "bf16",
        "--batch-size",
        "4,16",
        "--repeat",
        "1",
        "--queries",
        "2",
        "--compare-cpu",
        "20",
    ]);
    assert!(ok, "{stderr}");
    let machine = stdout.lines().next().unwrap_or_default();
    assert!(
        machine.starts_with("machine: ") && machine.contains("cores, SIMD "),
        "{stdout}"
    );
    for needle in [
        "batch 4 (cpu, bf16",
        "batch 16 (cpu, bf16",
        "single query (cpu, bf16",
    ] {
        assert!(stdout.contains(needle), "{needle:?} missing from {stdout}");
    }
    let line = stdout
        .lines()
        .find(|l| l.contains("cosine to cpu f32"))
        .unwrap_or_else(|| panic!("no agreement line in {stdout}"));
    let lowest: f64 = line
        .split("lowest ")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no lowest cosine in {line}"));
    assert!(lowest > 0.99 && lowest <= 1.0 + 1e-9, "{line}");
    assert!(line.contains("over 20 titles"), "{line}");

    let (ok, _, stderr) = embed_bench(&["--batch-size", "0"]);
    assert!(!ok);
    assert!(stderr.contains("--batch-size"), "{stderr}");
    let (ok, _, stderr) = embed_bench(&["--dtype", "int3"]);
    assert!(!ok);
    assert!(
        stderr.contains("expected f32, f16, bf16 or int8"),
        "{stderr}"
    );
}

#[test]
fn embed_bench_runs_a_forced_fallback_kernel_and_names_it() {
    let quick = ["--batch-size", "4", "--repeat", "1", "--queries", "1"];
    for (dtype, flag, kernel) in [
        ("bf16", "--bf16-kernel", "portable"),
        ("int8", "--int8-kernel", "scalar"),
    ] {
        let mut args = vec!["--dtype", dtype, flag, kernel];
        args.extend_from_slice(&quick);
        let (ok, stdout, stderr) = embed_bench(&args);
        assert!(ok, "{stderr}");
        let machine = stdout.lines().next().unwrap_or_default();
        assert!(machine.contains(", bf16 kernel "), "{machine}");
        let at = format!("(cpu, {dtype} ({kernel}), ");
        assert!(stdout.contains(&format!("batch 4 {at}")), "{stdout}");
        // A kernel flag for another precision, or a kernel that does not exist.
        let (ok, _, stderr) = embed_bench(&["--dtype", "f32", flag, kernel]);
        assert!(
            !ok && stderr.contains(&format!("{flag} needs --dtype {dtype}")),
            "{stderr}"
        );
        let (ok, _, stderr) = embed_bench(&["--dtype", dtype, flag, "sse9"]);
        assert!(!ok && stderr.contains("expected "), "{stderr}");
    }
}

#[test]
fn tune_refuses_a_half_precision_dtype() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("tuned");
    let (ok, _, stderr) = shelfrank(&[
        "tune",
        "--index",
        tmp.path().join("none").to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--dtype",
        "f16",
        "--queries",
        "fixtures/queries.tsv",
        "--qrels",
        "fixtures/qrels.txt",
    ]);
    assert!(!ok);
    assert!(stderr.contains("tune trains in f32"), "{stderr}");
    assert!(!out.exists());
}

/// `build --quantization int8`, then `hnsw-recall` (recall before and after
/// rescoring) and `search-bench` (latency per mode, serving RSS) on it; a bad
/// quantization name is refused.
#[test]
fn int8_build_recall_and_search_bench() {
    let tmp = tempfile::tempdir().unwrap();
    let index = tmp.path().join("idx");
    let (ok, _, stderr) = build_with(
        Path::new("fixtures/catalog.jsonl"),
        &index,
        &["--quantization", "int4"],
    );
    assert!(
        !ok && stderr.contains("int4") && stderr.contains("int8"),
        "{stderr}"
    );
    let (ok, _, stderr) = build_with(
        Path::new("fixtures/catalog.jsonl"),
        &index,
        &["--quantization", "int8"],
    );
    assert!(ok, "{stderr}");
    let idx = index.to_str().unwrap();
    let (ok, stdout, stderr) = shelfrank(&[
        "hnsw-recall",
        "--index",
        idx,
        "--model",
        "fixtures/tiny-bert",
        "--ef",
        "16,64",
    ]);
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("before rescoring") && stdout.contains("graph vectors int8"),
        "{stdout}"
    );
    let row = stdout.lines().find(|l| l.starts_with("| 64 |")).unwrap();
    let cells: Vec<&str> = row.split('|').map(str::trim).collect();
    let (after, before): (f64, f64) = (cells[2].parse().unwrap(), cells[3].parse().unwrap());
    assert!(after >= before && after > 0.9, "{row}");
    let (ok, _, stderr) = shelfrank(&["events", "import", "fixtures/events.jsonl", "--index", idx]);
    assert!(ok, "{stderr}");
    let (ok, stdout, stderr) = shelfrank(&[
        "search-bench",
        "--index",
        idx,
        "--model",
        "fixtures/tiny-bert",
        "--queries",
        "fixtures/queries.tsv",
        "--personal-queries",
        "fixtures/personal_queries.tsv",
        "--repeat",
        "1",
        "--limit",
        "5",
    ]);
    assert!(ok, "{stderr}");
    for mode in [
        "| bm25 | 5 |",
        "| dense | 5 |",
        "| hybrid | 5 |",
        "| personal | 5 |",
    ] {
        assert!(stdout.contains(mode), "{mode} missing: {stdout}");
    }
    assert!(
        stdout.contains("serving RSS") && stdout.contains("graph vectors int8"),
        "{stdout}"
    );
    // Linux splits RSS into the heap and mapped files.
    if cfg!(target_os = "linux") {
        assert!(stdout.contains("anonymous (heap)"), "{stdout}");
    }
}

/// `shelfrank embed-bench | head -0`: the reader goes away before the first line is
/// written. The command must end quietly (status 0, no panic about stdout), as
/// command-line tools do when their output is cut short.
#[test]
fn a_closed_stdout_ends_the_command_quietly() {
    use std::io::Read;
    use std::process::Stdio;
    let mut child = Command::new(env!("CARGO_BIN_EXE_shelfrank"))
        .args([
            "embed-bench",
            "--catalog",
            "fixtures/catalog.jsonl",
            "--model",
            "fixtures/tiny-bert",
            "--limit",
            "8",
            "--repeat",
            "1",
            "--queries",
            "1",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run shelfrank");
    // Close the read end at once: loading the model takes far longer than this,
    // so the first line meets a closed pipe.
    drop(child.stdout.take());
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let status = child.wait().unwrap();
    assert!(
        !stderr.contains("panicked") && !stderr.contains("Broken pipe"),
        "{stderr}"
    );
    assert!(status.success(), "{status}: {stderr}");
}
