//! Kill test for the event store: every append acknowledged before the process is killed
//! (SIGKILL, no chance to clean up) is in the store when it is opened again.
//!
//! The test re-runs its own binary as a child (marked by [`CHILD_ENV`]) that appends events
//! one at a time and prints `ack N` after each append returns. The parent kills it once it has
//! seen [`MIN_ACKS`] acknowledgements, reopens the store and checks every acknowledged event.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use shelfrank::profile::{Event, EventKind, EventStore};

/// Set (to the store directory) in the child process.
const CHILD_ENV: &str = "SHELFRANK_DURABILITY_CHILD";

/// How many acknowledged appends the parent waits for before killing the child.
const MIN_ACKS: u64 = 200;

/// The child stops by itself after this many events, should it never be killed.
const MAX_EVENTS: u64 = 100_000;

/// How long the parent waits for the child's next line before giving up.
const LINE_TIMEOUT: Duration = Duration::from_secs(120);

/// The name of the test function below.
const TEST_FN: &str = "acknowledged_events_survive_sigkill";

/// The `n`th event the child appends: every field set, and an item id unique to `n`.
fn event(n: u64) -> Event {
    let mut e = Event::new(
        format!("user{}", n % 7),
        format!("item{n}"),
        EventKind::ALL[(n % 4) as usize],
        1_317_551_520 + (n / 3) as i64,
    );
    e.quantity = Some(n as f64 * 0.5 + 0.5);
    e.query = Some(format!("query {n}"));
    e.position = Some((n % 50) as u32);
    e
}

/// The child: appends events one by one, acknowledging each on stdout, until killed.
fn run_child(dir: &Path) {
    let mut store = EventStore::open(dir).expect("child: open the store");
    let mut out = std::io::stdout().lock();
    // End the line libtest may have started ("test NAME ... "), so each ack has its own.
    writeln!(out).expect("child: write");
    for n in 0..MAX_EVENTS {
        store.append(&[event(n)]).expect("child: append");
        writeln!(out, "ack {n}").expect("child: write ack");
        out.flush().expect("child: flush ack");
    }
}

/// The full name libtest knows this test by, for `--exact`.
fn test_name() -> String {
    match module_path!().split_once("::") {
        Some((_, path)) => format!("{path}::{TEST_FN}"),
        None => TEST_FN.to_owned(),
    }
}

#[test]
fn acknowledged_events_survive_sigkill() {
    if let Some(dir) = std::env::var_os(CHILD_ENV) {
        run_child(Path::new(&dir));
        return;
    }

    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().join("events");
    let exe = std::env::current_exe().expect("current exe");
    let mut child = Command::new(exe)
        .args(["--exact", &test_name(), "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, &dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the child");

    // A reader thread forwards the child's stdout lines, so that the wait can time out.
    let stdout = child.stdout.take().expect("child stdout");
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let parse_ack = |line: &str| {
        line.strip_prefix("ack ")
            .and_then(|n| n.trim().parse::<u64>().ok())
    };

    let mut last_acked = None;
    let mut acks = 0u64;
    while acks < MIN_ACKS {
        match rx.recv_timeout(LINE_TIMEOUT) {
            Ok(line) => {
                if let Some(n) = parse_ack(&line) {
                    assert_eq!(n, last_acked.map_or(0, |l| l + 1), "acks out of order");
                    last_acked = Some(n);
                    acks += 1;
                }
            }
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                let mut err = String::new();
                if let Some(mut stderr) = child.stderr.take() {
                    let _ = stderr.read_to_string(&mut err);
                }
                panic!("child stopped after {acks} acks ({e:?}); its stderr:\n{err}");
            }
        }
    }
    child.kill().expect("kill the child");
    let status = child.wait().expect("wait for the child");
    // Acks already in the pipe were printed after their append returned: they count too.
    reader.join().expect("reader thread");
    for line in rx.try_iter() {
        if let Some(n) = parse_ack(&line) {
            last_acked = Some(n);
        }
    }
    let last_acked = last_acked.expect("at least one ack");

    let mut store = EventStore::open(&dir).expect("reopen the store after the kill");
    eprintln!(
        "child {status}; last ack {last_acked}; reopened with {} events, {} torn bytes cut",
        store.len(),
        store.recovered_bytes()
    );
    let by_item: HashMap<&str, &Event> = store.iter().map(|e| (e.item.as_str(), e)).collect();
    assert_eq!(by_item.len(), store.len(), "an event was stored twice");
    for n in 0..=last_acked {
        let expected = event(n);
        match by_item.get(expected.item.as_str()) {
            Some(found) => assert_eq!(**found, expected, "event {n} changed"),
            None => panic!("acknowledged event {n} is missing (last ack {last_acked})"),
        }
    }
    // At most the one append in flight when the child died is there beyond the acks.
    let extra = store.len() as u64 - (last_acked + 1);
    assert!(extra <= 1, "{extra} unacknowledged events");
    if extra == 1 {
        let next = event(last_acked + 1);
        assert_eq!(by_item.get(next.item.as_str()).copied(), Some(&next));
    }
    for user in store.users() {
        let events = store.user_events(user);
        assert!(
            events.windows(2).all(|w| w[0].ts <= w[1].ts),
            "{user} out of order"
        );
    }

    // The recovered store takes new events and survives another reopen.
    let count = store.len();
    store
        .append(&[event(MAX_EVENTS)])
        .expect("append after recovery");
    drop(store);
    let store = EventStore::open(&dir).expect("reopen after recovery");
    assert_eq!(store.len(), count + 1);
    assert_eq!(store.recovered_bytes(), 0);
}
