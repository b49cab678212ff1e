//! `shelfrank serve` end to end: the real binary on a free port over a fixture
//! index, driven by a blocking HTTP client.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use shelfrank::profile::EventStore;
use shelfrank::store::IndexPaths;

/// A running `shelfrank serve`, killed when dropped.
struct Server {
    child: Child,
    base: String,
    addr: String,
}

impl Server {
    /// Starts the server on `index` with `extra` flags and waits for its
    /// `listening on` line.
    fn start(index: &Path, extra: &[&str]) -> Server {
        let log = index.with_extension("stderr.log");
        let mut child = Command::new(env!("CARGO_BIN_EXE_shelfrank"))
            .args(["serve", "--addr", "127.0.0.1:0", "--index"])
            .arg(index)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("start shelfrank serve");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read the listening line");
        let addr = line
            .trim()
            .strip_prefix("listening on http://")
            .unwrap_or_else(|| {
                panic!(
                    "expected `listening on http://ADDR`, got {line:?}; stderr: {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                )
            })
            .to_string();
        Server {
            child,
            base: format!("http://{addr}"),
            addr,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn pid(&self) -> String {
        self.child.id().to_string()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

/// An answer: status, `Retry-After`, body as JSON (or `Value::Null`), body text.
struct Answer {
    status: u16,
    retry_after: Option<String>,
    json: Value,
    text: String,
}

fn answer(res: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Answer {
    let mut res = res.expect("HTTP exchange");
    let status = res.status().as_u16();
    let retry_after = res
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let text = res.body_mut().read_to_string().expect("body");
    let json = serde_json::from_str(&text).unwrap_or(Value::Null);
    Answer {
        status,
        retry_after,
        json,
        text,
    }
}

fn get(a: &ureq::Agent, url: &str) -> Answer {
    answer(a.get(url).call())
}

fn post(a: &ureq::Agent, url: &str, body: &str, token: Option<&str>) -> Answer {
    let mut req = a.post(url).header("content-type", "application/json");
    if let Some(t) = token {
        req = req.header("authorization", &format!("Bearer {t}"));
    }
    answer(req.send(body))
}

fn delete(a: &ureq::Agent, url: &str, token: Option<&str>) -> Answer {
    let mut req = a.delete(url);
    if let Some(t) = token {
        req = req.header("authorization", &format!("Bearer {t}"));
    }
    answer(req.call())
}

/// The value of the metric line that starts with `prefix` (name and labels).
fn metric(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix) && l[prefix.len()..].starts_with([' ', '{']))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

fn index(dir: &Path) -> PathBuf {
    common::build_index(dir, "index")
}

fn event(user: &str, item: &str, kind: &str, query: &str) -> Value {
    json!({"user": user, "item": item, "kind": kind, "ts": 1_700_000_000, "query": query})
}

#[test]
fn every_endpoint_answers_its_happy_path() {
    let dir = tempfile::tempdir().unwrap();
    let index = index(dir.path());
    let s = Server::start(&index, &[]);
    let a = agent();

    assert_eq!(get(&a, &s.url("/health")).json["status"], "ok");
    let ready = get(&a, &s.url("/ready"));
    assert_eq!(ready.json["ready"], true);
    assert_eq!(ready.json["generation"], 1);
    assert_eq!(ready.json["products"], 40);

    let r = post(
        &a,
        &s.url("/search"),
        r#"{"query": "chrome shower faucet", "k": 3}"#,
        None,
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let hits = r.json["hits"].as_array().unwrap();
    assert_eq!(hits.len(), 3);
    assert!(hits[0]["title"].is_string() && hits[0]["breakdown"]["fused"].is_number());
    assert!(r.json["took_ms"].is_number());

    let r = post(
        &a,
        &s.url("/search"),
        r#"{"query": "faucet", "mode": "bm25", "k": 5, "rerank": "off",
            "filters": {"category": "Bath", "min_price": 0, "max_price": 10000}}"#,
        None,
    );
    assert_eq!(r.status, 200, "{}", r.text);
    for h in r.json["hits"].as_array().unwrap() {
        let p = get(
            &a,
            &s.url(&format!("/products/{}", h["id"].as_str().unwrap())),
        );
        assert_eq!(p.json["category"][0], "Bath", "{}", p.text);
    }

    let r = post(
        &a,
        &s.url("/rerank"),
        r#"{"query": "faucet", "candidates": [{"id": "p001"}, {"id": "p003", "score": 2.0}, {"id": "nope"}], "k": 2}"#,
        None,
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["hits"].as_array().unwrap().len(), 2);
    assert_eq!(r.json["unknown"], json!(["nope"]));

    let p = get(&a, &s.url("/products/p003"));
    assert_eq!(p.status, 200);
    assert_eq!(p.json["id"], "p003");
    assert_eq!(get(&a, &s.url("/products/none-such")).status, 404);

    let body = json!({"events": [event("shopper", "p003", "purchase", "faucet")]});
    let r = post(&a, &s.url("/events"), &body.to_string(), None);
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["accepted"], 1);
    let r = delete(&a, &s.url("/users/shopper"), None);
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["forgotten"], 1);

    let m = get(&a, &s.url("/metrics"));
    assert_eq!(m.status, 200);
    assert!(
        metric(
            &m.text,
            r#"shelfrank_http_requests_total{endpoint="/search",method="POST",status="200"}"#
        ) >= Some(2.0),
        "{}",
        m.text
    );
    assert_eq!(metric(&m.text, "shelfrank_index_generation"), Some(1.0));
    assert_eq!(metric(&m.text, "shelfrank_index_products"), Some(40.0));
    assert!(m
        .text
        .contains("shelfrank_http_request_duration_seconds_bucket"));

    let doc = get(&a, &s.url("/openapi.json"));
    for path in [
        "/search",
        "/rerank",
        "/events",
        "/users/{id}",
        "/products/{id}",
    ] {
        assert!(doc.json["paths"][path].is_object(), "{path} missing");
    }
    assert!(doc.json["components"]["schemas"]["SearchBody"].is_object());
}

#[test]
fn bad_requests_are_4xx_that_name_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let index = index(dir.path());
    let s = Server::start(&index, &["--max-body-bytes", "65536"]);
    let a = agent();
    let search = s.url("/search");
    let cases: &[(&str, u16, Option<&str>)] = &[
        (r#"{"query": "faucet""#, 400, None),
        ("", 400, None),
        (r#"{"query": "faucet"} trailing"#, 400, None),
        (r#"{"query": "faucet", "kk": 3}"#, 400, Some("kk")),
        (r#"{"query": "faucet", "k": "3"}"#, 400, Some("k")),
        (r#"{"query": 7}"#, 400, Some("query")),
        (r#"{"k": 3}"#, 400, None),
        (r#"{"query": "faucet", "k": 10001}"#, 400, Some("k")),
        (r#"{"query": "faucet", "k": 0}"#, 400, Some("k")),
        (r#"{"query": "faucet", "k": -1}"#, 400, Some("k")),
        (r#"{"query": "faucet", "mode": "fuzzy"}"#, 400, Some("mode")),
        (
            r#"{"query": "faucet", "filters": {"min_price": -1}}"#,
            400,
            Some("filters.min_price"),
        ),
        (
            r#"{"query": "faucet", "filters": {"colour": "red"}}"#,
            400,
            Some("filters.colour"),
        ),
        (
            r#"{"query": "faucet", "diversity": 2}"#,
            400,
            Some("diversity"),
        ),
        (
            r#"{"query": "faucet", "as_of": "yesterday"}"#,
            400,
            Some("as_of"),
        ),
    ];
    for (body, status, field) in cases {
        let r = post(&a, &search, body, None);
        assert_eq!(r.status, *status, "{body}: {}", r.text);
        assert!(r.json["error"].is_string(), "{body}: {}", r.text);
        assert_eq!(r.json["field"].as_str(), *field, "{body}: {}", r.text);
    }
    let long = json!({"query": "x".repeat(1001)});
    let r = post(&a, &search, &long.to_string(), None);
    assert_eq!((r.status, r.json["field"].as_str()), (400, Some("query")));

    let many: Vec<Value> = (0..1001).map(|i| json!({"id": format!("c{i}")})).collect();
    let body = json!({"query": "faucet", "candidates": many});
    let r = post(&a, &s.url("/rerank"), &body.to_string(), None);
    assert_eq!(
        (r.status, r.json["field"].as_str()),
        (400, Some("candidates"))
    );
    let body = json!({"query": "faucet", "candidates": [{"id": "p001"}, {"id": "p001"}]});
    let r = post(&a, &s.url("/rerank"), &body.to_string(), None);
    assert_eq!(
        (r.status, r.json["field"].as_str()),
        (400, Some("candidates[1].id")),
        "{}",
        r.text
    );

    let big = json!({"query": "y".repeat(70_000)});
    let r = post(&a, &search, &big.to_string(), None);
    assert_eq!(r.status, 413, "{}", r.text);
    assert!(r.json["error"].is_string());

    // An event for an unknown item: 400 naming it, and nothing of the batch stored.
    let body = json!({"events": [
        event("u-bad", "p001", "click", "q"),
        event("u-bad", "no-such-item", "click", "q"),
    ]});
    let r = post(&a, &s.url("/events"), &body.to_string(), None);
    assert_eq!(
        (r.status, r.json["field"].as_str()),
        (400, Some("events[1].item")),
        "{}",
        r.text
    );
    let body = json!({"events": [{"user": "u-bad", "item": "p001", "kind": "click", "ts": 1, "extra": 1}]});
    let r = post(&a, &s.url("/events"), &body.to_string(), None);
    assert_eq!(
        (r.status, r.json["field"].as_str()),
        (400, Some("events[0].extra"))
    );
    let body =
        json!({"events": [{"user": "u-bad", "item": "p001", "kind": "click", "ts": "soon"}]});
    let r = post(&a, &s.url("/events"), &body.to_string(), None);
    assert_eq!(
        (r.status, r.json["field"].as_str()),
        (400, Some("events[0].ts"))
    );
    let m = get(&a, &s.url("/metrics"));
    assert_eq!(metric(&m.text, "shelfrank_events"), Some(0.0), "{}", m.text);

    let r = get(&a, &s.url("/no/such/route"));
    assert_eq!(r.status, 404);
    assert!(r.json["error"].is_string());
    let r = get(&a, &search);
    assert_eq!(r.status, 405);
    assert!(r.json["error"].is_string());
}

#[test]
fn writes_need_the_token_when_one_is_set() {
    let dir = tempfile::tempdir().unwrap();
    let index = index(dir.path());
    let empty = dir.path().join("empty-token");
    std::fs::write(&empty, " \n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_shelfrank"))
        .args(["serve", "--addr", "127.0.0.1:0", "--index"])
        .arg(&index)
        .arg("--token-file")
        .arg(&empty)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("empty"));

    let file = dir.path().join("token");
    std::fs::write(&file, "s3cret\n").unwrap();
    let s = Server::start(&index, &["--token-file", file.to_str().unwrap()]);
    let a = agent();
    let body = json!({"events": [event("u1", "p001", "click", "q")]}).to_string();
    for token in [None, Some("wrong"), Some("s3cre"), Some("s3cret2")] {
        let r = post(&a, &s.url("/events"), &body, token);
        assert_eq!(r.status, 401, "{token:?}: {}", r.text);
        assert_eq!(delete(&a, &s.url("/users/u1"), token).status, 401);
    }
    // The token is checked before the body: a bad body without a token is 401 too.
    assert_eq!(post(&a, &s.url("/events"), "{", None).status, 401);
    assert_eq!(
        post(&a, &s.url("/events"), &body, Some("s3cret")).status,
        200
    );
    assert_eq!(
        delete(&a, &s.url("/users/u1"), Some("s3cret")).json["forgotten"],
        1
    );
    // Reads stay open.
    assert_eq!(
        post(&a, &s.url("/search"), r#"{"query": "faucet"}"#, None).status,
        200
    );
}

#[test]
fn recorded_events_reach_personalised_search_and_forget_removes_them() {
    let dir = tempfile::tempdir().unwrap();
    let index = index(dir.path());
    let s = Server::start(&index, &[]);
    let a = agent();
    let search =
        json!({"query": "faucet", "k": 5, "user": "fresh", "rerank": "profile"}).to_string();
    let before = post(&a, &s.url("/search"), &search, None);
    assert_eq!(before.status, 200, "{}", before.text);
    // A shopper without history gets the plain order: no profile term.
    assert!(
        before.json["hits"][0]["breakdown"]["profile"].is_null(),
        "{}",
        before.text
    );

    let events: Vec<Value> = ["p001", "p003", "p002"]
        .iter()
        .map(|item| event("fresh", item, "purchase", "faucet"))
        .collect();
    let r = post(
        &a,
        &s.url("/events"),
        &json!({ "events": events }).to_string(),
        None,
    );
    assert_eq!(r.json["accepted"], 3, "{}", r.text);
    let m = get(&a, &s.url("/metrics"));
    assert_eq!(metric(&m.text, "shelfrank_events"), Some(3.0));

    let after = post(&a, &s.url("/search"), &search, None);
    assert!(
        after.json["hits"][0]["breakdown"]["profile"].is_number(),
        "{}",
        after.text
    );

    let r = delete(&a, &s.url("/users/fresh"), None);
    assert_eq!(r.json["forgotten"], 3);
    let again = post(&a, &s.url("/search"), &search, None);
    assert!(
        again.json["hits"][0]["breakdown"]["profile"].is_null(),
        "{}",
        again.text
    );
    let m = get(&a, &s.url("/metrics"));
    assert_eq!(metric(&m.text, "shelfrank_events"), Some(0.0));
}

#[test]
fn a_saturated_server_answers_503_with_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let index = index(dir.path());
    let s = Server::start(&index, &["--max-inflight", "1"]);
    let statuses = Arc::new(Mutex::new(Vec::new()));
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let url = s.url("/search");
            let statuses = Arc::clone(&statuses);
            std::thread::spawn(move || {
                let a = agent();
                for i in 0..40 {
                    let body = json!({"query": format!("chrome faucet {t} {i}"), "k": 20});
                    let r = post(&a, &url, &body.to_string(), None);
                    statuses.lock().unwrap().push((r.status, r.retry_after));
                }
            })
        })
        .collect();
    // Writes have their own permits: the flood of searches does not refuse events.
    let writer = {
        let url = s.url("/events");
        std::thread::spawn(move || {
            let a = agent();
            (0..10)
                .map(|i| {
                    let body = json!({"events": [event(&format!("w{i}"), "p001", "click", "q")]});
                    post(&a, &url, &body.to_string(), None).status
                })
                .collect::<Vec<u16>>()
        })
    };
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(writer.join().unwrap(), vec![200; 10]);
    let statuses = statuses.lock().unwrap();
    let busy: Vec<_> = statuses.iter().filter(|s| s.0 == 503).collect();
    assert!(!busy.is_empty(), "no 503 among {} requests", statuses.len());
    assert!(busy.iter().all(|s| s.1.as_deref() == Some("1")));
    assert!(
        statuses.iter().all(|s| s.0 == 200 || s.0 == 503),
        "{statuses:?}"
    );
    assert!(statuses.iter().any(|s| s.0 == 200));
    let m = get(&agent(), &s.url("/metrics"));
    assert_eq!(
        metric(&m.text, "shelfrank_rejected_total"),
        Some(busy.len() as f64)
    );
}

/// Reads one HTTP/1.1 response with a Content-Length body from `conn`.
fn read_response(conn: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        conn.read_exact(&mut byte).expect("response head");
        buf.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&buf).to_string();
    let len: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse().expect("length"))
        })
        .expect("content-length");
    let mut body = vec![0u8; len];
    conn.read_exact(&mut body).expect("response body");
    head + &String::from_utf8_lossy(&body)
}

#[test]
fn sigterm_finishes_the_request_in_flight_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let index = index(dir.path());
    let mut s = Server::start(&index, &[]);
    let body = json!({"query": "chrome faucet", "k": 2}).to_string();
    let request = |body: &str| {
        format!(
            "POST /search HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            s.addr,
            body.len()
        )
    };
    let mut conn = TcpStream::connect(&s.addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    // A first exchange makes sure the server has accepted the connection.
    conn.write_all(request(&body).as_bytes()).unwrap();
    assert!(read_response(&mut conn).starts_with("HTTP/1.1 200"));
    // Then a request whose body is only half sent when SIGTERM arrives.
    let full = request(&body);
    let (head, tail) = full.split_at(full.len() - body.len() / 2);
    conn.write_all(head.as_bytes()).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let kill = Command::new("kill")
        .args(["-TERM", &s.pid()])
        .status()
        .unwrap();
    assert!(kill.success());
    std::thread::sleep(Duration::from_millis(300));
    conn.write_all(tail.as_bytes()).unwrap();
    let response = read_response(&mut conn);
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("\"hits\""), "{response}");
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(st) = s.child.try_wait().unwrap() {
            break st;
        }
        assert!(
            Instant::now() < deadline,
            "the server did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(0));
}

#[test]
fn acknowledged_events_survive_kill_9() {
    const PER_REQUEST: usize = 5;
    let dir = tempfile::tempdir().unwrap();
    let index = index(dir.path());
    let s = Server::start(&index, &[]);
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let sent = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let items = ["p001", "p002", "p003", "p004", "p005"];
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let (url, acked, sent, stop) = (
                s.url("/events"),
                Arc::clone(&acked),
                Arc::clone(&sent),
                Arc::clone(&stop),
            );
            std::thread::spawn(move || {
                let a = agent();
                for n in 0.. {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    // One shopper per request, so "all or none" is per shopper.
                    let user = format!("t{t}-r{n}");
                    let events: Vec<Value> = (0..PER_REQUEST)
                        .map(|i| event(&user, items[i], "click", &format!("e-{t}-{n}-{i}")))
                        .collect();
                    sent.fetch_add(1, Ordering::SeqCst);
                    let res = a
                        .post(&url)
                        .send(json!({ "events": events }).to_string().as_str());
                    match res {
                        Ok(r) if r.status() == 200 => acked.lock().unwrap().push(user),
                        Ok(_) => {}
                        Err(_) => break, // the server is gone
                    }
                }
            })
        })
        .collect();
    // Let some requests be acknowledged, then kill the server mid-stream.
    let deadline = Instant::now() + Duration::from_secs(10);
    while acked.lock().unwrap().len() < 20 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut s = s;
    s.child.kill().unwrap(); // SIGKILL
    s.child.wait().unwrap();
    stop.store(true, Ordering::SeqCst);
    for t in threads {
        t.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() >= 20,
        "only {} requests acknowledged",
        acked.len()
    );

    // Restart: the server opens the store the crash left, and serves.
    drop(s);
    let s = Server::start(&index, &[]);
    assert_eq!(get(&agent(), &s.url("/ready")).status, 200);
    let store = EventStore::open_read_only(&IndexPaths::new(&index).events_dir()).unwrap();
    for user in &acked {
        let got = store.user_events(user);
        assert_eq!(
            got.len(),
            PER_REQUEST,
            "acknowledged request of {user} lost events"
        );
    }
    let mut users: Vec<&str> = store.users().collect();
    users.sort_unstable();
    for user in users {
        let n = store.user_events(user).len();
        assert!(
            n == 0 || n == PER_REQUEST,
            "{user}: {n} events, a partial request"
        );
    }
    let m = get(&agent(), &s.url("/metrics"));
    let stored = metric(&m.text, "shelfrank_events").unwrap();
    assert!(stored >= (acked.len() * PER_REQUEST) as f64);
    assert!(stored <= (sent.load(Ordering::SeqCst) * PER_REQUEST) as f64);
}

#[test]
fn a_new_build_is_swapped_in_without_failed_requests() {
    let dir = tempfile::tempdir().unwrap();
    let index = index(dir.path());
    let s = Server::start(&index, &["--poll-ms", "100"]);
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(Mutex::new(Vec::new())),
    );
    let searcher = {
        let (url, stop, ok, failed) = (
            s.url("/search"),
            Arc::clone(&stop),
            Arc::clone(&ok),
            Arc::clone(&failed),
        );
        std::thread::spawn(move || {
            let a = agent();
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) {
                i += 1;
                let body = json!({"query": format!("faucet {i}"), "k": 5});
                let r = post(&a, &url, &body.to_string(), None);
                if r.status == 200 && r.json["hits"].as_array().is_some_and(|h| !h.is_empty()) {
                    ok.fetch_add(1, Ordering::SeqCst);
                } else {
                    failed.lock().unwrap().push((r.status, r.text));
                }
            }
        })
    };
    let out = Command::new(env!("CARGO_BIN_EXE_shelfrank"))
        .args(["build", "--catalog", "fixtures/catalog.jsonl", "--quiet"])
        .args(["--model", common::TINY_MODEL, "--index"])
        .arg(&index)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let a = agent();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let m = get(&a, &s.url("/metrics"));
        if metric(&m.text, "shelfrank_index_generation") == Some(2.0) {
            assert_eq!(metric(&m.text, "shelfrank_engine_swaps_total"), Some(1.0));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "generation 2 was not served: {}",
            m.text
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Keep searching on the new engine for a moment.
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::SeqCst);
    searcher.join().unwrap();
    assert!(
        failed.lock().unwrap().is_empty(),
        "{:?}",
        failed.lock().unwrap()
    );
    assert!(ok.load(Ordering::SeqCst) > 0);
    assert_eq!(get(&a, &s.url("/ready")).json["generation"], 2);
}

