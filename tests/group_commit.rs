//! Group commit of `Engine::record_many` (issue #10): concurrent calls share fsyncs,
//! each call's batch stands or falls alone, and readers never wait for a writer's
//! fsync. The tests hold the first group's leader inside its disk step with the
//! `events-before-write` fail point (a callback that blocks until the test releases
//! it), so what queues behind it is deterministic, not a matter of timing. Needs the
//! `failpoints` feature.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use shelfrank::{Engine, EngineBuilder, Event, EventKind, SearchRequest};

/// How long anything in these tests may take before it counts as hung.
const PATIENCE: Duration = Duration::from_secs(60);

const POINT: &str = "events-before-write";

/// An engine on a fresh fixture index (tiny model).
fn engine(dir: &std::path::Path) -> Arc<Engine> {
    let index = common::build_index(dir, "idx");
    Arc::new(EngineBuilder::new(&index).build().unwrap())
}

fn click(user: &str, item: &str, ts: i64) -> Event {
    Event::new(user, item, EventKind::Click, ts)
}

/// Holds the first write that reaches the fail point until the returned sender sends
/// (or is dropped); the receiver hears when it got there. Later writes pass.
fn hold_first_write() -> (Receiver<()>, Sender<()>) {
    hold_first_write_then(false)
}

/// As [`hold_first_write`]; with `abort`, later writes abort the process there.
fn hold_first_write_then(abort: bool) -> (Receiver<()>, Sender<()>) {
    let (reached_tx, reached_rx) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let first = AtomicBool::new(true);
    let reached_tx = Mutex::new(reached_tx);
    let go_rx = Mutex::new(go_rx);
    fail::cfg_callback(POINT, move || {
        if first.swap(false, Ordering::SeqCst) {
            let _ = reached_tx.lock().unwrap().send(());
            let _ = go_rx.lock().unwrap().recv_timeout(PATIENCE);
        } else if abort {
            std::process::abort();
        }
    })
    .unwrap();
    (reached_rx, go_tx)
}

