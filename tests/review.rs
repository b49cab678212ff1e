//! Review findings that need no failpoints.

use std::path::{Path, PathBuf};
use std::process::Command;

use shelfrank::{EngineBuilder, Event, EventKind};

fn build_index(tmp: &Path) -> PathBuf {
    let index = tmp.join("idx");
    let out = Command::new(env!("CARGO_BIN_EXE_shelfrank"))
        .args([
            "build",
            "--catalog",
            "fixtures/catalog.jsonl",
            "--index",
            index.to_str().unwrap(),
            "--model",
            "fixtures/tiny-bert",
            "--quiet",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    index
}

/// `Engine::record` says the event "is durable (fsynced) when this returns". For a
/// forgotten shopper's event dated before the forget, `record` returns `Ok(())` but
/// the store drops it (`Appended::forgotten`, which `record_many` ignores); the
/// caller cannot tell. The engine's item statistics count it anyway.
#[test]
fn review_record_acknowledges_an_event_it_did_not_store() {
    let tmp = tempfile::tempdir().unwrap();
    let index = build_index(tmp.path());
    let engine = EngineBuilder::new(&index).keyword_only(true).build().unwrap();
    engine
        .record(Event::new("u1", "p001", EventKind::Click, 1_600_000_000))
        .unwrap();
    engine.forget("u1").unwrap();
    let before = engine.event_count().unwrap();
    let acknowledged = engine.record(Event::new("u1", "p002", EventKind::Click, 1_600_000_001));
    let after = engine.event_count().unwrap();
    assert!(
        acknowledged.is_err() || after == before + 1,
        "record returned Ok but stored nothing ({before} -> {after} events)"
    );
}