fn put(a: &ureq::Agent, url: &str, body: &str, token: Option<&str>) -> Answer {
    let mut req = a.put(url).header("content-type", "application/json");
    if let Some(t) = token {
        req = req.header("authorization", &format!("Bearer {t}"));
    }
    answer(req.send(body))
}

fn hose(id: &str, title: &str) -> Value {
    json!({"id": id, "title": title, "category": "Garden > Hoses", "brand": "Flexzilla", "price": 39.5})
}

fn top_ids(a: &ureq::Agent, s: &Server, query: &str, mode: &str) -> Vec<String> {
    let r = post(
        a,
        &s.url("/search"),
        &json!({"query": query, "k": 10, "mode": mode}).to_string(),
        None,
    );
    assert_eq!(r.status, 200, "{}", r.text);
    r.json["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn upserted_and_deleted_products_are_seen_by_the_very_next_request() {
    let dir = tempfile::tempdir().unwrap();
    let index = index(dir.path());
    let s = Server::start(&index, &[]);
    let a = agent();
    let query = "zebrawood garden hose reel";
    let body = json!({"products": [hose("new-1", "Zebrawood Garden Hose Reel")]});
    let r = put(&a, &s.url("/products"), &body.to_string(), None);
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["upserted"], 1);
    let g = get(&a, &s.url("/products/new-1"));
    assert_eq!(g.status, 200);
    assert_eq!(g.json["title"], "Zebrawood Garden Hose Reel");
    assert_eq!(g.json["category"], json!(["Garden", "Hoses"]));
    for mode in ["bm25", "dense", "hybrid"] {
        assert_eq!(top_ids(&a, &s, query, mode)[0], "new-1", "{mode}");
    }
    // Rerank sees it too.
    let r = post(
        &a,
        &s.url("/rerank"),
        &json!({"query": query, "candidates": [{"id": "p001"}, {"id": "new-1"}]}).to_string(),
        None,
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["unknown"], json!([]));

    // Replace it: the old title no longer finds it first, the new one does.
    let body = json!({"products": [hose("new-1", "Quokka Patio Umbrella")]});
    assert_eq!(
        put(&a, &s.url("/products"), &body.to_string(), None).status,
        200
    );
    assert_eq!(top_ids(&a, &s, "quokka patio umbrella", "bm25")[0], "new-1");

    let d = delete(&a, &s.url("/products/new-1"), None);
    assert_eq!(d.status, 200, "{}", d.text);
    assert_eq!(get(&a, &s.url("/products/new-1")).status, 404);
    assert_eq!(delete(&a, &s.url("/products/new-1"), None).status, 404);
    for mode in ["bm25", "dense", "hybrid"] {
        for q in [query, "quokka patio umbrella"] {
            assert!(
                !top_ids(&a, &s, q, mode).contains(&"new-1".to_string()),
                "{mode} {q}"
            );
        }
    }
    let r = post(
        &a,
        &s.url("/rerank"),
        &json!({"query": query, "candidates": [{"id": "p001"}, {"id": "new-1"}]}).to_string(),
        None,
    );
    assert_eq!(r.json["unknown"], json!(["new-1"]));

    // A bad product refuses the whole request, naming it; nothing is stored.
    let mut bad = hose("bad", "Bad Hose");
    bad["price"] = json!(-3);
    let body = json!({"products": [hose("ok-1", "Fine Hose"), bad]});
    let r = put(&a, &s.url("/products"), &body.to_string(), None);
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.json["field"], "products[1].price", "{}", r.text);
    assert_eq!(get(&a, &s.url("/products/ok-1")).status, 404);
    let body = json!({"products": [hose("x", "A"), {"id": "y", "title": "B", "price": "cheap"}]});
    let r = put(&a, &s.url("/products"), &body.to_string(), None);
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(
        r.json["field"].as_str().unwrap().starts_with("products[1]"),
        "{}",
        r.text
    );
    assert_eq!(
        put(&a, &s.url("/products"), r#"{"products": []}"#, None).status,
        400
    );
    // Writes need the token when one is set: covered for events; products too.
    drop(s);
    let token = dir.path().join("token");
    std::fs::write(&token, "sesame\n").unwrap();
    let s = Server::start(&index, &["--token-file", token.to_str().unwrap()]);
    let body = json!({"products": [hose("new-2", "Aardvark Sprinkler")]}).to_string();
    assert_eq!(put(&a, &s.url("/products"), &body, None).status, 401);
    assert_eq!(
        delete(&a, &s.url("/products/p001"), Some("wrong")).status,
        401
    );
    assert_eq!(
        put(&a, &s.url("/products"), &body, Some("sesame")).status,
        200
    );
    assert_eq!(
        delete(&a, &s.url("/products/p001"), Some("sesame")).status,
        200
    );
    assert_eq!(get(&a, &s.url("/products/new-2")).status, 200);
    assert_eq!(get(&a, &s.url("/products/p001")).status, 404);
}

