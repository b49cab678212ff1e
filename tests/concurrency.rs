//! Several OS processes sharing one index, as a shop runs it: searches while imports,
//! forgets and compactions run in other processes. Every acknowledged event must be
//! in the store afterwards, no forgotten shopper may come back, and a retried import
//! must store nothing twice.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use shelfrank::EngineBuilder;

fn command(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_shelfrank"));
    c.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
    c
}

fn run(args: &[&str]) -> Output {
    command(args).output().expect("run shelfrank")
}

/// `shelfrank events import FILE --index INDEX [--wait]`, as a child process.
fn import_command(file: &Path, index: &str, wait: bool) -> Command {
    let mut c = command(&["events", "import", file.to_str().unwrap(), "--index", index]);
    if wait {
        c.arg("--wait");
    }
    c
}

fn import(file: &Path, index: &str, wait: bool) -> Output {
    import_command(file, index, wait)
        .output()
        .expect("run shelfrank")
}

fn spawn_import(file: &Path, index: &str, wait: bool) -> Child {
    import_command(file, index, wait)
        .spawn()
        .expect("spawn shelfrank")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Writes `count` distinct events (file number `file`) for `users` shoppers, with long
/// query fields so that appends take a while.
fn events_file(dir: &Path, file: usize, count: usize, users: usize) -> PathBuf {
    let path = dir.join(format!("events-{file}.jsonl"));
    let mut body = String::new();
    let filler = "cordless drill with two batteries and a case ".repeat(6);
    for n in 0..count {
        body.push_str(&format!(
            "{{\"user\": \"u{}\", \"item\": \"p{:03}\", \"kind\": \"click\", \"ts\": {}, \"query\": \"{filler}{file} {n}\"}}\n",
            n % users,
            1 + n % 40,
            1_600_000_000 + (file * count + n) as i64
        ));
    }
    std::fs::write(&path, body).unwrap();
    path
}

fn stored_events(index: &Path) -> usize {
    EngineBuilder::new(index)
        .keyword_only(true)
        .build()
        .unwrap()
        .event_count()
        .unwrap()
}

fn user_events(index: &Path, user: &str) -> usize {
    EngineBuilder::new(index)
        .keyword_only(true)
        .build()
        .unwrap()
        .profile(user, 2_000_000_000)
        .unwrap()
        .events
}

fn imported(out: &Output) -> usize {
    let stdout = text(&out.stdout);
    stdout
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count in {stdout:?}"))
}

/// Runs searches (with a shopper, so the event store is read) in a loop until `stop`
/// says so; returns how many ran, panicking on the first failure.
fn search_loop(index: PathBuf, stop: std::sync::Arc<std::sync::atomic::AtomicBool>) -> usize {
    let mut n = 0;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) || n == 0 {
        let out = run(&[
            "search",
            "drill",
            "--index",
            index.to_str().unwrap(),
            "--user",
            &format!("u{}", n % 7),
            "--mode",
            "bm25",
        ]);
        assert!(
            out.status.success(),
            "search {n} failed: {}",
            text(&out.stderr)
        );
        n += 1;
    }
    n
}

#[test]
fn searches_during_twenty_concurrent_imports_lose_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let index = common::build_index(tmp.path(), "idx");
    let files: Vec<PathBuf> = (0..20)
        .map(|f| events_file(tmp.path(), f, 2_000, 50))
        .collect();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let searcher = {
        let (index, stop) = (index.clone(), stop.clone());
        std::thread::spawn(move || search_loop(index, stop))
    };
    let idx = index.to_str().unwrap();
    let children: Vec<Child> = files.iter().map(|f| spawn_import(f, idx, true)).collect();
    let mut total = 0;
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
        total += imported(&out);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let searches = searcher.join().unwrap();
    assert!(searches > 0);
    assert_eq!(total, 40_000);
    assert_eq!(stored_events(&index), 40_000);
    // The store is whole for a writer too (no torn tail was left to cut).
    let again = run(&[
        "events",
        "import",
        files[3].to_str().unwrap(),
        "--index",
        idx,
    ]);
    assert!(again.status.success(), "{}", text(&again.stderr));
    assert_eq!(imported(&again), 0, "{}", text(&again.stdout));
    assert_eq!(stored_events(&index), 40_000);
}

