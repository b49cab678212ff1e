//! Crash tests: a `shelfrank` process aborted (as by `kill -9`: no destructor runs)
//! at each step of a publish, a compaction, a forget and an import leaves an index
//! that opens, searches, and holds every acknowledged event. Needs the `failpoints`
//! feature (`cargo test --features failpoints`), which makes `FAILPOINTS=NAME=return`
//! abort the process at the named step.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use shelfrank::{EngineBuilder, SearchRequest};

fn shelfrank(args: &[&str], failpoint: Option<&str>) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_shelfrank"));
    c.args(args);
    match failpoint {
        Some(name) => c.env("FAILPOINTS", format!("{name}=return")),
        None => c.env_remove("FAILPOINTS"),
    };
    c.output().expect("run shelfrank")
}

fn ok(out: &Output) {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The process stopped at the failpoint (aborted), not by finishing.
fn crashed(out: &Output, point: &str) {
    assert!(
        !out.status.success(),
        "{point}: the process finished; the failpoint was not reached"
    );
}

fn build(index: &Path, failpoint: Option<&str>) -> Output {
    shelfrank(
        &[
            "build",
            "--catalog",
            "fixtures/catalog.jsonl",
            "--index",
            index.to_str().unwrap(),
            "--model",
            "fixtures/tiny-bert",
            "--quiet",
        ],
        failpoint,
    )
}

fn events_file(dir: &Path) -> PathBuf {
    let path = dir.join("events.jsonl");
    let mut body = String::new();
    for n in 0..300 {
        body.push_str(&format!(
            "{{\"user\": \"u{}\", \"item\": \"p{:03}\", \"kind\": \"purchase\", \"ts\": {}}}\n",
            n % 6,
            1 + n % 40,
            1_600_000_000 + n
        ));
    }
    std::fs::write(&path, body).unwrap();
    path
}

/// An index with 300 events of 6 shoppers.
fn index_with_events(dir: &Path) -> PathBuf {
    let index = dir.join("idx");
    ok(&build(&index, None));
    let file = events_file(dir);
    ok(&shelfrank(
        &[
            "events",
            "import",
            file.to_str().unwrap(),
            "--index",
            index.to_str().unwrap(),
        ],
        None,
    ));
    index
}

/// Opens the index, checks it searches, and returns (events, events of `user`).
fn check_index(index: &Path, user: &str) -> (usize, usize) {
    let engine = EngineBuilder::new(index)
        .build()
        .unwrap_or_else(|e| panic!("the index does not open after the crash: {e}"));
    let hits = engine.search(&SearchRequest::new("drill").k(5)).unwrap();
    assert!(!hits.is_empty());
    (
        engine.event_count().unwrap(),
        engine.profile(user, 2_000_000_000).unwrap().events,
    )
}

/// The directories of the index other than events/ and rank/.
fn build_entries(index: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(index)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !["events", "rank", "LOCK", "CURRENT"].contains(&n.as_str()))
        .collect();
    names.sort();
    names
}

#[test]
fn a_crash_at_any_step_of_a_publish_keeps_a_live_generation_and_every_event() {
    for point in [
        "publish-synced",
        "publish-renamed",
        "publish-current",
        "gc-manifest-removed",
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let index = index_with_events(tmp.path());
        crashed(&build(&index, Some(point)), point);
        assert_eq!(check_index(&index, "u1"), (300, 50), "{point}");
        // The next build publishes and clears what the crash left.
        ok(&build(&index, None));
        assert_eq!(check_index(&index, "u1"), (300, 50), "{point}");
        let entries = build_entries(&index);
        assert_eq!(entries.len(), 1, "{point}: {entries:?}");
        assert!(entries[0].starts_with("gen-"), "{point}: {entries:?}");
    }
}

#[test]
fn a_crash_during_forget_or_compaction_loses_nothing_and_forgets_for_good() {
    for point in ["events-snapshot-replaced", "events-log-reset"] {
        let tmp = tempfile::tempdir().unwrap();
        let index = index_with_events(tmp.path());
        let idx = index.to_str().unwrap();
        crashed(
            &shelfrank(&["events", "forget", "u2", "--index", idx], Some(point)),
            point,
        );
        // The snapshot is the commit point: both steps come after it.
        assert_eq!(check_index(&index, "u2"), (250, 0), "{point}");
        // The store takes writes again, and the forgotten shopper stays forgotten.
        let file = events_file(tmp.path());
        ok(&shelfrank(
            &["events", "import", file.to_str().unwrap(), "--index", idx],
            None,
        ));
        assert_eq!(check_index(&index, "u2"), (250, 0), "{point}");
        assert_eq!(check_index(&index, "u1").1, 50, "{point}");
    }
}