#[test]
fn enough_updates_are_merged_into_a_new_generation_and_swapped_in() {
    let dir = tempfile::tempdir().unwrap();
    let index = index(dir.path());
    let s = Server::start(&index, &["--merge-after", "3", "--poll-ms", "100"]);
    let a = agent();
    let body = json!({"products": [
        hose("new-1", "Zebrawood Garden Hose Reel"),
        hose("new-2", "Aardvark Sprinkler"),
    ]});
    assert_eq!(
        put(&a, &s.url("/products"), &body.to_string(), None).status,
        200
    );
    assert_eq!(delete(&a, &s.url("/products/p002"), None).status, 200);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let m = get(&a, &s.url("/metrics"));
        if metric(&m.text, "shelfrank_index_generation") == Some(2.0) {
            assert_eq!(metric(&m.text, "shelfrank_merges_total"), Some(1.0));
            assert_eq!(metric(&m.text, "shelfrank_pending_updates"), Some(0.0));
            break;
        }
        assert!(Instant::now() < deadline, "no merge: {}", m.text);
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(top_ids(&a, &s, "aardvark sprinkler", "hybrid")[0], "new-2");
    assert_eq!(get(&a, &s.url("/products/p002")).status, 404);
    assert_eq!(get(&a, &s.url("/products/new-1")).status, 200);
    // The folded batch files are gone; a restart serves the same catalog.
    let files = shelfrank::store::updates::list(&index.join("updates")).unwrap();
    assert!(files.is_empty(), "{files:?}");
    let products = get(&a, &s.url("/ready")).json["products"].clone();
    drop(s);
    let s = Server::start(&index, &[]);
    assert_eq!(get(&a, &s.url("/ready")).json["products"], products);
    assert_eq!(get(&a, &s.url("/products/p002")).status, 404);
}

