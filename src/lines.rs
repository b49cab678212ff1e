//! Line-oriented input, shared by every file reader (catalogs, events, queries,
//! qrels, personalised tasks, impressions, candidate lists): splitting a stream
//! into numbered, non-blank lines, dropping a leading byte-order mark, and turning
//! JSON parse problems into short, readable messages.

use std::io::{self, BufRead, BufReader, Read};

/// Longest excerpt of input kept in an error message, in characters.
pub(crate) const MAX_EXCERPT_CHARS: usize = 60;

/// Read buffer size: large enough that a typical line (a few hundred bytes to a
/// few KB of description) needs no more than one refill.
const READ_BUFFER_BYTES: usize = 64 * 1024;

/// The UTF-8 byte-order mark.
const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// Shortens `text` to [`MAX_EXCERPT_CHARS`] characters (plus `...`) for an error
/// message.
pub(crate) fn shorten(text: &str) -> String {
    match text.char_indices().nth(MAX_EXCERPT_CHARS) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text.to_owned(),
    }
}

/// Drops a UTF-8 byte-order mark from the start of `reader`, if there is one.
pub(crate) fn skip_bom(mut reader: impl Read) -> io::Result<impl Read> {
    let mut head = [0u8; 3];
    let mut filled = 0;
    while filled < head.len() {
        match reader.read(&mut head[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let start = if head[..filled] == *UTF8_BOM {
        filled
    } else {
        0
    };
    Ok(io::Cursor::new(head[start..filled].to_vec()).chain(reader))
}

/// Calls `each(line_number, bytes)` for every line of `reader` that is not blank
/// (only ASCII whitespace), with the line ending (`\n` or `\r\n`) removed. Line
/// numbers are 1-based and count every physical line. A read failure becomes
/// `io_error(line_number, error)`; the first `Err` from `each` stops the reading.
pub(crate) fn read_lines<E>(
    reader: impl Read,
    io_error: impl Fn(usize, io::Error) -> E,
    mut each: impl FnMut(usize, &[u8]) -> Result<(), E>,
) -> Result<(), E> {
    let mut reader = BufReader::with_capacity(READ_BUFFER_BYTES, reader);
    let mut buf = Vec::new();
    let mut line = 0usize;
    loop {
        buf.clear();
        let n = reader
            .read_until(b'\n', &mut buf)
            .map_err(|e| io_error(line + 1, e))?;
        if n == 0 {
            return Ok(());
        }
        line += 1;
        let bytes = buf.strip_suffix(b"\n").unwrap_or(&buf);
        let bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
        if bytes.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        each(line, bytes)?;
    }
}

/// serde_json's message for a one-line document, with its "at line 1 column N"
/// (always line 1 here) replaced by just the column.
pub(crate) fn json_error_message(e: &serde_json::Error) -> String {
    let mut message = e.to_string();
    if let Some(at) = message.rfind(" at line ") {
        message.truncate(at);
    }
    message.push_str(&format!(" at column {}", e.column()));
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_numbered_stripped_and_blank_ones_skipped() {
        let input = b"a\r\n\n  \t\nb\nc";
        let mut seen = Vec::new();
        read_lines(
            &input[..],
            |_, e| e,
            |n, bytes| {
                seen.push((n, bytes.to_vec()));
                Ok(())
            },
        )
        .unwrap();
        assert_eq!(
            seen,
            vec![(1, b"a".to_vec()), (4, b"b".to_vec()), (5, b"c".to_vec())]
        );
    }

    #[test]
    fn bom_is_dropped_only_at_the_start() {
        let mut out = String::new();
        skip_bom(&b"\xEF\xBB\xBFab"[..])
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        assert_eq!(out, "ab");
        let mut out = Vec::new();
        skip_bom(&b"a\xEF\xBB\xBF"[..])
            .unwrap()
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, b"a\xEF\xBB\xBF");
    }

    #[test]
    fn shorten_keeps_short_text_and_cuts_long_text() {
        assert_eq!(shorten("abc"), "abc");
        let long = "é".repeat(100);
        assert_eq!(shorten(&long).chars().count(), MAX_EXCERPT_CHARS + 3);
    }
}
