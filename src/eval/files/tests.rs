//! Tests of `files`.

use super::*;
use std::fs;
use std::path::PathBuf;
use tempfile::TempDir;

/// Writes `contents` to `name` in a fresh temporary directory.
fn file(name: &str, contents: &str) -> (TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    fs::write(&path, contents).unwrap();
    (dir, path)
}

#[test]
fn queries_read_in_order() {
    let (_d, p) = file(
        "queries.tsv",
        "\u{feff}q1\tred shoes\r\n\n   \nq2\t\nq3\tsize 10\twide\n",
    );
    let qs = read_queries(&p).unwrap();
    let got: Vec<(&str, &str)> = qs.iter().map(|q| (&*q.qid, &*q.text)).collect();
    // BOM and CRLF stripped, blank lines skipped, empty text kept, later tabs kept in text
    assert_eq!(
        got,
        [("q1", "red shoes"), ("q2", ""), ("q3", "size 10\twide")]
    );
}

#[test]
fn queries_missing_tab_names_line() {
    let (_d, p) = file("queries.tsv", "q1\tok\n\nq2 no tab here\n");
    let e = read_queries(&p).unwrap_err();
    assert_eq!(e.line, Some(3));
    assert_eq!(e.field(), None);
    assert!(matches!(e.kind, EvalErrorKind::MissingTab { .. }));
    let msg = e.to_string();
    assert!(msg.contains("queries.tsv:3: "), "{msg}");
    assert!(e.is_caller_fault());
}

