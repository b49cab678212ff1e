//! Reading and writing evaluation files: query lists, TREC qrels, personalised tasks, TREC run
//! files and JSON reports.
//!
//! Formats (one record a line; blank lines are skipped; a UTF-8 byte-order mark and Windows line
//! endings are tolerated):
//!
//! * queries (BEIR / MS MARCO `queries.tsv`): `qid<TAB>query text`. The text is everything after
//!   the first tab and may be empty. Query ids are unique.
//! * qrels (TREC): `qid iteration docid grade`, whitespace separated; the iteration column
//!   (usually `0`) is ignored; the grade is an integer and may be negative (TREC's "junk" grade),
//!   which is kept as is (the metrics treat it as gain 0). A (qid, docid) pair judged twice must
//!   have the same grade.
//! * personalised tasks: `qid<TAB>user<TAB>ts<TAB>query<TAB>target_item`, exactly 5 columns;
//!   `query` and `ts` may be empty; `qid` is unique.
//! * TREC run: `qid Q0 docid rank score run_name`, rank 1-based.
//!
//! Writers never leave a half-written file: they write a temporary file in the same directory,
//! fsync it, rename it over the target and fsync the directory.
//!
//! No metric formulas live here; see `metrics.rs` for those.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

use super::error::{EvalError, EvalErrorKind};

/// Relevance judgements: query id → (product id → integer grade).
pub type Qrels = HashMap<String, HashMap<String, i32>>;

/// One query's ranking with scores, best first: (product id, score) pairs, as in a TREC run.
pub type ScoredRanking = Vec<(String, f64)>;

/// A (rank, product id, score) line of a TREC run file being read.
type RunLine = (i64, String, f64);

/// One query of an evaluation set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    /// The query id, as used in qrels and run files.
    pub qid: String,
    /// The query text; may be empty.
    pub text: String,
}

/// One personalised evaluation task: a user searched `query` at time `ts`, and `target` is the
/// item they went on to pick (scored with Hit@k / MRR against a single target).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersonalTask {
    /// The task id.
    pub qid: String,
    /// The user id whose profile personalises the ranking.
    pub user: String,
    /// The timestamp of the search, as written in the file (events after it must not be used).
    pub ts: String,
    /// The query text; may be empty.
    pub query: String,
    /// The product id the user picked.
    pub target: String,
}

/// Line layout of a query file, for error messages.
const QUERY_FORMAT: &str = "`qid<TAB>query text`";
/// Line layout of a qrels file, for error messages.
const QRELS_FORMAT: &str = "`qid 0 docid grade`, whitespace separated";
/// Line layout of a personalised task file, for error messages.
const TASK_FORMAT: &str = "`qid<TAB>user<TAB>ts<TAB>query<TAB>target_item`";
/// Line layout of a TREC run file, for error messages.
const RUN_FORMAT: &str = "`qid Q0 docid rank score run_name`, whitespace separated";

/// Calls `f(line_number, line)` for every non-blank line of `path`, with 1-based line numbers,
/// the line ending (`\n` or `\r\n`) removed and a leading byte-order mark stripped.
fn for_each_line(
    path: &Path,
    mut f: impl FnMut(usize, &str) -> Result<(), EvalError>,
) -> Result<(), EvalError> {
    let file = File::open(path).map_err(|e| EvalError::file(path, EvalErrorKind::Read(e)))?;
    let mut reader = BufReader::new(file);
    let mut buf = Vec::new();
    let mut line_no = 0;
    loop {
        buf.clear();
        let n = reader
            .read_until(b'\n', &mut buf)
            .map_err(|e| EvalError::at(path, line_no + 1, None, EvalErrorKind::Read(e)))?;
        if n == 0 {
            return Ok(());
        }
        line_no += 1;
        let bytes = buf.strip_suffix(b"\n").unwrap_or(&buf);
        let bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
        let line = std::str::from_utf8(bytes)
            .map_err(|_| EvalError::at(path, line_no, None, EvalErrorKind::InvalidUtf8))?;
        let line = if line_no == 1 {
            line.strip_prefix('\u{feff}').unwrap_or(line)
        } else {
            line
        };
        if !line.trim().is_empty() {
            f(line_no, line)?;
        }
    }
}

