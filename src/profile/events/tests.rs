//! Tests of `events`.

use super::*;

/// Every item is known.
fn any_item(_: &str) -> bool {
    true
}

fn read_with(input: &[u8], opts: &EventReadOptions) -> Result<EventBatch, EventError> {
    read_events_from(input, "e.jsonl", opts, &|item| item != "gone")
}

fn read(input: &str) -> Result<EventBatch, EventError> {
    read_with(input.as_bytes(), &EventReadOptions::default())
}

/// Reads `input`, expecting an error at `line` for `field`, and returns the error.
fn read_err(input: &str, line: usize, field: Option<&str>) -> EventError {
    let err = read(input).unwrap_err();
    assert_eq!(err.line(), Some(line), "{err}");
    assert_eq!(err.field(), field, "{err}");
    assert_eq!(err.source_name(), "e.jsonl");
    assert!(err.is_caller_fault(), "{err}");
    err
}

const OK: &str = r#"{"user": "u1", "item": "i1", "kind": "view", "ts": "2011-10-02T10:32:00"}"#;

/// 2011-10-02T10:32:00Z in Unix seconds.
const TS: i64 = 1_317_551_520;

#[test]
fn reads_all_fields() {
    let input = r#"{"user": " u1 ", "item": "i1", "kind": "Purchase", "ts": "2011-10-02T10:32:00Z", "quantity": 2.5, "query": " angle bracket ", "position": 3, "extra": [1]}"#;
    let batch = read(input).unwrap();
    assert_eq!(batch.skipped, 0);
    assert_eq!(
        batch.events,
        [Event {
            user: "u1".into(),
            item: "i1".into(),
            kind: EventKind::Purchase,
            ts: TS,
            quantity: Some(2.5),
            query: Some("angle bracket".into()),
            position: Some(3),
        }]
    );
}

#[test]
fn integer_ids_and_ts_and_optional_nulls() {
    let input = r#"{"user": 17, "item": 100001, "kind": "cart", "ts": 1317551520, "quantity": null, "query": "  ", "position": null}"#;
    let e = &read(input).unwrap().events[0];
    assert_eq!(*e, Event::new("17", "100001", EventKind::Cart, TS));
    let input =
        r#"{"user": "u", "item": "i", "kind": "cart", "ts": 5, "quantity": "3", "position": "4"}"#;
    let e = &read(input).unwrap().events[0];
    assert_eq!((e.ts, e.quantity, e.position), (5, Some(3.0), Some(4)));
}

#[test]
fn blank_lines_crlf_and_bom() {
    let input = format!("\u{feff}{OK}\r\n\r\n   \n{OK}\n\n");
    let batch = read(&input).unwrap();
    assert_eq!(batch.events.len(), 2);
    assert_eq!(read("").unwrap().events.len(), 0);
}

#[test]
fn bad_json_names_line_and_column() {
    let err = read_err(&format!("{OK}\n{{\"user\": \n"), 2, None);
    match err.kind {
        EventErrorKind::InvalidJson { ref message } => {
            assert!(message.contains("at column"), "{message}");
            assert!(!message.contains("line"), "{message}");
        }
        ref other => panic!("expected InvalidJson, got {other:?}"),
    }
    let err = read_err("[1, 2]", 1, None);
    assert!(matches!(
        err.kind,
        EventErrorKind::WrongType { expected: "a JSON object", ref found } if found == "[1,2]"
    ));
}

