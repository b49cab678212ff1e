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
//!   `ts` is a timestamp (see [`parse_timestamp`]), `query` may be empty; `qid` is unique.
//! * TREC run: `qid Q0 docid rank score run_name`, rank 1-based.
//!
//! Writers never leave a half-written file: they write a temporary file in the same directory,
//! fsync it, rename it over the target and fsync the directory.
//!
//! No metric formulas live here; see `metrics.rs` for those.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::engine::{CandidateCheck, ExternalCandidate};
use crate::lines::{read_lines, skip_bom};
use crate::profile::events::parse_timestamp;
use crate::store::durable;

use super::error::{field_error, file_error, line_error, EvalError, EvalErrorKind};

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
    /// When the search happened, Unix seconds (events at or after it must not be used).
    pub ts: i64,
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
    f: impl FnMut(usize, &str) -> Result<(), EvalError>,
) -> Result<(), EvalError> {
    let file = File::open(path).map_err(|e| file_error(path, EvalErrorKind::Read(e)))?;
    for_each_line_of(file, path, f)
}

/// [`for_each_line`] over any reader; errors name `path`.
fn for_each_line_of(
    input: impl io::Read,
    path: &Path,
    mut f: impl FnMut(usize, &str) -> Result<(), EvalError>,
) -> Result<(), EvalError> {
    let read_error = |line, e| line_error(path, line, None, EvalErrorKind::Read(e));
    let reader = skip_bom(input).map_err(|e| read_error(1, e))?;
    read_lines(reader, read_error, |line_no, bytes| {
        let line = std::str::from_utf8(bytes)
            .map_err(|_| line_error(path, line_no, None, EvalErrorKind::InvalidUtf8))?;
        if line.trim().is_empty() {
            return Ok(());
        }
        f(line_no, line)
    })
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
        return Err(line_error(path, line, Some(field), EvalErrorKind::Empty));
    }
    if value.chars().any(char::is_whitespace) {
        return Err(line_error(
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
        Entry::Occupied(first) => Err(line_error(
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
            line_error(
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
            return Err(line_error(
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
            line_error(
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
                    return Err(line_error(
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
            return Err(line_error(
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
            return Err(line_error(
                path,
                line_no,
                Some("user"),
                EvalErrorKind::Empty,
            ));
        }
        let ts = parse_timestamp(ts).map_err(|e| {
            line_error(
                path,
                line_no,
                Some("ts"),
                EvalErrorKind::InvalidTimestamp(e),
            )
        })?;
        let target = check_id(path, line_no, "target_item", target)?;
        check_unique(&mut seen, path, line_no, qid)?;
        tasks.push(PersonalTask {
            qid: qid.to_string(),
            user: user.to_string(),
            ts,
            query: query.to_string(),
            target: target.to_string(),
        });
        Ok(())
    })?;
    Ok(tasks)
}

/// What a candidate list may look like, for error messages.
const CANDIDATES_FORMAT: &str =
    "a JSON array of {\"id\", \"score\"?} objects, or one `id` or `id<TAB>score` per line";

/// Reads a list of candidates another engine found, for [`Engine::rerank`](crate::Engine::rerank):
/// either a JSON array of `{"id", "score"?}` (an id may be a string or an integer, read as the
/// catalog reads it), or one `id` or `id<TAB>score` per line, best first. `-` reads standard
/// input.
///
/// Every candidate must pass [`CandidateCheck`] (a non-empty id without control characters, a
/// finite score when given, no id twice). Errors name the line (or, in a JSON array, the
/// element as `[i]`) and the field; any other JSON document, such as a bare object, is refused.
pub fn read_candidates(path: &Path) -> Result<Vec<ExternalCandidate>, EvalError> {
    let mut bytes = Vec::new();
    let read = if path.as_os_str() == "-" {
        io::Read::read_to_end(&mut io::stdin(), &mut bytes)
    } else {
        File::open(path).and_then(|mut f| io::Read::read_to_end(&mut f, &mut bytes))
    };
    read.map_err(|e| file_error(path, EvalErrorKind::Read(e)))?;
    let text = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&bytes);
    let first = text.iter().copied().find(|b| !b.is_ascii_whitespace());
    if matches!(first, Some(b'[' | b'{')) {
        return read_candidates_json(path, text);
    }
    let mut check = CandidateCheck::lines();
    let mut out = Vec::new();
    for_each_line_of(bytes.as_slice(), path, |line_no, line| {
        let (id, score) = match line.split_once('\t') {
            Some((id, s)) => {
                let score = s.trim().parse::<f32>().map_err(|_| {
                    line_error(
                        path,
                        line_no,
                        Some("score"),
                        EvalErrorKind::NotANumber {
                            value: s.to_string(),
                        },
                    )
                })?;
                (id, Some(score))
            }
            None => (line, None),
        };
        let c = ExternalCandidate {
            id: id.trim().to_string(),
            score,
        };
        check
            .check(line_no, &c)
            .map_err(|p| line_error(path, line_no, Some(p.field()), EvalErrorKind::Candidate(p)))?;
        out.push(c);
        Ok(())
    })?;
    Ok(out)
}

/// The JSON form of [`read_candidates`]: an array of candidate objects, each checked.
fn read_candidates_json(path: &Path, text: &[u8]) -> Result<Vec<ExternalCandidate>, EvalError> {
    let invalid = |line: Option<usize>, field: Option<&str>, message: String| {
        let kind = EvalErrorKind::InvalidJson { message };
        match line {
            Some(line) => line_error(path, line, field, kind),
            None => EvalError::new(
                path.display().to_string(),
                None,
                field.map(str::to_owned),
                kind,
            ),
        }
    };
    let doc: serde_json::Value = serde_json::from_slice(text).map_err(|e| {
        invalid(
            Some(e.line()),
            None,
            format!("{e}; expected {CANDIDATES_FORMAT}"),
        )
    })?;
    let serde_json::Value::Array(items) = doc else {
        return Err(invalid(
            None,
            None,
            format!(
                "the document is {}, not an array; expected {CANDIDATES_FORMAT}",
                if doc.is_object() {
                    "a single object"
                } else {
                    "a single value"
                }
            ),
        ));
    };
    let mut check = CandidateCheck::indices();
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let at = format!("[{i}]");
        let c = ExternalCandidate::deserialize(item).map_err(|e| {
            invalid(
                None,
                Some(&at),
                format!(
                    "{e}; expected an object {{\"id\": string or integer, \"score\"?: number}}"
                ),
            )
        })?;
        check.check(i, &c).map_err(|p| {
            let field = format!("{at}.{}", p.field());
            EvalError::new(
                path.display().to_string(),
                None,
                Some(field),
                EvalErrorKind::Candidate(p),
            )
        })?;
        out.push(c);
    }
    Ok(out)
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
            return Err(line_error(
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
            line_error(
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
                line_error(
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
            return Err(line_error(
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
        return Err(field_error(path, field, EvalErrorKind::Empty));
    }
    if value.chars().any(char::is_whitespace) {
        return Err(field_error(
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
            return Err(field_error(
                path,
                "qid",
                EvalErrorKind::DuplicateRunQuery { qid: qid.clone() },
            ));
        }
        let mut docs = HashSet::new();
        for (doc, score) in ranking {
            check_trec_value(path, "doc", doc)?;
            if !docs.insert(doc.as_str()) {
                return Err(field_error(
                    path,
                    "doc",
                    EvalErrorKind::DuplicateDoc {
                        qid: qid.clone(),
                        doc: doc.clone(),
                    },
                ));
            }
            if !score.is_finite() {
                return Err(field_error(
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
    write_output(path, |w| {
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
    let mut bytes =
        serde_json::to_vec_pretty(value).map_err(|e| file_error(path, EvalErrorKind::Json(e)))?;
    bytes.push(b'\n');
    write_output(path, |w| w.write_all(&bytes))
}

/// Writes an evaluation output through [`durable::atomic_write_with`] (on failure `path` is
/// left untouched and no temporary file stays behind), in this module's error type.
fn write_output(
    path: &Path,
    write: impl FnOnce(&mut BufWriter<File>) -> io::Result<()>,
) -> Result<(), EvalError> {
    if path.file_name().is_none() {
        return Err(file_error(path, EvalErrorKind::NoFileName));
    }
    durable::atomic_write_with(path, write)
        .map_err(|e| file_error(path, EvalErrorKind::Write(e.source)))
}

#[cfg(test)]
mod tests;