/// Checks an id that must be non-empty and free of whitespace (so it survives the
/// whitespace-separated TREC formats); returns it trimmed.
fn check_id<'a>(
    path: &Path,
    line: usize,
    field: &'static str,
    value: &'a str,
) -> Result<&'a str, EvalError> {
    let value = value.trim();
    if value.is_empty() {
        return Err(EvalError::at(path, line, Some(field), EvalErrorKind::Empty));
    }
    if value.chars().any(char::is_whitespace) {
        return Err(EvalError::at(
            path,
            line,
            Some(field),
            EvalErrorKind::ContainsWhitespace {
                value: value.to_string(),
            },
        ));
    }
    Ok(value)
}

/// Records `qid` as seen on `line`, failing if it was seen before.
fn check_unique(
    seen: &mut HashMap<String, usize>,
    path: &Path,
    line: usize,
    qid: &str,
) -> Result<(), EvalError> {
    match seen.entry(qid.to_string()) {
        Entry::Occupied(first) => Err(EvalError::at(
            path,
            line,
            Some("qid"),
            EvalErrorKind::DuplicateQid {
                qid: qid.to_string(),
                first_line: *first.get(),
            },
        )),
        Entry::Vacant(slot) => {
            slot.insert(line);
            Ok(())
        }
    }
}

/// Reads a query file, `qid<TAB>query text` per line (BEIR / MS MARCO style), in file order.
///
/// Blank lines are skipped. The text is everything after the first tab and may be empty. The qid
/// is trimmed and must be non-empty without inner whitespace. Errors name `file:line`: a line
/// without a tab, a bad qid, or a qid already seen (the error names both lines).
pub fn read_queries(path: &Path) -> Result<Vec<Query>, EvalError> {
    let mut queries = Vec::new();
    let mut seen = HashMap::new();
    for_each_line(path, |line_no, line| {
        let (qid, text) = line.split_once('\t').ok_or_else(|| {
            EvalError::at(
                path,
                line_no,
                None,
                EvalErrorKind::MissingTab {
                    format: QUERY_FORMAT,
                },
            )
        })?;
        let qid = check_id(path, line_no, "qid", qid)?;
        check_unique(&mut seen, path, line_no, qid)?;
        queries.push(Query {
            qid: qid.to_string(),
            text: text.to_string(),
        });
        Ok(())
    })?;
    Ok(queries)
}

/// Reads TREC qrels: `qid iteration docid grade` per line, whitespace separated.
///
/// The iteration column is ignored; the grade is an integer and is kept as is, negative grades
/// included. A line with other than 4 columns, a non-integer grade, or a second judgement of the
/// same (qid, docid) with a different grade is an error naming `file:line` and the field.
pub fn read_qrels(path: &Path) -> Result<Qrels, EvalError> {
    // (grade, line) so a conflicting repeat can name the first line.
    let mut judged: HashMap<String, HashMap<String, (i32, usize)>> = HashMap::new();
    for_each_line(path, |line_no, line| {
        let cols: Vec<&str> = line.split_whitespace().collect();
        let &[qid, _iteration, doc, grade] = cols.as_slice() else {
            return Err(EvalError::at(
                path,
                line_no,
                None,
                EvalErrorKind::ColumnCount {
                    format: QRELS_FORMAT,
                    expected: 4,
                    found: cols.len(),
                },
            ));
        };
        let grade: i32 = grade.parse().map_err(|_| {
            EvalError::at(
                path,
                line_no,
                Some("grade"),
                EvalErrorKind::NotAnInteger {
                    value: grade.to_string(),
                },
            )
        })?;
        match judged
            .entry(qid.to_string())
            .or_default()
            .entry(doc.to_string())
        {
            Entry::Vacant(slot) => {
                slot.insert((grade, line_no));
            }
            Entry::Occupied(first) => {
                let (first_grade, first_line) = *first.get();
                if first_grade != grade {
                    return Err(EvalError::at(
                        path,
                        line_no,
                        Some("grade"),
                        EvalErrorKind::ConflictingGrade {
                            qid: qid.to_string(),
                            doc: doc.to_string(),
                            first: first_grade,
                            first_line,
                            second: grade,
                        },
                    ));
                }
            }
        }
        Ok(())
    })?;
    Ok(judged
        .into_iter()
        .map(|(qid, docs)| {
            let docs = docs.into_iter().map(|(doc, (g, _))| (doc, g)).collect();
            (qid, docs)
        })
        .collect())
}