#[test]
fn two_writers_one_waits_or_is_refused_and_a_retry_stores_nothing_twice() {
    let tmp = tempfile::tempdir().unwrap();
    let index = common::build_index(tmp.path(), "idx");
    let idx = index.to_str().unwrap();
    let a = events_file(tmp.path(), 1, 30_000, 100);
    let b = events_file(tmp.path(), 2, 30_000, 100);
    let first = spawn_import(&a, idx, false);
    let second = spawn_import(&b, idx, false);
    let outs = [
        first.wait_with_output().unwrap(),
        second.wait_with_output().unwrap(),
    ];
    let mut acknowledged = 0;
    for out in &outs {
        if out.status.success() {
            acknowledged += imported(out);
        } else {
            let err = text(&out.stderr);
            assert!(err.contains("is being written by pid"), "{err}");
        }
    }
    assert!(acknowledged >= 30_000);
    assert_eq!(stored_events(&index), acknowledged);
    // Retry both (the failed one and the acknowledged one), waiting this time.
    for file in [&a, &b] {
        let out = import(file, idx, true);
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
    assert_eq!(stored_events(&index), 60_000);
}

#[test]
fn an_import_racing_a_forget_never_brings_the_shopper_back() {
    let tmp = tempfile::tempdir().unwrap();
    let index = common::build_index(tmp.path(), "idx");
    let idx = index.to_str().unwrap();
    let file = events_file(tmp.path(), 0, 50_000, 10);
    let importer = spawn_import(&file, idx, true);
    std::thread::sleep(std::time::Duration::from_millis(80));
    let forget = run(&["events", "forget", "u5", "--index", idx, "--wait"]);
    assert!(forget.status.success(), "{}", text(&forget.stderr));
    let imported_out = importer.wait_with_output().unwrap();
    assert!(
        imported_out.status.success(),
        "{}",
        text(&imported_out.stderr)
    );
    // Whichever ran first, u5 is gone and every other event is stored.
    assert_eq!(user_events(&index, "u5"), 0);
    assert_eq!(stored_events(&index), 45_000);
    // A retried import does not bring u5 back either, nor duplicate anything.
    let again = import(&file, idx, false);
    assert!(again.status.success(), "{}", text(&again.stderr));
    assert_eq!(user_events(&index, "u5"), 0);
    assert_eq!(stored_events(&index), 45_000);
}

#[test]
fn searches_during_compactions_see_a_whole_store() {
    let tmp = tempfile::tempdir().unwrap();
    let index = common::build_index(tmp.path(), "idx");
    let idx = index.to_str().unwrap();
    let file = events_file(tmp.path(), 0, 20_000, 40);
    let out = import(&file, idx, false);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let searcher = {
        let (index, stop) = (index.clone(), stop.clone());
        std::thread::spawn(move || search_loop(index, stop))
    };
    // Each forget rewrites the snapshot and resets the log (a compaction), while
    // imports append in between.
    for round in 0..6 {
        let user = format!("u{}", 20 + round);
        let out = run(&["events", "forget", &user, "--index", idx, "--wait"]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let extra = events_file(tmp.path(), 100 + round, 500, 3);
        let out = import(&extra, idx, true);
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(searcher.join().unwrap() > 0);
    assert_eq!(stored_events(&index), 20_000 - 6 * 500 + 6 * 500);
    // No temporary file of the writer was deleted by a reader, and none is left.
    let leftovers: Vec<String> = std::fs::read_dir(index.join("events"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}