/// Waits until `n` record calls are queued behind the group being written.
fn wait_for_queue(engine: &Engine, n: usize) {
    let start = Instant::now();
    loop {
        let waiting = engine.commit_stats().unwrap().waiting;
        if waiting == n {
            return;
        }
        assert!(waiting < n, "{waiting} calls queued, expected {n}");
        assert!(
            start.elapsed() < PATIENCE,
            "only {waiting} of {n} calls queued"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

type Call = std::thread::JoinHandle<shelfrank::Result<()>>;

/// Waits until `call` is held at the fail point and returns it; fails with what the
/// call returned if it ended without getting there.
fn held(reached: &Receiver<()>, call: Call) -> Call {
    if reached.recv_timeout(PATIENCE).is_ok() {
        return call;
    }
    if call.is_finished() {
        panic!(
            "the call ended before its disk step: {:?}",
            call.join().unwrap()
        );
    }
    panic!("the call did not reach its disk step in {PATIENCE:?}");
}

/// Runs `record_many(events)` on a thread.
fn spawn_record(engine: &Arc<Engine>, events: Vec<Event>) -> Call {
    let engine = Arc::clone(engine);
    std::thread::spawn(move || engine.record_many(&events))
}

#[test]
fn concurrent_record_calls_share_one_fsync_per_group() {
    let _scenario = fail::FailScenario::setup();
    let tmp = tempfile::tempdir().unwrap();
    let engine = engine(tmp.path());
    let (reached, go) = hold_first_write();
    // The first call leads the first group and is held in its disk step...
    let first = spawn_record(&engine, vec![click("u0", "p001", 1_700_000_000)]);
    let first = held(&reached, first);
    // ...while 7 more calls arrive and queue behind it.
    let others: Vec<_> = (1..8)
        .map(|t| {
            let events = (0..3)
                .map(|i| {
                    click(
                        &format!("u{t}"),
                        &format!("p{:03}", 1 + t * 3 + i),
                        1_700_000_000 + i as i64,
                    )
                })
                .collect();
            spawn_record(&engine, events)
        })
        .collect();
    wait_for_queue(&engine, 7);
    go.send(()).unwrap();
    first.join().unwrap().unwrap();
    for h in others {
        h.join().unwrap().unwrap();
    }
    let stats = engine.commit_stats().unwrap();
    assert_eq!((stats.calls, stats.groups), (8, 2), "{stats:?}");
    // The first write reopened the store for writing; its two groups were two fsyncs.
    assert_eq!(stats.log_syncs, 2, "{stats:?}");
    assert_eq!(stats.waiting, 0);
    assert_eq!(engine.event_count().unwrap(), 1 + 7 * 3);
    for t in 1..8 {
        assert_eq!(
            engine
                .profile(&format!("u{t}"), 2_000_000_000)
                .unwrap()
                .events,
            3
        );
    }
    // All of it is on disk.
    let dir = engine.dir().to_path_buf();
    drop(engine);
    assert_eq!(
        EngineBuilder::new(&dir)
            .build()
            .unwrap()
            .event_count()
            .unwrap(),
        22
    );
}

#[test]
fn readers_do_not_wait_for_a_writer_in_its_disk_step() {
    let _scenario = fail::FailScenario::setup();
    let tmp = tempfile::tempdir().unwrap();
    let engine = engine(tmp.path());
    engine.record(click("u1", "p002", 1_600_000_000)).unwrap();
    let (reached, go) = hold_first_write();
    let writer = spawn_record(&engine, vec![click("u1", "p003", 1_600_000_001)]);
    let writer = held(&reached, writer);
    // The writer is stuck in its disk step (it holds the log, and its turn). Reads
    // run on another thread so that a read that blocked fails the test, not hangs it.
    let (done_tx, done_rx) = mpsc::channel();
    let reader = {
        let engine = Arc::clone(&engine);
        std::thread::spawn(move || {
            let profile = engine.profile("u1", 2_000_000_000).unwrap();
            let count = engine.event_count().unwrap();
            let mut req = SearchRequest::new("shower head").user("u1").k(5);
            req.as_of = Some(2_000_000_000);
            let hits = engine.search(&req).unwrap();
            let stats = engine.commit_stats().unwrap();
            done_tx
                .send((profile.events, count, hits.len(), stats.waiting))
                .unwrap();
        })
    };
    let read = done_rx.recv_timeout(Duration::from_secs(20));
    let writer_still_held = !writer.is_finished();
    go.send(()).unwrap();
    let (events, count, hits, waiting) = read.expect("a read waited for the writer's fsync");
    assert!(
        writer_still_held,
        "the writer finished before the reads: proves nothing"
    );
    // The reads saw the store as it was before the unacknowledged write.
    assert_eq!((events, count, waiting), (1, 1, 0));
    assert!(hits > 0);
    reader.join().unwrap();
    writer.join().unwrap().unwrap();
    assert_eq!(engine.profile("u1", 2_000_000_000).unwrap().events, 2);
    assert_eq!(engine.event_count().unwrap(), 2);
}

#[test]
fn a_bad_batch_in_a_group_fails_alone() {
    let _scenario = fail::FailScenario::setup();
    let tmp = tempfile::tempdir().unwrap();
    let engine = engine(tmp.path());
    engine.record(click("gone", "p001", 1_600_000_000)).unwrap();
    engine.forget("gone").unwrap();
    let (reached, go) = hold_first_write();
    let first = spawn_record(&engine, vec![click("a", "p001", 1_600_000_000)]);
    let first = held(&reached, first);
    let good = spawn_record(
        &engine,
        vec![
            click("b", "p002", 1_600_000_000),
            click("b", "p003", 1_600_000_001),
        ],
    );
    // Refused by the store's checks, inside the group: a forgotten shopper's old event,
    // a bad field (an empty user).
    let forgotten = spawn_record(
        &engine,
        vec![
            click("c", "p004", 1_600_000_000),
            click("gone", "p005", 1_600_000_000),
        ],
    );
    let bad_field = spawn_record(
        &engine,
        vec![
            click("d", "p006", 1_600_000_000),
            click(" ", "p007", 1_600_000_000),
        ],
    );
    let good2 = spawn_record(&engine, vec![click("e", "p008", 1_600_000_000)]);
    wait_for_queue(&engine, 4);
    // Refused by the engine before it queues: an unknown item.
    let unknown = engine
        .record_many(&[
            click("f", "p009", 1_600_000_000),
            click("f", "nope", 1_600_000_000),
        ])
        .unwrap_err();
    assert!(unknown.to_string().contains("nope"), "{unknown}");
    go.send(()).unwrap();
    first.join().unwrap().unwrap();
    good.join().unwrap().unwrap();
    good2.join().unwrap().unwrap();
    let forgotten = forgotten.join().unwrap().unwrap_err();
    assert!(
        forgotten.to_string().contains("event 2 of 2"),
        "{forgotten}"
    );
    assert!(forgotten.is_user_error(), "{forgotten}");
    let bad_field = bad_field.join().unwrap().unwrap_err();
    assert!(
        bad_field.to_string().contains("event 2 of 2"),
        "{bad_field}"
    );
    assert!(bad_field.is_user_error(), "{bad_field}");
    let stats = engine.commit_stats().unwrap();
    // The first record, the held call, and one group of the four queued behind it.
    assert_eq!((stats.calls, stats.groups), (6, 3), "{stats:?}");
    let check = |engine: &Engine| {
        let n = |u: &str| engine.profile(u, 2_000_000_000).unwrap().events;
        assert_eq!(
            [n("a"), n("b"), n("c"), n("d"), n("e"), n("f"), n("gone")],
            [1, 2, 0, 0, 1, 0, 0]
        );
        assert_eq!(engine.event_count().unwrap(), 4);
    };
    check(&engine);
    let dir = engine.dir().to_path_buf();
    drop(engine);
    check(&EngineBuilder::new(&dir).build().unwrap());
}

/// Many threads, many calls, no fail point: every event is stored once, in memory
/// and on disk, and the books balance.
#[test]
fn many_threads_recording_at_once_store_every_event() {
    // Also keeps the other tests' fail point off this test's writes.
    let _scenario = fail::FailScenario::setup();
    let tmp = tempfile::tempdir().unwrap();
    let engine = engine(tmp.path());
    let threads = 8;
    let calls = 40;
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let engine = Arc::clone(&engine);
            std::thread::spawn(move || {
                for c in 0..calls {
                    let item = format!("p{:03}", 1 + (t * calls + c) % 40);
                    engine
                        .record_many(&[
                            click(&format!("u{t}"), &item, 1_600_000_000 + c as i64),
                            click(&format!("w{t}"), &item, 1_600_000_000 + c as i64),
                        ])
                        .unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let stats = engine.commit_stats().unwrap();
    eprintln!("{stats:?}");
    assert_eq!(stats.calls, (threads * calls) as u64);
    assert!(stats.groups <= stats.calls && stats.log_syncs <= stats.groups);
    assert_eq!(engine.event_count().unwrap(), threads * calls * 2);
    let dir = engine.dir().to_path_buf();
    drop(engine);
    let engine = EngineBuilder::new(&dir).build().unwrap();
    for t in 0..threads {
        assert_eq!(
            engine
                .profile(&format!("u{t}"), 2_000_000_000)
                .unwrap()
                .events,
            calls
        );
        assert_eq!(
            engine
                .profile(&format!("w{t}"), 2_000_000_000)
                .unwrap()
                .events,
            calls
        );
    }
}

// ---- a process killed during a group's write: each batch whole or absent ----

/// Set (to `INDEX<TAB>POINT`) in the child process of the kill tests.
const CHILD_ENV: &str = "SHELFRANK_GROUP_COMMIT_CHILD";

/// The child: the first call is held in its disk step while 7 more queue, each of 3
/// events; then the process aborts (as `kill -9`) in the second group's write, at
/// `point`: before its bytes are written, or after they are written and fsynced.
fn run_child(index: &std::path::Path, point: &str) {
    let engine = Arc::new(EngineBuilder::new(index).build().unwrap());
    let (reached, go) = hold_first_write_then(point == POINT);
    if point != POINT {
        fail::cfg(point, "1*off->return").unwrap();
    }
    child_group(&engine, reached, go);
    panic!("the child was not aborted at {point}");
}

fn child_group(engine: &Arc<Engine>, reached: Receiver<()>, go: Sender<()>) {
    let first = held(&reached, spawn_record(engine, batch(0)));
    let others: Vec<_> = (1..8).map(|t| spawn_record(engine, batch(t))).collect();
    wait_for_queue(engine, 7);
    go.send(()).unwrap();
    first.join().unwrap().unwrap();
    for h in others {
        let _ = h.join();
    }
}

/// Thread `t`'s batch: 3 events of shopper `k{t}`.
fn batch(t: usize) -> Vec<Event> {
    (0..3)
        .map(|i| {
            click(
                &format!("k{t}"),
                &format!("p{:03}", 1 + t * 3 + i),
                1_600_000_000 + i as i64,
            )
        })
        .collect()
}

/// Runs the child on a fresh index, aborting at `point`; returns the reopened engine's
/// event count per batch.
fn kill_during_a_group(point: &str) -> Vec<usize> {
    let tmp = tempfile::tempdir().unwrap();
    let index = common::build_index(tmp.path(), "idx");
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "a_kill_during_a_group_write_keeps_each_batch_whole_or_absent",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, format!("{}\t{point}", index.display()))
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "{point}: the child was not aborted\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let engine = EngineBuilder::new(&index).build().unwrap();
    (0..8)
        .map(|t| {
            engine
                .profile(&format!("k{t}"), 2_000_000_000)
                .unwrap()
                .events
        })
        .collect()
}

#[test]
fn a_kill_during_a_group_write_keeps_each_batch_whole_or_absent() {
    if let Some(arg) = std::env::var_os(CHILD_ENV) {
        let arg = arg.to_string_lossy().into_owned();
        let (index, point) = arg.split_once('\t').unwrap();
        let _scenario = fail::FailScenario::setup();
        run_child(std::path::Path::new(index), point);
        return;
    }
    // Killed before the second group's bytes: the first call's batch only.
    assert_eq!(
        kill_during_a_group("events-before-write"),
        [3, 0, 0, 0, 0, 0, 0, 0]
    );
    // Killed after they were written (not yet acknowledged): every batch, whole.
    assert_eq!(kill_during_a_group("events-appended"), [3; 8]);
}