/// Reads personalised tasks: `qid<TAB>user<TAB>ts<TAB>query<TAB>target_item`, exactly 5
/// tab-separated columns per line, in file order.
///
/// `qid`, `user` and `target` must be non-empty (and `qid`, `target` free of whitespace);
/// `ts` and `query` may be empty; all but `query` are trimmed. A qid seen twice is an error
/// naming both lines.
pub fn read_personal_tasks(path: &Path) -> Result<Vec<PersonalTask>, EvalError> {
    let mut tasks = Vec::new();
    let mut seen = HashMap::new();
    for_each_line(path, |line_no, line| {
        let cols: Vec<&str> = line.split('\t').collect();
        let &[qid, user, ts, query, target] = cols.as_slice() else {
            return Err(EvalError::at(
                path,
                line_no,
                None,
                EvalErrorKind::ColumnCount {
                    format: TASK_FORMAT,
                    expected: 5,
                    found: cols.len(),
                },
            ));
        };
        let qid = check_id(path, line_no, "qid", qid)?;
        let user = user.trim();
        if user.is_empty() {
            return Err(EvalError::at(
                path,
                line_no,
                Some("user"),
                EvalErrorKind::Empty,
            ));
        }
        let target = check_id(path, line_no, "target_item", target)?;
        check_unique(&mut seen, path, line_no, qid)?;
        tasks.push(PersonalTask {
            qid: qid.to_string(),
            user: user.to_string(),
            ts: ts.trim().to_string(),
            query: query.to_string(),
            target: target.to_string(),
        });
        Ok(())
    })?;
    Ok(tasks)
}

/// Reads a TREC run file, `qid Q0 docid rank score run_name` per line, as written by
/// [`write_trec_run`]: queries in order of first appearance, each ranking sorted by the rank
/// column (ties keep file order). The `Q0` and run-name columns are not checked.
///
/// Errors name `file:line` and the field: wrong column count, a non-integer rank, a non-finite
/// score, a document listed twice for one query.
pub fn read_trec_run(path: &Path) -> Result<Vec<(String, ScoredRanking)>, EvalError> {
    // Per query: (rank, doc, score) in file order, plus the docs seen.
    let mut queries: Vec<(String, Vec<RunLine>)> = Vec::new();
    let mut index: HashMap<String, (usize, HashSet<String>)> = HashMap::new();
    for_each_line(path, |line_no, line| {
        let cols: Vec<&str> = line.split_whitespace().collect();
        let &[qid, _q0, doc, rank, score, _name] = cols.as_slice() else {
            return Err(EvalError::at(
                path,
                line_no,
                None,
                EvalErrorKind::ColumnCount {
                    format: RUN_FORMAT,
                    expected: 6,
                    found: cols.len(),
                },
            ));
        };
        let rank: i64 = rank.parse().map_err(|_| {
            EvalError::at(
                path,
                line_no,
                Some("rank"),
                EvalErrorKind::NotAnInteger {
                    value: rank.to_string(),
                },
            )
        })?;
        let score = score
            .parse::<f64>()
            .ok()
            .filter(|s| s.is_finite())
            .ok_or_else(|| {
                EvalError::at(
                    path,
                    line_no,
                    Some("score"),
                    EvalErrorKind::NotANumber {
                        value: score.to_string(),
                    },
                )
            })?;
        let (slot, docs) = index.entry(qid.to_string()).or_insert_with(|| {
            queries.push((qid.to_string(), Vec::new()));
            (queries.len() - 1, HashSet::new())
        });
        if !docs.insert(doc.to_string()) {
            return Err(EvalError::at(
                path,
                line_no,
                Some("docid"),
                EvalErrorKind::DuplicateDoc {
                    qid: qid.to_string(),
                    doc: doc.to_string(),
                },
            ));
        }
        if let Some((_, ranking)) = queries.get_mut(*slot) {
            ranking.push((rank, doc.to_string(), score));
        }
        Ok(())
    })?;
    Ok(queries
        .into_iter()
        .map(|(qid, mut ranking)| {
            ranking.sort_by_key(|(rank, _, _)| *rank);
            let ranking = ranking.into_iter().map(|(_, d, s)| (d, s)).collect();
            (qid, ranking)
        })
        .collect())
}