#[test]
fn missing_empty_or_mistyped_user_and_item() {
    let err = read_err(r#"{"item": "i", "kind": "view", "ts": 1}"#, 1, Some("user"));
    assert!(matches!(err.kind, EventErrorKind::MissingField));
    assert_eq!(
        err.to_string(),
        "e.jsonl:1: field \"user\": is required but missing"
    );
    let err = read_err(
        r#"{"user": "u", "item": null, "kind": "view", "ts": 1}"#,
        1,
        Some("item"),
    );
    assert!(matches!(err.kind, EventErrorKind::MissingField));
    let err = read_err(
        r#"{"user": " ", "item": "i", "kind": "view", "ts": 1}"#,
        1,
        Some("user"),
    );
    assert!(matches!(err.kind, EventErrorKind::EmptyField));
    let err = read_err(
        r#"{"user": "u", "item": 1.5, "kind": "view", "ts": 1}"#,
        1,
        Some("item"),
    );
    assert!(matches!(err.kind, EventErrorKind::WrongType { .. }));
    for field in ["kind", "ts"] {
        let line = OK.replace(&format!("\"{field}\""), "\"other\"");
        let err = read_err(&line, 1, Some(field));
        assert!(matches!(err.kind, EventErrorKind::MissingField), "{err}");
    }
}

#[test]
fn unknown_kind_lists_allowed_kinds() {
    let err = read_err(&OK.replace("view", "buy"), 1, Some("kind"));
    assert_eq!(
        err.to_string(),
        "e.jsonl:1: field \"kind\": unknown event kind \"buy\"; expected one of: view, \
         click, cart, purchase"
    );
    let err = read_err(&OK.replace("\"view\"", "3"), 1, Some("kind"));
    assert!(matches!(err.kind, EventErrorKind::WrongType { .. }));
}

#[test]
fn kind_from_str_and_display() {
    for kind in EventKind::ALL {
        assert_eq!(kind.to_string().parse::<EventKind>(), Ok(kind));
        assert_eq!(
            serde_json::to_string(&kind).unwrap(),
            format!("\"{}\"", kind.as_str())
        );
    }
    assert_eq!(" CLICK ".parse::<EventKind>(), Ok(EventKind::Click));
    let err = "like".parse::<EventKind>().unwrap_err();
    assert_eq!(
        err.to_string(),
        "unknown event kind \"like\"; expected one of: view, click, cart, purchase"
    );
}

#[test]
fn bad_ts() {
    let err = read_err(
        &OK.replace("2011-10-02T10:32:00", "2011-13-45"),
        1,
        Some("ts"),
    );
    let text = err.to_string();
    assert!(
        text.starts_with(
            "e.jsonl:1: field \"ts\": invalid timestamp \"2011-13-45\": expected RFC 3339 ("
        ),
        "{text}"
    );
    assert!(text.contains("or ISO 8601 without zone"), "{text}");
    assert!(
        text.ends_with("hint: a JSON integer is read as Unix seconds"),
        "{text}"
    );
    for bad in ["1.5", "true", "18446744073709551615"] {
        let err = read_err(&OK.replace("\"2011-10-02T10:32:00\"", bad), 1, Some("ts"));
        assert!(
            matches!(err.kind, EventErrorKind::WrongType { .. }),
            "{err}"
        );
    }
}

#[test]
fn bad_quantity_and_position() {
    let with = |extra: &str| OK.replace('}', &format!(", {extra}}}"));
    let err = read_err(&with(r#""quantity": "NaN""#), 1, Some("quantity"));
    assert!(
        matches!(err.kind, EventErrorKind::InvalidNumber { .. }),
        "{err}"
    );
    let err = read_err(&with(r#""quantity": "lots""#), 1, Some("quantity"));
    assert!(
        matches!(err.kind, EventErrorKind::WrongType { .. }),
        "{err}"
    );
    for bad in ["-1", "1.5", "4294967296", "\"x\"", "[]"] {
        let err = read_err(&with(&format!("\"position\": {bad}")), 1, Some("position"));
        assert!(
            matches!(err.kind, EventErrorKind::WrongType { .. }),
            "{err}"
        );
    }
    let err = read_err(&with(r#""query": 5"#), 1, Some("query"));
    assert!(
        matches!(err.kind, EventErrorKind::WrongType { .. }),
        "{err}"
    );
}

#[test]
fn unknown_item() {
    let err = read_err(
        &format!("{OK}\n{}", OK.replace("\"i1\"", "\"gone\"")),
        2,
        Some("item"),
    );
    assert!(matches!(err.kind, EventErrorKind::UnknownItem { ref item } if item == "gone"));
    assert!(
        err.to_string().starts_with(
            "e.jsonl:2: field \"item\": unknown item id \"gone\" (not in the index's catalog)"
        ),
        "{err}"
    );
}

#[test]
fn invalid_utf8_names_line_and_byte() {
    let mut input = format!("{OK}\n").into_bytes();
    input.extend_from_slice(b"{\"user\": \"caf\xE9\"}\n");
    let err = read_with(&input, &EventReadOptions::default()).unwrap_err();
    assert_eq!(err.line(), Some(2));
    assert!(matches!(
        err.kind,
        EventErrorKind::InvalidUtf8 {
            byte: 0xE9,
            column: 14
        }
    ));
    assert_eq!(
        err.to_string(),
        "e.jsonl:2: invalid UTF-8 byte 0xE9 at byte 14 of the line; hint: event files must \
         be UTF-8"
    );
}

#[test]
fn skip_invalid_counts_and_keeps_first_problems() {
    let bad = [
        "not json".to_owned(),
        OK.replace("view", "buy"),
        OK.replace("i1", "gone"),
        OK.replace("2011", "x"),
    ];
    let input = format!("{OK}\n{}\n{OK}\n{}\n", bad.join("\n"), bad.join("\n"));
    let opts = EventReadOptions {
        skip_invalid: true,
        max_reported: 3,
    };
    let batch = read_with(input.as_bytes(), &opts).unwrap();
    assert_eq!(batch.events.len(), 2);
    assert_eq!(batch.skipped, 8);
    let lines: Vec<_> = batch.problems.iter().map(|p| p.line()).collect();
    assert_eq!(lines, [Some(2), Some(3), Some(4)]);
    let none = EventReadOptions {
        skip_invalid: true,
        max_reported: 0,
    };
    let batch = read_with(input.as_bytes(), &none).unwrap();
    assert_eq!((batch.skipped, batch.problems.len()), (8, 0));
    assert_eq!(EventReadOptions::default().max_reported, 5);
}

#[test]
fn io_errors_are_fatal_and_system_faults() {
    struct Failing;
    impl Read for Failing {
        fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
            Err(std::io::Error::other("disk on fire"))
        }
    }
    let opts = EventReadOptions {
        skip_invalid: true,
        ..EventReadOptions::default()
    };
    let err = read_events_from(Failing, "f.jsonl", &opts, &any_item).unwrap_err();
    assert!(!err.is_caller_fault());
    assert_eq!(err.to_string(), "f.jsonl:1: cannot read: disk on fire");
    let missing = Path::new("/nonexistent/shelfrank/events.jsonl");
    let err = read_events(missing, &opts, &any_item).unwrap_err();
    assert!(matches!(
        err.kind,
        EventErrorKind::Io { action: "open", .. }
    ));
    assert_eq!(err.line(), None);
}

#[test]
fn read_events_from_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.jsonl");
    std::fs::write(&path, format!("{OK}\n{OK}\n")).unwrap();
    let batch = read_events(&path, &EventReadOptions::default(), &any_item).unwrap();
    assert_eq!(batch.events.len(), 2);
}

#[test]
fn timestamp_forms() {
    let cases = [
        ("2011-10-02T10:32:00Z", TS),
        ("2011-10-02T10:32:00z", TS),
        ("2011-10-02T11:32:00+01:00", TS),
        ("2011-10-02T05:32:00-05:00", TS),
        ("2011-10-02T10:32:00.999Z", TS),
        ("2011-10-02T10:32:00.5+00:00", TS),
        ("2011-10-02T10:32:00", TS),
        ("2011-10-02 10:32:00", TS),
        ("2011-10-02T10:32:00.123456", TS),
        ("2011-10-02 10:32:00.5", TS),
        ("2011-10-02T10:32", TS),
        ("2011-10-02 10:32", TS),
        ("  2011-10-02T10:32:00  ", TS),
        ("2011-10-02", TS - (10 * 60 + 32) * 60),
        ("1970-01-01T00:00:00Z", 0),
        ("1969-12-31T23:59:59", -1),
    ];
    for (text, want) in cases {
        assert_eq!(parse_timestamp(text), Ok(want), "{text}");
    }
}

#[test]
fn timestamps_keep_order() {
    let texts = [
        "2010-12-01 08:26",
        "2010-12-01T08:26:00.5",
        "2010-12-01T08:26:01",
        "2010-12-02",
        "2011-01-01T00:00:00+01:00",
        "2011-01-01T00:00:00Z",
    ];
    let ts: Vec<i64> = texts.iter().map(|t| parse_timestamp(t).unwrap()).collect();
    assert!(ts.windows(2).all(|w| w[0] <= w[1]), "{ts:?}");
    assert!(ts[4] < ts[5]);
}

#[test]
fn bad_timestamps() {
    for bad in [
        "",
        "2011-13-45",
        "2011-02-30",
        "2011-10-02T25:00:00",
        "2011-10-02T10",
        "02/10/2011 10:32",
        "1317551520",
        "2011-10-02T10:32:00+25:00",
        "yesterday",
    ] {
        let err = parse_timestamp(bad).unwrap_err();
        assert!(
            err.starts_with(&format!("invalid timestamp \"{bad}\": expected RFC 3339 (")),
            "{bad}: {err}"
        );
        assert!(err.contains("ISO 8601 without zone"), "{err}");
    }
}

#[test]
fn format_round_trips() {
    assert_eq!(format_timestamp(TS), "2011-10-02T10:32:00");
    assert_eq!(format_timestamp(-1), "1969-12-31T23:59:59");
    for ts in [0, TS, -86_400 * 365 * 100, 4_102_444_800] {
        assert_eq!(parse_timestamp(&format_timestamp(ts)), Ok(ts));
    }
    assert_eq!(format_timestamp(i64::MAX), i64::MAX.to_string());
}

#[test]
fn error_display_and_fault() {
    let err = EventError::new(
        "events.jsonl",
        Some(12),
        Some("ts".into()),
        EventErrorKind::InvalidTimestamp {
            found: "2011-13-45".into(),
        },
    );
    assert!(err
        .to_string()
        .starts_with("events.jsonl:12: field \"ts\": invalid timestamp \"2011-13-45\""));
    assert!(err.is_caller_fault());
    let corrupt = EventError::new(
        "log.bin",
        None,
        None,
        EventErrorKind::Corrupt {
            offset: 40,
            reason: "x".into(),
        },
    );
    assert!(!corrupt.is_caller_fault());
    assert!(corrupt
        .to_string()
        .starts_with("log.bin: corrupt at byte 40: x; hint: "));
}

#[test]
fn long_values_are_shortened() {
    let long = "x".repeat(500);
    let err = read_err(&OK.replace("view", &long), 1, Some("kind"));
    assert!(err.to_string().len() < 200, "{err}");
}

#[test]
fn out_of_range_values_and_control_characters_are_refused_with_their_field() {
    let cases = [
        (
            r#"{"user": "u", "item": "i", "kind": "view", "ts": -5}"#,
            "ts",
            "out of range",
        ),
        (
            r#"{"user": "u", "item": "i", "kind": "view", "ts": "2999-01-01T00:00:00"}"#,
            "ts",
            "out of range",
        ),
        (
            r#"{"user": "u", "item": "i", "kind": "purchase", "ts": 5, "quantity": -2}"#,
            "quantity",
            "> 0",
        ),
        (
            r#"{"user": "u", "item": "i", "kind": "purchase", "ts": 5, "quantity": 0}"#,
            "quantity",
            "> 0",
        ),
        (
            r#"{"user": "u\tv", "item": "i", "kind": "view", "ts": 5}"#,
            "user",
            "control character",
        ),
        (
            r#"{"user": "u", "item": "i\nj", "kind": "view", "ts": 5}"#,
            "item",
            "control character",
        ),
    ];
    for (line, field, want) in cases {
        let err = read_events_from(
            line.as_bytes(),
            "e.jsonl",
            &EventReadOptions::default(),
            &|_| true,
        )
        .unwrap_err();
        assert_eq!(err.field.as_deref(), Some(field), "{line}");
        assert_eq!(err.line, Some(1));
        assert!(err.to_string().contains(want), "{line}: {err}");
    }
}

#[test]
fn ids_come_from_the_id_field_or_the_content_and_its_occurrence() {
    let text = concat!(
        r#"{"user": "u", "item": "i", "kind": "view", "ts": 5}"#,
        "\n",
        r#"{"user": "u", "item": "i", "kind": "view", "ts": 5}"#,
        "\n",
        r#"{"id": "e-1", "user": "u", "item": "i", "kind": "view", "ts": 5}"#,
        "\n",
        r#"{"id": 7, "user": "u", "item": "j", "kind": "view", "ts": 6}"#,
        "\n",
    );
    let read = || {
        read_events_from(
            text.as_bytes(),
            "e.jsonl",
            &EventReadOptions::default(),
            &|_| true,
        )
        .unwrap()
    };
    let first = read();
    assert_eq!(first.ids.len(), 4);
    // Two identical lines are two events; the same file read again gives the same ids.
    assert_ne!(first.ids[0], first.ids[1]);
    assert_eq!(first.ids, read().ids);
    let distinct: std::collections::HashSet<u64> = first.ids.iter().copied().collect();
    assert_eq!(distinct.len(), 4);
}
