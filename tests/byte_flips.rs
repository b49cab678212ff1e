//! Damage every file of a built index, one byte at a time, and open and search
//! the copy: the answer must be an error naming the damaged file or the index's
//! directory, or exactly the undamaged index's answer; never a panic, never an
//! abort. Each mode runs in a child process (this test binary, started again), so
//! an abort or `exit` inside a dependency fails the test instead of killing it.

mod common;

use std::fs;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::process::Command;

use shelfrank::vector::{HnswParams, Quantization};
use shelfrank::{EngineBuilder, SearchRequest};

/// Set in the child: "on" or "off" (checksum verification), with the pristine
/// index's path in [`INDEX_VAR`].
const MODE_VAR: &str = "SHELFRANK_BYTE_FLIP_MODE";
const INDEX_VAR: &str = "SHELFRANK_BYTE_FLIP_INDEX";

/// A hybrid search exercises tantivy, the HNSW graph, the vectors and the
/// products; the answer is the ids with their exact scores.
fn answer(index: &Path, verify: bool) -> shelfrank::Result<Vec<(String, f32, Option<f32>)>> {
    let engine = EngineBuilder::new(index)
        .verify_checksums(verify)
        .load_head(false)
        .build()?;
    let hits = engine.search(&SearchRequest::new("cordless drill shower").k(10))?;
    Ok(hits
        .into_iter()
        .map(|h| (h.id, h.score, h.breakdown.bm25))
        .collect())
}

/// Every file below `dir`, relative, sorted.
fn files(dir: &Path, prefix: &str, out: &mut Vec<String>) {
    let mut entries: Vec<_> = fs::read_dir(dir).unwrap().map(|e| e.unwrap()).collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let name = format!("{prefix}{}", e.file_name().to_string_lossy());
        // The shop's own data is not part of the build (and has its own checks).
        if prefix.is_empty() && (name == "events" || name == "rank") {
            continue;
        }
        if e.file_type().unwrap().is_dir() {
            files(&e.path(), &format!("{name}/"), out);
        } else {
            out.push(name);
        }
    }
}

/// One kind of damage.
#[derive(Debug, Clone, Copy)]
enum Damage {
    Flip(usize),
    TruncateByOne,
}

fn damages(len: usize) -> Vec<Damage> {
    let mut offsets = vec![
        0,
        1,
        7,
        len / 3,
        len / 2,
        len.saturating_sub(2),
        len.saturating_sub(1),
    ];
    offsets.retain(|&o| o < len);
    offsets.sort_unstable();
    offsets.dedup();
    let mut out: Vec<Damage> = offsets.into_iter().map(Damage::Flip).collect();
    if len > 0 {
        out.push(Damage::TruncateByOne);
    }
    out
}