/// Checks a value written into a whitespace-separated TREC file.
fn check_trec_value(path: &Path, field: &'static str, value: &str) -> Result<(), EvalError> {
    if value.is_empty() {
        return Err(EvalError::field(path, field, EvalErrorKind::Empty));
    }
    if value.chars().any(char::is_whitespace) {
        return Err(EvalError::field(
            path,
            field,
            EvalErrorKind::ContainsWhitespace {
                value: value.to_string(),
            },
        ));
    }
    Ok(())
}

/// Writes a TREC run file, `qid Q0 doc rank score run_name` per line, rank 1-based in the given
/// order, atomically (temporary file in the same directory, fsync, rename).
///
/// Everything is validated before anything is written: ids and `run_name` must be non-empty
/// without whitespace, scores finite, no query listed twice and no document twice in one ranking
/// (trec_eval rejects such runs). Note that trec_eval orders documents by score, not by the rank
/// column, so scores should not increase down a ranking. Scores are written in Rust's shortest
/// round-trip form, so [`read_trec_run`] gives back the same `f64`s.
pub fn write_trec_run(
    path: &Path,
    run_name: &str,
    run: &[(String, ScoredRanking)],
) -> Result<(), EvalError> {
    check_trec_value(path, "run_name", run_name)?;
    let mut qids = HashSet::new();
    for (qid, ranking) in run {
        check_trec_value(path, "qid", qid)?;
        if !qids.insert(qid.as_str()) {
            return Err(EvalError::field(
                path,
                "qid",
                EvalErrorKind::DuplicateRunQuery { qid: qid.clone() },
            ));
        }
        let mut docs = HashSet::new();
        for (doc, score) in ranking {
            check_trec_value(path, "doc", doc)?;
            if !docs.insert(doc.as_str()) {
                return Err(EvalError::field(
                    path,
                    "doc",
                    EvalErrorKind::DuplicateDoc {
                        qid: qid.clone(),
                        doc: doc.clone(),
                    },
                ));
            }
            if !score.is_finite() {
                return Err(EvalError::field(
                    path,
                    "score",
                    EvalErrorKind::NonFiniteScore {
                        qid: qid.clone(),
                        doc: doc.clone(),
                        value: *score,
                    },
                ));
            }
        }
    }
    atomic_write(path, |w| {
        for (qid, ranking) in run {
            for (i, (doc, score)) in ranking.iter().enumerate() {
                writeln!(w, "{qid} Q0 {doc} {} {score} {run_name}", i + 1)?;
            }
        }
        Ok(())
    })
}

/// Writes `value` as pretty-printed JSON (with a trailing newline), atomically like
/// [`write_trec_run`].
pub fn write_json<T: Serialize + ?Sized>(path: &Path, value: &T) -> Result<(), EvalError> {
    let mut bytes = serde_json::to_vec_pretty(value)
        .map_err(|e| EvalError::file(path, EvalErrorKind::Json(e)))?;
    bytes.push(b'\n');
    atomic_write(path, |w| w.write_all(&bytes))
}