#[test]
fn a_crash_after_an_import_is_written_keeps_it_whole_and_a_retry_adds_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let index = tmp.path().join("idx");
    ok(&build(&index, None));
    let idx = index.to_str().unwrap();
    let file = events_file(tmp.path());
    crashed(
        &shelfrank(
            &["events", "import", file.to_str().unwrap(), "--index", idx],
            Some("events-appended"),
        ),
        "events-appended",
    );
    assert_eq!(check_index(&index, "u1"), (300, 50));
    ok(&shelfrank(
        &["events", "import", file.to_str().unwrap(), "--index", idx],
        None,
    ));
    assert_eq!(check_index(&index, "u1"), (300, 50));
}

#[test]
fn a_crash_before_an_import_is_written_stores_none_of_it_and_a_retry_stores_it_once() {
    let tmp = tempfile::tempdir().unwrap();
    let index = index_with_events(tmp.path());
    let idx = index.to_str().unwrap();
    // Another file of 300 events (other times, so other ids).
    let file = tmp.path().join("more.jsonl");
    let body = std::fs::read_to_string(events_file(tmp.path()))
        .unwrap()
        .replace("\"ts\": 16", "\"ts\": 17");
    std::fs::write(&file, body).unwrap();
    let point = "events-before-write";
    crashed(
        &shelfrank(
            &["events", "import", file.to_str().unwrap(), "--index", idx],
            Some(point),
        ),
        point,
    );
    assert_eq!(check_index(&index, "u1"), (300, 50));
    ok(&shelfrank(
        &["events", "import", file.to_str().unwrap(), "--index", idx],
        None,
    ));
    assert_eq!(check_index(&index, "u1"), (600, 100));
}

// ---- review: a long-running writer after another process crashed mid-forget ----

/// An index with 300 events, an engine on it that has recorded one event (so its
/// store is open for writing), and another process's `forget u2` killed after its
/// snapshot rename (the commit point) and before the log reset.
fn engine_after_a_crashed_forget(dir: &Path) -> (PathBuf, shelfrank::Engine) {
    let index = index_with_events(dir);
    let engine = EngineBuilder::new(&index).build().unwrap();
    engine
        .record(shelfrank::Event::new(
            "u1",
            "p001",
            shelfrank::EventKind::Click,
            1_700_000_000,
        ))
        .unwrap();
    let point = "events-snapshot-replaced";
    let forget = ["events", "forget", "u2", "--index", index.to_str().unwrap()];
    crashed(&shelfrank(&forget, Some(point)), point);
    (index, engine)
}

/// An engine that has written once keeps its store open for writing; another
/// process's `forget` crashes after its commit point. The engine's next write must notice the new snapshot
/// (`EventStore::changed_on_disk` compares the snapshot's generation too) and reopen
/// the store, instead of appending to a log every later open discards.
#[test]
fn a_running_engine_keeps_acknowledged_events_after_another_writer_crashed_mid_forget() {
    use shelfrank::{Event, EventKind};
    let tmp = tempfile::tempdir().unwrap();
    let (index, engine) = engine_after_a_crashed_forget(tmp.path());
    // Acknowledged: fsynced, says the API.
    engine
        .record(Event::new("u1", "p002", EventKind::Click, 1_700_000_001))
        .unwrap();
    drop(engine);
    // 300 imported + 2 recorded - 50 of u2.
    assert_eq!(
        check_index(&index, "u1"),
        (252, 52),
        "an acknowledged event of the running engine was lost"
    );
}

/// Same crash; the running engine then forgets another shopper. It must write its
/// snapshot from the store as the crashed forget left it, not from its own stale
/// memory (which still holds u2's events), so u2 stays forgotten.
#[test]
fn a_running_engine_does_not_bring_back_a_shopper_another_writer_forgot_before_crashing() {
    let tmp = tempfile::tempdir().unwrap();
    let (index, engine) = engine_after_a_crashed_forget(tmp.path());
    // The forget of u2 is committed (the crash test above relies on it).
    assert_eq!(check_index(&index, "u2").1, 0);
    engine.forget("u3").unwrap();
    drop(engine);
    assert_eq!(
        check_index(&index, "u2").1,
        0,
        "the forgotten shopper u2 came back"
    );
}