/// The child's work: every damage to every file of the data directory, each on a
/// fresh copy. Prints one line per case (`START` first, so an abort shows where)
/// and returns the lines that break the rule.
fn run_cases(pristine: &Path, verify: bool) -> Vec<String> {
    let expected = answer(pristine, verify).expect("the undamaged index opens");
    let data_rel = common::data_dir(pristine)
        .strip_prefix(pristine)
        .unwrap()
        .to_path_buf();
    let mut names = Vec::new();
    files(&pristine.join(&data_rel), "", &mut names);
    let scratch = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    let mut counts = [0usize; 3]; // error, identical, different
    for name in &names {
        let len = fs::metadata(pristine.join(&data_rel).join(name))
            .unwrap()
            .len() as usize;
        for damage in damages(len) {
            let case = format!("{name} {damage:?}");
            println!("START {case}");
            let copy: PathBuf = scratch.path().join("idx");
            let _ = fs::remove_dir_all(&copy);
            common::copy_tree(pristine, &copy);
            let data = copy.join(&data_rel);
            let path = data.join(name);
            let mut bytes = fs::read(&path).unwrap();
            match damage {
                Damage::Flip(at) => bytes[at] ^= 0xFF,
                Damage::TruncateByOne => {
                    bytes.pop();
                }
            }
            fs::write(&path, &bytes).unwrap();
            let result = catch_unwind(AssertUnwindSafe(|| answer(&copy, verify)));
            let file_name = name.rsplit('/').next().unwrap();
            let line = match result {
                Err(_) => format!("PANIC {case}"),
                Ok(Err(e)) => {
                    counts[0] += 1;
                    let msg = e.to_string();
                    if msg.contains(file_name) || msg.contains(&*data.to_string_lossy()) {
                        format!("error {case}: {}", msg.lines().next().unwrap_or(""))
                    } else {
                        format!("UNNAMED {case}: {msg}")
                    }
                }
                Ok(Ok(got)) if got == expected => {
                    counts[1] += 1;
                    format!("identical {case}")
                }
                Ok(Ok(got)) => {
                    counts[2] += 1;
                    let top: Vec<&str> = got.iter().take(3).map(|h| h.0.as_str()).collect();
                    format!("DIFFERENT {case}: top {top:?}")
                }
            };
            println!("{line}");
            let bad = line.starts_with("PANIC")
                || line.starts_with("UNNAMED")
                // Without checksums, damage to stored numbers (a vector
                // component, a product's price) can only be seen in the answer.
                || (verify && line.starts_with("DIFFERENT"))
                // With checksums, every damaged file is refused, except that
                // a byte of the manifest may not matter (its `source`, say).
                || (verify && line.starts_with("identical") && name != "manifest.json");
            if bad {
                failures.push(line);
            }
        }
    }
    println!(
        "SUMMARY {} files: {} errors, {} identical, {} different",
        names.len(),
        counts[0],
        counts[1],
        counts[2]
    );
    failures
}

/// Entry point of the child process; does nothing in a normal test run.
#[test]
fn child_process_entry() {
    let (Some(mode), Some(index)) = (std::env::var_os(MODE_VAR), std::env::var_os(INDEX_VAR))
    else {
        return;
    };
    let failures = run_cases(Path::new(&index), mode == "on");
    assert!(failures.is_empty(), "{failures:#?}");
}

/// Runs [`run_cases`] in a child process and fails on a panic, an abort, an
/// exit, or a broken rule.
fn run_child(verify: bool, quantization: Quantization) {
    let tmp = tempfile::tempdir().unwrap();
    let index = common::build_index_quantized(tmp.path(), "idx", quantization);
    let output = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_process_entry",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(MODE_VAR, if verify { "on" } else { "off" })
        .env(INDEX_VAR, &index)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let last = stdout.lines().rev().find(|l| l.starts_with("START"));
    assert!(
        output.status.success(),
        "child failed ({:?}); last case started: {last:?}\n--- stdout\n{stdout}\n--- stderr (tail)\n{}",
        output.status,
        stderr.chars().rev().take(4000).collect::<String>().chars().rev().collect::<String>()
    );
    // The outcome of every case, for `--nocapture`.
    for line in stdout.lines().filter(|l| !l.starts_with("START")) {
        eprintln!("{line}");
    }
    let summary = stdout
        .lines()
        .find(|l| l.starts_with("SUMMARY"))
        .unwrap_or("");
    assert!(summary.contains("files"), "{stdout}");
}

#[test]
fn every_damaged_byte_is_refused_with_checksums() {
    run_child(true, HnswParams::default().quantization);
}

#[test]
fn every_damaged_byte_of_a_float32_index_is_refused_with_checksums() {
    run_child(true, Quantization::F32);
}

#[test]
fn no_damaged_byte_panics_or_aborts_without_checksums() {
    run_child(false, Quantization::F32);
}

/// The int8 graph has its own dump layout (one byte a component, other type
/// names), read by the same checker: no damaged byte of it may get past.
#[test]
fn no_damaged_byte_of_an_int8_index_panics_or_aborts_without_checksums() {
    run_child(false, Quantization::Int8);
}