/// Makes temporary file names unique among the writes of this process.
static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Writes a file atomically: `write` fills a new temporary file next to `path`
/// (`.NAME.tmp.PID.N`), which is flushed, fsynced and renamed over `path`; the directory is then
/// fsynced (best effort: not every platform can open a directory). On failure the temporary file
/// is removed and `path` is left untouched.
fn atomic_write(
    path: &Path,
    write: impl FnOnce(&mut BufWriter<File>) -> io::Result<()>,
) -> Result<(), EvalError> {
    let file_name = path
        .file_name()
        .ok_or_else(|| EvalError::file(path, EvalErrorKind::NoFileName))?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut tmp_name = OsString::from(".");
    tmp_name.push(file_name);
    tmp_name.push(format!(
        ".tmp.{}.{}",
        std::process::id(),
        TMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let tmp = dir.join(tmp_name);
    let result = (|| {
        let file = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        let mut writer = BufWriter::new(file);
        write(&mut writer)?;
        let file = writer
            .into_inner()
            .map_err(io::IntoInnerError::into_error)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        // The temporary file may not exist (creation failed); nothing more to do then.
        let _ = fs::remove_file(&tmp);
        return Err(EvalError::file(path, EvalErrorKind::Write(e)));
    }
    // Persist the rename itself; ignored where directories cannot be opened (Windows).
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
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
        assert_eq!(e.field, None);
        assert!(matches!(e.kind, EvalErrorKind::MissingTab { .. }));
        let msg = e.to_string();
        assert!(msg.contains("queries.tsv:3: "), "{msg}");
        assert!(e.is_caller_fault());
    }

    #[test]
    fn queries_duplicate_qid_names_both_lines() {
        let (_d, p) = file("queries.tsv", "q1\ta\nq2\tb\nq1\tc\n");
        let e = read_queries(&p).unwrap_err();
        assert_eq!((e.line, e.field), (Some(3), Some("qid")));
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
        assert_eq!((e.line, e.field), (Some(1), Some("qid")));
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
        assert_eq!((e.line, e.field), (Some(2), Some("grade")));
        assert!(
            e.to_string()
                .ends_with(r#"qrels.dev.txt:2: field "grade": expected an integer, got "x""#),
            "{e}"
        );
        let (_d, p) = file("qrels.txt", "q1 0 a 1.0\n");
        let e = read_qrels(&p).unwrap_err();
        assert_eq!((e.line, e.field), (Some(1), Some("grade")));
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
        assert_eq!((e.line, e.field), (Some(3), Some("grade")));
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
            "t1\tu1\t2024-01-01T00:00:00Z\trunning shoes\tp9\nt2\tu2\t\t\tp3\n",
        );
        let t = read_personal_tasks(&p).unwrap();
        assert_eq!(
            t[0],
            PersonalTask {
                qid: "t1".into(),
                user: "u1".into(),
                ts: "2024-01-01T00:00:00Z".into(),
                query: "running shoes".into(),
                target: "p9".into(),
            }
        );
        assert_eq!((t[1].ts.as_str(), t[1].query.as_str()), ("", ""));
    }

    #[test]
    fn personal_tasks_errors() {
        let (_d, p) = file("tasks.tsv", "t1\tu1\tts\tq\tp1\nt2\tu1\tts\tq\n");
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
        let (_d, p) = file("tasks.tsv", "t1\tu1\tts\tq\tp1\textra\n");
        let e = read_personal_tasks(&p).unwrap_err();
        assert!(matches!(
            e.kind,
            EvalErrorKind::ColumnCount { found: 6, .. }
        ));
        let (_d, p) = file("tasks.tsv", "t1\t\tts\tq\tp1\n");
        let e = read_personal_tasks(&p).unwrap_err();
        assert_eq!((e.line, e.field), (Some(1), Some("user")));
        let (_d, p) = file("tasks.tsv", "t1\tu\tts\tq\t\n");
        let e = read_personal_tasks(&p).unwrap_err();
        assert_eq!((e.line, e.field), (Some(1), Some("target_item")));
        let (_d, p) = file("tasks.tsv", "t1\tu\tts\tq\tp\n\nt1\tu\tts\tq\tp\n");
        let e = read_personal_tasks(&p).unwrap_err();
        assert_eq!((e.line, e.field), (Some(3), Some("qid")));
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
            assert_eq!(e.field, Some(field), "{e}");
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
        assert_eq!((e.line, e.field), (Some(2), Some("rank")));
        let (_d, p) = file("run.trec", "q1 Q0 a 1 NaN r\n");
        let e = read_trec_run(&p).unwrap_err();
        assert_eq!((e.line, e.field), (Some(1), Some("score")));
        let (_d, p) = file("run.trec", "q1 Q0 a 1 1 r\nq1 Q0 a 2 0 r\n");
        let e = read_trec_run(&p).unwrap_err();
        assert_eq!((e.line, e.field), (Some(2), Some("docid")));
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
}