/// A build claims its staging directory by creating a claim file and then locking
/// it. A cleanup by another build's publish that runs between the two steps finds
/// the claim unlocked and removes it; the first build must notice (the path no
/// longer leads to the file it locked) and claim another name, so that no later
/// cleanup deletes its staging directory while it writes.
#[test]
fn a_cleanup_between_creating_and_locking_a_claim_cannot_take_a_running_build() {
    use shelfrank::store::{NewGeneration, WriterLock};
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("idx");
    let publish = |content: &[u8]| {
        let g = NewGeneration::begin(&root).unwrap();
        std::fs::write(g.path().join("manifest.json"), content).unwrap();
        let lock = WriterLock::acquire(&root, false).unwrap();
        g.publish(&lock).unwrap();
    };
    publish(b"one");
    // Build B pauses between creating its first claim file and locking it.
    fail::cfg("staging-claim-created", "1*sleep(3000)").unwrap();
    let b = {
        let root = root.clone();
        std::thread::spawn(move || {
            let g = NewGeneration::begin(&root).unwrap();
            std::fs::write(g.path().join("products.bin"), b"B's build").unwrap();
            g
        })
    };
    // Wait for B's claim file to appear (B then sleeps at the failpoint).
    let claims = || -> Vec<String> {
        std::fs::read_dir(&root)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".lock"))
            .collect()
    };
    let waited = std::time::Instant::now();
    while claims().is_empty() && waited.elapsed().as_secs() < 20 {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let first = claims();
    assert_eq!(first.len(), 1, "B's claim file should exist");
    // Another build publishes in the pause: its cleanup removes B's unlocked claim.
    publish(b"two");
    assert!(
        !claims().contains(&first[0]),
        "the cleanup should have taken B's unlocked claim (the race under test)"
    );
    let b = b.join().unwrap();
    fail::remove("staging-claim-created");
    // B claimed a fresh name; a third publish leaves its staging directory alone.
    publish(b"three");
    assert_eq!(
        std::fs::read(b.path().join("products.bin")).unwrap(),
        b"B's build"
    );
    std::fs::write(b.path().join("manifest.json"), b"four").unwrap();
    let lock = WriterLock::acquire(&root, false).unwrap();
    let live = b.publish(&lock).unwrap();
    assert_eq!(
        std::fs::read(live.join("products.bin")).unwrap(),
        b"B's build"
    );
}

/// A crash while a retrained head is saved (its weights written, its card not yet)
/// keeps the previous head: the card is the commit point and names its own weights.
#[test]
fn a_crash_while_saving_a_head_keeps_the_previous_one() {
    let tmp = tempfile::tempdir().unwrap();
    let index = index_with_events(tmp.path());
    let idx = index.to_str().unwrap();
    let train = |epochs: &str, failpoint: Option<&str>| {
        shelfrank(
            &[
                "train",
                "--index",
                idx,
                "--tasks",
                "fixtures/personal_queries.tsv",
                "--events",
                "fixtures/events.jsonl",
                "--epochs",
                epochs,
                "--quiet",
            ],
            failpoint,
        )
    };
    ok(&train("2", None));
    let scores = |index: &Path| {
        let engine = EngineBuilder::new(index).build().unwrap();
        assert!(engine.head().is_some(), "{:?}", engine.head_warning());
        // A fixed `as_of`: with the default (now), recency moves between two calls.
        let mut req = SearchRequest::new("faucet").user("u2").k(5);
        req.as_of = Some(1_700_000_000);
        engine
            .search(&req)
            .unwrap()
            .iter()
            .map(|h| (h.id.clone(), h.score.to_bits()))
            .collect::<Vec<_>>()
    };
    let before = scores(&index);
    let point = "head-weights-written";
    crashed(&train("4", Some(point)), point);
    assert_eq!(
        scores(&index),
        before,
        "the previous head changed or was lost"
    );
    // The next save succeeds and removes the orphaned weights file.
    ok(&train("4", None));
    let weights: Vec<String> = std::fs::read_dir(index.join("rank"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".safetensors"))
        .collect();
    assert_eq!(weights.len(), 1, "{weights:?}");
}