#[test]
fn acknowledged_products_survive_kill_9() {
    const PER_REQUEST: usize = 3;
    let dir = tempfile::tempdir().unwrap();
    let index = index(dir.path());
    let s = Server::start(&index, &[]);
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let sent = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = (0..3)
        .map(|t| {
            let (url, acked, sent, stop) = (
                s.url("/products"),
                Arc::clone(&acked),
                Arc::clone(&sent),
                Arc::clone(&stop),
            );
            std::thread::spawn(move || {
                let a = agent();
                for n in 0.. {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let tag = format!("t{t}-r{n}");
                    let products: Vec<Value> = (0..PER_REQUEST)
                        .map(|i| hose(&format!("{tag}-{i}"), &format!("Hose {tag} number {i}")))
                        .collect();
                    sent.lock().unwrap().push(tag.clone());
                    let res = a
                        .put(&url)
                        .send(json!({ "products": products }).to_string().as_str());
                    match res {
                        Ok(r) if r.status() == 200 => acked.lock().unwrap().push(tag),
                        Ok(_) => {}
                        Err(_) => break,
                    }
                }
            })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(15);
    while acked.lock().unwrap().len() < 10 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut s = s;
    s.child.kill().unwrap(); // SIGKILL
    s.child.wait().unwrap();
    stop.store(true, Ordering::SeqCst);
    for t in threads {
        t.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() >= 10,
        "only {} requests acknowledged",
        acked.len()
    );
    drop(s);
    let s = Server::start(&index, &[]);
    let a = agent();
    for tag in sent.lock().unwrap().iter() {
        let present: Vec<bool> = (0..PER_REQUEST)
            .map(|i| get(&a, &s.url(&format!("/products/{tag}-{i}"))).status == 200)
            .collect();
        if acked.contains(tag) {
            assert!(
                present.iter().all(|&p| p),
                "acknowledged {tag} lost: {present:?}"
            );
        } else {
            assert!(
                present.iter().all(|&p| p) || present.iter().all(|&p| !p),
                "{tag} half applied: {present:?}"
            );
        }
    }
}

#[test]
fn a_retried_request_with_event_ids_stores_each_event_once() {
    let dir = tempfile::tempdir().unwrap();
    let index = index(dir.path());
    let s = Server::start(&index, &[]);
    let a = agent();
    let mut events: Vec<Value> = (0..4)
        .map(|i| {
            let mut e = event(
                "retry-user",
                ["p001", "p002", "p003", "p004"][i],
                "click",
                "q",
            );
            e["id"] = json!(format!("click-{i}"));
            e
        })
        .collect();
    // One event without an id: stored each time it is sent.
    events.push(event("retry-user", "p005", "view", "q"));
    let body = json!({ "events": events }).to_string();
    let first = post(&a, &s.url("/events"), &body, None);
    assert_eq!(first.status, 200, "{}", first.text);
    assert_eq!(first.json["accepted"], 5);
    assert_eq!(first.json["duplicates"], 0);
    let again = post(&a, &s.url("/events"), &body, None);
    assert_eq!(again.status, 200, "{}", again.text);
    assert_eq!(again.json["accepted"], 1, "{}", again.text);
    assert_eq!(again.json["duplicates"], 4, "{}", again.text);
    drop(s);
    let store = EventStore::open_read_only(&IndexPaths::new(&index).events_dir()).unwrap();
    assert_eq!(store.user_events("retry-user").len(), 6);
}

/// Checks a POST /rerank/documents answer the way the two search engines read it:
/// OpenSearch's `connector.post_process.cohere.rerank` takes `$.results`, needs an
/// `index` and a `relevance_score` parsed as a Java double in every entry, and one
/// entry per document (the indices a permutation of 0..n); Elasticsearch's custom
/// service reads `$.results[*].relevance_score` and `$.results[*].index`, which must
/// be as long as its input. Returns the scores by input position.
fn scores_as_the_engines_read_them(r: &Answer, n: usize) -> Vec<f64> {
    assert_eq!(r.status, 200, "{}", r.text);
    let results = r.json["results"].as_array().expect("$.results is a list");
    assert_eq!(results.len(), n, "{}", r.text);
    let mut by_index = vec![None; n];
    for e in results {
        let i = e["index"].as_u64().expect("integer index") as usize;
        let s = e["relevance_score"]
            .as_f64()
            .expect("numeric relevance_score");
        assert!(s.is_finite());
        assert!(
            by_index[i].replace(s).is_none(),
            "index {i} twice: {}",
            r.text
        );
    }
    // A double, not an integer: every score is written with a fraction or exponent.
    let raw = r.text.split("\"relevance_score\":").skip(1);
    for token in raw.map(|t| t.split([',', '}']).next().unwrap()) {
        assert!(
            token.contains('.') || token.contains('e'),
            "{token} in {}",
            r.text
        );
    }
    // Best first, as Cohere answers.
    let listed: Vec<f64> = results
        .iter()
        .map(|e| e["relevance_score"].as_f64().unwrap())
        .collect();
    assert!(listed.windows(2).all(|w| w[0] >= w[1]), "{listed:?}");
    by_index.into_iter().map(Option::unwrap).collect()
}

#[test]
fn search_engine_rerank_payloads_get_one_score_per_document() {
    let dir = tempfile::tempdir().unwrap();
    let index = index(dir.path());
    let s = Server::start(&index, &[]);
    let a = agent();
    let url = s.url("/rerank/documents");

    // OpenSearch: what the connector's request_body template
    // `{ "query": "${parameters.query}", "documents": ${parameters.documents},
    //    "top_n": ${parameters.top_n} }` becomes after the Cohere pre-process (top_n =
    // the number of documents), for a page of hits in retrieval order.
    let docs = ["p003", "p001", "nope", "", "p001", "p010"];
    let body = json!({"query": "faucet", "documents": docs, "top_n": docs.len()});
    let r = post(&a, &url, &body.to_string(), None);
    let scores = scores_as_the_engines_read_them(&r, docs.len());
    // Unknown, empty and repeated ids score below every known product.
    let known = [scores[0], scores[1], scores[5]];
    let lowest_known = known.iter().copied().fold(f64::INFINITY, f64::min);
    for i in [2, 3, 4] {
        assert!(scores[i] < lowest_known, "{scores:?}");
    }
    // The known products in the order /rerank gives them.
    let r2 = post(
        &a,
        &s.url("/rerank"),
        &json!({"query": "faucet", "k": 10,
                "candidates": [{"id": "p003"}, {"id": "p001"}, {"id": "p010"}]})
        .to_string(),
        None,
    );
    let order: Vec<&str> = r2.json["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["id"].as_str().unwrap())
        .collect();
    let mut by_score = [
        ("p003", scores[0]),
        ("p001", scores[1]),
        ("p010", scores[5]),
    ];
    by_score.sort_by(|a, b| b.1.total_cmp(&a.1));
    assert_eq!(by_score.iter().map(|x| x.0).collect::<Vec<_>>(), order);

    // Elasticsearch: the custom service's template
    // `{"query": ${query}, "documents": ${input}, "retrieval_order": "none"}`, first
    // as the validation call made when the endpoint is created ...
    let body = json!({"query": "test query", "documents": ["how big"], "retrieval_order": "none"});
    let r = post(&a, &url, &body.to_string(), None);
    let scores = scores_as_the_engines_read_them(&r, 1);
    assert_eq!(scores[0], -1.0);
    // ... then a window that arrives shard by shard: the order carries no prior, so
    // the same documents in reverse get the same scores.
    let window = ["p001", "p002", "p003", "p004", "p005"];
    let body =
        |ids: Vec<&str>| json!({"query": "shower", "documents": ids, "retrieval_order": "none"});
    let forward = scores_as_the_engines_read_them(
        &post(&a, &url, &body(window.to_vec()).to_string(), None),
        5,
    );
    let mut reversed_ids = window.to_vec();
    reversed_ids.reverse();
    let mut backward =
        scores_as_the_engines_read_them(&post(&a, &url, &body(reversed_ids).to_string(), None), 5);
    backward.reverse();
    assert_eq!(forward, backward);

    // top_n cuts the list; the limits and unknown keys are the service's usual 400s.
    let r = post(
        &a,
        &url,
        &json!({"query": "faucet", "documents": docs, "top_n": 2}).to_string(),
        None,
    );
    assert_eq!(r.json["results"].as_array().unwrap().len(), 2, "{}", r.text);
    let many: Vec<String> = (0..1001).map(|i| format!("p{i}")).collect();
    let r = post(
        &a,
        &url,
        &json!({"query": "x", "documents": many}).to_string(),
        None,
    );
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(r.text.contains("documents"), "{}", r.text);
    let r = post(
        &a,
        &url,
        &json!({"query": "x", "documents": [], "stray": 1}).to_string(),
        None,
    );
    assert_eq!(r.status, 400, "{}", r.text);
    let r = post(
        &a,
        &url,
        &json!({"query": "x", "documents": []}).to_string(),
        None,
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["results"], json!([]));
    let doc = get(&a, &s.url("/openapi.json"));
    assert!(doc.json["paths"]["/rerank/documents"].is_object());
}

/// POST /embed gives the vectors of the index's model: a product's own text
/// embeds to exactly its stored vector (the space `shelfrank embed` parts share),
/// with the model's checksum to check against a part's `model.sha256`.
#[test]
fn embed_gives_the_index_models_vectors() {
    let dir = tempfile::tempdir().unwrap();
    let index = index(dir.path());
    let s = Server::start(&index, &[]);
    let a = agent();
    let products = common::products();
    let texts: Vec<String> = products[..3]
        .iter()
        .map(shelfrank::build::embedding_text)
        .collect();
    let r = post(
        &a,
        &s.url("/embed"),
        &json!({ "texts": texts }).to_string(),
        None,
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let data = common::data_dir(&index);
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(data.join("manifest.json")).unwrap())
            .unwrap();
    assert_eq!(r.json["sha256"], manifest["model"]["sha256"]);
    let dim = manifest["model"]["dim"].as_u64().unwrap() as usize;
    assert_eq!(r.json["dim"], dim);
    let stored: Vec<f32> = std::fs::read(data.join("vectors.f32"))
        .unwrap()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    let got = r.json["embeddings"].as_array().unwrap();
    assert_eq!(got.len(), 3);
    for (row, v) in got.iter().enumerate() {
        let v: Vec<f32> = v
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap() as f32)
            .collect();
        assert_eq!(v, stored[row * dim..(row + 1) * dim], "product {row}");
    }
    let long = "x".repeat(1001);
    let r = post(
        &a,
        &s.url("/embed"),
        &json!({ "texts": ["ok", long] }).to_string(),
        None,
    );
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(r.text.contains("texts[1]"), "{}", r.text);
}