#[test]
fn queries_duplicate_qid_names_both_lines() {
    let (_d, p) = file("queries.tsv", "q1\ta\nq2\tb\nq1\tc\n");
    let e = read_queries(&p).unwrap_err();
    assert_eq!((e.line, e.field()), (Some(3), Some("qid")));
    match &e.kind {
        EvalErrorKind::DuplicateQid { qid, first_line } => {
            assert_eq!((qid.as_str(), *first_line), ("q1", 1));
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(e
        .to_string()
        .ends_with(r#"duplicate qid "q1" (first on line 1)"#));
}

#[test]
fn queries_bad_qid() {
    let (_d, p) = file("queries.tsv", "\ttext\n");
    let e = read_queries(&p).unwrap_err();
    assert_eq!((e.line, e.field()), (Some(1), Some("qid")));
    assert!(matches!(e.kind, EvalErrorKind::Empty));
    let (_d, p) = file("queries.tsv", "q 1\ttext\n");
    let e = read_queries(&p).unwrap_err();
    assert!(matches!(e.kind, EvalErrorKind::ContainsWhitespace { .. }));
}

#[test]
fn missing_file_is_a_read_error_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("nope.tsv");
    let e = read_queries(&p).unwrap_err();
    assert!(matches!(e.kind, EvalErrorKind::Read(_)));
    assert_eq!(e.line, None);
    assert!(e.to_string().contains("nope.tsv: cannot read the file"));
    assert!(e.is_caller_fault());
}

#[test]
fn invalid_utf8_names_line() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("queries.tsv");
    fs::write(&p, b"q1\tok\nq2\t\xff\xfe\n").unwrap();
    let e = read_queries(&p).unwrap_err();
    assert_eq!(e.line, Some(2));
    assert!(matches!(e.kind, EvalErrorKind::InvalidUtf8));
}

#[test]
fn qrels_read_with_negative_grades() {
    let (_d, p) = file(
        "qrels.txt",
        "q1 0 a 3\nq1 0 b 0\n\nq1\t0\tc\t-1\nq2 Q0 a 1\nq2 0 a 1\n",
    );
    let q = read_qrels(&p).unwrap();
    assert_eq!(q.len(), 2);
    assert_eq!(q["q1"].len(), 3);
    assert_eq!(q["q1"]["a"], 3);
    assert_eq!(q["q1"]["b"], 0);
    assert_eq!(q["q1"]["c"], -1);
    // an identical repeat is harmless
    assert_eq!(q["q2"].len(), 1);
}

#[test]
fn qrels_bad_grade_names_line_and_field() {
    let (_d, p) = file("qrels.dev.txt", "q1 0 a 1\nq1 0 b x\n");
    let e = read_qrels(&p).unwrap_err();
    assert_eq!((e.line, e.field()), (Some(2), Some("grade")));
    assert!(
        e.to_string()
            .ends_with(r#"qrels.dev.txt:2: field "grade": expected an integer, got "x""#),
        "{e}"
    );
    let (_d, p) = file("qrels.txt", "q1 0 a 1.0\n");
    let e = read_qrels(&p).unwrap_err();
    assert_eq!((e.line, e.field()), (Some(1), Some("grade")));
}

#[test]
fn qrels_wrong_column_count() {
    for (contents, found) in [("q1 0 a\n", 3), ("q1 0 a 1 extra\n", 5)] {
        let (_d, p) = file("qrels.txt", &format!("q0 0 z 1\n{contents}"));
        let e = read_qrels(&p).unwrap_err();
        assert_eq!(e.line, Some(2));
        match e.kind {
            EvalErrorKind::ColumnCount {
                expected: 4,
                found: f,
                ..
            } => assert_eq!(f, found),
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[test]
fn qrels_conflicting_grades() {
    let (_d, p) = file("qrels.txt", "q1 0 a 1\nq1 0 b 1\nq1 0 a 2\n");
    let e = read_qrels(&p).unwrap_err();
    assert_eq!((e.line, e.field()), (Some(3), Some("grade")));
    assert!(matches!(
        e.kind,
        EvalErrorKind::ConflictingGrade {
            first: 1,
            first_line: 1,
            second: 2,
            ..
        }
    ));
}

#[test]
fn personal_tasks_read() {
    let (_d, p) = file(
        "tasks.tsv",
        "t1\tu1\t2024-01-01T00:00:00Z\trunning shoes\tp9\nt2\tu2\t2024-01-02\t\tp3\n",
    );
    let t = read_personal_tasks(&p).unwrap();
    assert_eq!(
        t[0],
        PersonalTask {
            qid: "t1".into(),
            user: "u1".into(),
            ts: 1_704_067_200,
            query: "running shoes".into(),
            target: "p9".into(),
        }
    );
    assert_eq!((t[1].ts, t[1].query.as_str()), (1_704_153_600, ""));
}

#[test]
fn personal_tasks_errors() {
    let (_d, p) = file("tasks.tsv", "t1\tu1\tyesterday\tq\tp1\n");
    let e = read_personal_tasks(&p).unwrap_err();
    assert_eq!((e.line, e.field()), (Some(1), Some("ts")));
    assert!(e.to_string().contains("invalid timestamp"), "{e}");
    let (_d, p) = file("tasks.tsv", "t1\tu1\t\tq\tp1\n");
    let e = read_personal_tasks(&p).unwrap_err();
    assert_eq!((e.line, e.field()), (Some(1), Some("ts")));
    let (_d, p) = file(
        "tasks.tsv",
        "t1\tu1\t2011-10-02\tq\tp1\nt2\tu1\t2011-10-02\tq\n",
    );
    let e = read_personal_tasks(&p).unwrap_err();
    assert_eq!(e.line, Some(2));
    assert!(matches!(
        e.kind,
        EvalErrorKind::ColumnCount {
            expected: 5,
            found: 4,
            ..
        }
    ));
    let (_d, p) = file("tasks.tsv", "t1\tu1\t2011-10-02\tq\tp1\textra\n");
    let e = read_personal_tasks(&p).unwrap_err();
    assert!(matches!(
        e.kind,
        EvalErrorKind::ColumnCount { found: 6, .. }
    ));
    let (_d, p) = file("tasks.tsv", "t1\t\t2011-10-02\tq\tp1\n");
    let e = read_personal_tasks(&p).unwrap_err();
    assert_eq!((e.line, e.field()), (Some(1), Some("user")));
    let (_d, p) = file("tasks.tsv", "t1\tu\t2011-10-02\tq\t\n");
    let e = read_personal_tasks(&p).unwrap_err();
    assert_eq!((e.line, e.field()), (Some(1), Some("target_item")));
    let (_d, p) = file(
        "tasks.tsv",
        "t1\tu\t2011-10-02\tq\tp\n\nt1\tu\t2011-10-02\tq\tp\n",
    );
    let e = read_personal_tasks(&p).unwrap_err();
    assert_eq!((e.line, e.field()), (Some(3), Some("qid")));
    assert!(matches!(
        e.kind,
        EvalErrorKind::DuplicateQid { first_line: 1, .. }
    ));
}

#[test]
fn trec_run_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run.trec");
    let run = vec![
        (
            "q2".to_string(),
            vec![
                ("p7".to_string(), 12.5),
                ("p1".to_string(), 0.1 + 0.2),
                ("p3".to_string(), -1e-7),
            ],
        ),
        ("q1".to_string(), vec![("p1".to_string(), 3.0)]),
        ("q3".to_string(), vec![]),
    ];
    write_trec_run(&path, "bm25", &run).unwrap();
    let text = fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4);
    assert_eq!(lines[0], "q2 Q0 p7 1 12.5 bm25");
    assert!(lines[1].starts_with("q2 Q0 p1 2 0.30000000000000004 bm25"));
    assert_eq!(lines[3], "q1 Q0 p1 1 3 bm25");
    let back = read_trec_run(&path).unwrap();
    // the empty ranking of q3 writes no line, so it does not come back
    assert_eq!(back, run[..2].to_vec());
    // no temporary file is left behind
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn trec_run_overwrites_atomically_and_validates_first() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run.trec");
    let good = vec![("q1".to_string(), vec![("a".to_string(), 1.0)])];
    write_trec_run(&path, "r", &good).unwrap();
    let before = fs::read_to_string(&path).unwrap();
    // (run name, run, the field the error must name)
    type Case = (&'static str, Vec<(String, ScoredRanking)>, &'static str);
    let bad_cases: Vec<Case> = vec![
        ("r", vec![("q1".into(), vec![("a b".into(), 1.0)])], "doc"),
        (
            "r",
            vec![("q1".into(), vec![("a".into(), f64::NAN)])],
            "score",
        ),
        (
            "r",
            vec![("q1".into(), vec![("a".into(), 1.0), ("a".into(), 0.5)])],
            "doc",
        ),
        (
            "r",
            vec![("q1".into(), vec![]), ("q1".into(), vec![])],
            "qid",
        ),
        ("", good.clone(), "run_name"),
        ("my run", good.clone(), "run_name"),
    ];
    for (name, run, field) in bad_cases {
        let e = write_trec_run(&path, name, &run).unwrap_err();
        assert_eq!(e.field(), Some(field), "{e}");
        assert!(e.is_caller_fault());
    }
    // the earlier file is untouched and no temporary file is left behind
    assert_eq!(fs::read_to_string(&path).unwrap(), before);
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn read_trec_run_errors() {
    let (_d, p) = file("run.trec", "q1 Q0 a 1 2.0 r\nq1 Q0 b two 1.0 r\n");
    let e = read_trec_run(&p).unwrap_err();
    assert_eq!((e.line, e.field()), (Some(2), Some("rank")));
    let (_d, p) = file("run.trec", "q1 Q0 a 1 NaN r\n");
    let e = read_trec_run(&p).unwrap_err();
    assert_eq!((e.line, e.field()), (Some(1), Some("score")));
    let (_d, p) = file("run.trec", "q1 Q0 a 1 1 r\nq1 Q0 a 2 0 r\n");
    let e = read_trec_run(&p).unwrap_err();
    assert_eq!((e.line, e.field()), (Some(2), Some("docid")));
    let (_d, p) = file("run.trec", "q1 Q0 a 1 1\n");
    let e = read_trec_run(&p).unwrap_err();
    assert!(matches!(
        e.kind,
        EvalErrorKind::ColumnCount { found: 5, .. }
    ));
}

#[test]
fn read_trec_run_sorts_by_rank() {
    let (_d, p) = file("run.trec", "q1 Q0 b 2 1 r\nq2 Q0 z 1 9 r\nq1 Q0 a 1 2 r\n");
    let run = read_trec_run(&p).unwrap();
    assert_eq!(
        run,
        vec![
            (
                "q1".to_string(),
                vec![("a".to_string(), 2.0), ("b".to_string(), 1.0)]
            ),
            ("q2".to_string(), vec![("z".to_string(), 9.0)]),
        ]
    );
}

#[test]
fn write_json_pretty_and_atomic() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("report.json");
    let value: HashMap<&str, Vec<u32>> = [("a", vec![1, 2])].into_iter().collect();
    write_json(&path, &value).unwrap();
    let text = fs::read_to_string(&path).unwrap();
    assert_eq!(text, "{\n  \"a\": [\n    1,\n    2\n  ]\n}\n");
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn write_errors_name_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no/such/dir/report.json");
    let e = write_json(&missing, &1).unwrap_err();
    assert!(matches!(e.kind, EvalErrorKind::Write(_)));
    assert!(e.to_string().contains("report.json: cannot write the file"));
    let e = write_json(Path::new("/"), &1).unwrap_err();
    assert!(matches!(e.kind, EvalErrorKind::NoFileName));
    // a map with non-string keys cannot be JSON
    let bad: HashMap<(u8, u8), u8> = [((1, 2), 3)].into_iter().collect();
    let e = write_json(&dir.path().join("bad.json"), &bad).unwrap_err();
    assert!(matches!(e.kind, EvalErrorKind::Json(_)));
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn candidate_lists_read_as_lines_or_json() {
    let (_d, p) = file("c.txt", "\u{feff}p1\t2.5\r\n\np2\np3\t-1\n");
    let c = read_candidates(&p).unwrap();
    assert_eq!(c.len(), 3);
    assert_eq!((c[0].id.as_str(), c[0].score), ("p1", Some(2.5)));
    assert_eq!((c[1].id.as_str(), c[1].score), ("p2", None));
    assert_eq!(c[2].score, Some(-1.0));
    let (_d, p) = file(
        "c.json",
        "\u{feff}[{\"id\": \"a\", \"score\": 1}, {\"id\": \"b\"}, {\"id\": 17, \"score\": null}]",
    );
    let c = read_candidates(&p).unwrap();
    assert_eq!((c[1].id.as_str(), c[1].score), ("b", None));
    assert_eq!(
        (c[2].id.as_str(), c[2].score),
        ("17", None),
        "integer ids as the catalog reads them"
    );
    let (_d, p) = file("c.txt", "p1\t2\np2\tlots\n");
    let e = read_candidates(&p).unwrap_err();
    assert_eq!((e.line, e.field()), (Some(2), Some("score")));
    let (_d, p) = file("c.txt", "p1\n\t3\n");
    let e = read_candidates(&p).unwrap_err();
    assert_eq!((e.line, e.field()), (Some(2), Some("id")));
    assert!(read_candidates(Path::new("no/such/file")).is_err());
}

#[test]
fn bad_candidate_lists_are_refused_naming_line_or_element_and_field() {
    // (file name, contents, line, field, words the message must hold)
    let cases: [(&str, &str, Option<usize>, &str, &str); 10] = [
        (
            "c.txt",
            "p1\t1\np2\tNaN\n",
            Some(2),
            "score",
            "not a finite number",
        ),
        (
            "c.txt",
            "p1\tinf\n",
            Some(1),
            "score",
            "not a finite number",
        ),
        ("c.txt", "p1\np2\np1\t3\n", Some(3), "id", "first at line 1"),
        ("c.txt", "p1\np\u{1}2\n", Some(2), "id", "control character"),
        ("c.txt", "a\rb\n", Some(1), "id", "control character"),
        (
            "c.json",
            "[{\"id\": \"a\"}, {\"id\": \"a\"}]",
            None,
            "[1].id",
            "first at candidates[0]",
        ),
        (
            "c.json",
            "[{\"id\": \"a\\tb\"}]",
            None,
            "[0].id",
            "control character",
        ),
        (
            "c.json",
            "[{\"id\": \"a\", \"score\": 1e39}]",
            None,
            "[0].score",
            "not a finite number",
        ),
        (
            "c.json",
            "[{\"id\": 1.5}]",
            None,
            "[0]",
            "string or integer",
        ),
        (
            "c.json",
            "[{\"id\": \"a\"}, \"b\"]",
            None,
            "[1]",
            "expected an object",
        ),
    ];
    for (name, text, line, field, words) in cases {
        let (_d, p) = file(name, text);
        let e = read_candidates(&p).unwrap_err();
        assert_eq!((e.line, e.field()), (line, Some(field)), "{text:?}: {e}");
        assert!(e.to_string().contains(words), "{text:?}: {e}");
        assert!(e.is_caller_fault(), "{e}");
    }
    // A bare object (or any JSON that is not an array) is refused, not read as ids.
    for text in ["{\"id\": \"p1\", \"score\": 2}", " {\"candidates\": []}\n"] {
        let (_d, p) = file("c.json", text);
        let e = read_candidates(&p).unwrap_err();
        assert!(e.to_string().contains("not an array"), "{text}: {e}");
        assert!(e.to_string().contains("JSON array"), "{text}: {e}");
    }
    let (_d, p) = file("c.json", "[{\"id\": 1}");
    let e = read_candidates(&p).unwrap_err();
    assert!(e.to_string().contains("JSON array"), "{e}");
}
