//! Masking secrets in log output, and splitting a byte stream into lines.
//!
//! [`Masker`] replaces every registered value (secrets, `::add-mask::` values and each line
//! of multi-line values) by `***`, using one Aho-Corasick automaton that is rebuilt only
//! when the set changes. [`LineReader`] splits a stream into complete lines with one large
//! buffer and no per-line allocation, so that a secret split across two writes is still
//! masked (masking always sees complete lines; a partial line is only flushed at EOF or
//! when it exceeds [`MAX_LINE`]).

use std::borrow::Cow;

use aho_corasick::{AhoCorasick, MatchKind};
use tokio::io::{AsyncRead, AsyncReadExt};

/// The replacement for a masked value.
pub const MASK: &str = "***";

/// A line longer than this is emitted in pieces of this size.
pub const MAX_LINE: usize = 64 * 1024;

/// The read size of [`LineReader`].
const READ_CHUNK: usize = 256 * 1024;

/// The set of values to hide.
#[derive(Debug, Default, Clone)]
pub struct Masker {
    values: Vec<String>,
    automaton: Option<AhoCorasick>,
    /// The values without a newline, for [`Masker::mask_lines`] (a value with a newline
    /// never matches within one line; each of its lines is a value of its own).
    line_automaton: Option<AhoCorasick>,
}

impl Masker {
    pub fn new() -> Masker {
        Masker::default()
    }

    /// Registers a value (and, for a multi-line value, each of its non-blank lines).
    /// Blank values are ignored. Returns whether the set changed.
    pub fn add(&mut self, value: &str) -> bool {
        let mut changed = self.insert(value.trim_end_matches(['\r', '\n']));
        if value.contains('\n') {
            for line in value.split('\n') {
                changed |= self.insert(line.trim_end_matches('\r'));
            }
        }
        if changed {
            self.rebuild();
        }
        changed
    }

    fn insert(&mut self, value: &str) -> bool {
        if value.trim().is_empty() || self.values.iter().any(|v| v == value) {
            return false;
        }
        self.values.push(value.to_owned());
        true
    }

    fn rebuild(&mut self) {
        let build = |values: &[&String]| {
            AhoCorasick::builder()
                .match_kind(MatchKind::LeftmostLongest)
                .build(values)
                .ok()
        };
        let all: Vec<&String> = self.values.iter().collect();
        let single: Vec<&String> = all.iter().copied().filter(|v| !v.contains('\n')).collect();
        self.automaton = build(&all);
        self.line_automaton = if single.is_empty() {
            None
        } else {
            build(&single)
        };
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Whether `text` contains any registered value.
    pub fn matches(&self, text: &str) -> bool {
        self.automaton.as_ref().is_some_and(|ac| ac.is_match(text))
    }

    /// `text` with every registered value replaced by `***` (borrowed when nothing matched).
    pub fn mask<'a>(&self, text: &'a str) -> Cow<'a, str> {
        replace(self.automaton.as_ref(), text)
    }

    /// `lines` (text of `\n`-separated lines) masked line by line in one pass: the same
    /// result as [`Masker::mask`] on each line.
    pub fn mask_lines<'a>(&self, lines: &'a str) -> Cow<'a, str> {
        replace(self.line_automaton.as_ref(), lines)
    }
}

/// `text` with every match of `ac` replaced by [`MASK`] (borrowed when nothing matched).
fn replace<'a>(ac: Option<&AhoCorasick>, text: &'a str) -> Cow<'a, str> {
    let Some(ac) = ac else {
        return Cow::Borrowed(text);
    };
    let mut matches = ac.find_iter(text).peekable();
    if matches.peek().is_none() {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for m in matches {
        out.push_str(&text[last..m.start()]);
        out.push_str(MASK);
        last = m.end();
    }
    out.push_str(&text[last..]);
    Cow::Owned(out)
}

/// Splits an async byte stream into lines (without the `\n` or a trailing `\r`).
pub struct LineReader<R> {
    reader: R,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// Bytes in `start..scanned` are known to hold no newline.
    scanned: usize,
    eof: bool,
}

impl<R: AsyncRead + Unpin> LineReader<R> {
    pub fn new(reader: R) -> LineReader<R> {
        LineReader {
            reader,
            buf: vec![0; READ_CHUNK + MAX_LINE],
            start: 0,
            end: 0,
            scanned: 0,
            eof: false,
        }
    }

    /// Bytes read but not yet returned as lines.
    pub fn buffered_len(&self) -> usize {
        self.end - self.start
    }

    /// Every complete line already in the buffer, as one slice of `\n`-terminated lines
    /// (`\r` not removed), or else a [`MAX_LINE`] piece of an over-long line (no `\n`);
    /// without I/O. The same lines as repeated [`LineReader::buffered_line`] calls.
    pub fn buffered_lines(&mut self) -> Option<&[u8]> {
        match memchr::memrchr(b'\n', &self.buf[self.scanned..self.end]) {
            Some(pos) => {
                let range = (self.start, self.scanned + pos + 1);
                self.start = range.1;
                self.scanned = self.start;
                Some(&self.buf[range.0..range.1])
            }
            None if self.end - self.start >= MAX_LINE => {
                let range = (self.start, self.start + MAX_LINE);
                self.start += MAX_LINE;
                self.scanned = self.end;
                Some(&self.buf[range.0..range.1])
            }
            None => {
                self.scanned = self.end;
                None
            }
        }
    }

    /// A complete line already in the buffer (or a [`MAX_LINE`] piece of an over-long one),
    /// without I/O: after [`LineReader::fill_line`], drains a whole read in one go.
    pub fn buffered_line(&mut self) -> Option<&[u8]> {
        let (s, mut e) = match memchr::memchr(b'\n', &self.buf[self.scanned..self.end]) {
            Some(pos) => {
                let nl = self.scanned + pos;
                let line = (self.start, nl);
                self.start = nl + 1;
                self.scanned = self.start;
                line
            }
            None if self.end - self.start >= MAX_LINE => {
                let line = (self.start, self.start + MAX_LINE);
                self.start += MAX_LINE;
                self.scanned = self.end;
                return Some(&self.buf[line.0..line.1]);
            }
            None => {
                self.scanned = self.end;
                return None;
            }
        };
        if e > s && self.buf[e - 1] == b'\r' {
            e -= 1;
        }
        Some(&self.buf[s..e])
    }

    /// Reads until [`LineReader::buffered_line`] has something (`Ok(true)`) or the stream
    /// ended (`Ok(false)`: the rest, a final unterminated line, comes from `next_line`).
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn fill_line(&mut self) -> std::io::Result<bool> {
        loop {
            if memchr::memchr(b'\n', &self.buf[self.scanned..self.end]).is_some() {
                return Ok(true);
            }
            self.scanned = self.end;
            if self.end - self.start >= MAX_LINE {
                return Ok(true);
            }
            if self.eof {
                return Ok(false);
            }
            if self.start > 0 && self.buf.len() - self.end < READ_CHUNK / 2 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.scanned -= self.start;
                self.start = 0;
            }
            let n = self.reader.read(&mut self.buf[self.end..]).await?;
            if n == 0 {
                self.eof = true;
            }
            self.end += n;
        }
    }

    /// The next line, or `None` at EOF. A final line without a newline is returned too.
    ///
    /// # Cancel safety
    /// Cancel safe: no data is lost when the future is dropped before completion.
    pub async fn next_line(&mut self) -> std::io::Result<Option<&[u8]>> {
        let range = loop {
            if let Some(pos) = memchr::memchr(b'\n', &self.buf[self.scanned..self.end]) {
                let nl = self.scanned + pos;
                let line = (self.start, nl);
                self.start = nl + 1;
                self.scanned = self.start;
                break Some(line);
            }
            self.scanned = self.end;
            if self.eof {
                if self.start < self.end {
                    let line = (self.start, self.end);
                    self.start = self.end;
                    self.scanned = self.end;
                    break Some(line);
                }
                break None;
            }
            if self.end - self.start >= MAX_LINE {
                let line = (self.start, self.start + MAX_LINE);
                self.start += MAX_LINE;
                break Some(line);
            }
            if self.start > 0 && self.buf.len() - self.end < READ_CHUNK / 2 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.scanned -= self.start;
                self.start = 0;
            }
            let n = self.reader.read(&mut self.buf[self.end..]).await?;
            if n == 0 {
                self.eof = true;
            }
            self.end += n;
        };
        Ok(range.map(|(s, mut e)| {
            if e > s && self.buf[e - 1] == b'\r' {
                e -= 1;
            }
            &self.buf[s..e]
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_mask(secrets: &[&str], input: &str, expect: &str) {
        let mut m = Masker::new();
        for s in secrets {
            m.add(s);
        }
        assert_eq!(m.mask(input), expect);
    }

    #[test]
    fn masking_lines_in_one_pass_is_masking_each_line() {
        let mut m = Masker::new();
        for s in ["s3cret", "abc", "abcdef", "line one\nline two", "a\rb"] {
            m.add(s);
        }
        let text =
            "the s3cret\nxabcdefx abc\nline one\nline two\n\nline one line two\nxa\rby\nplain\n";
        let each: String = text
            .split_terminator('\n')
            .map(|l| format!("{}\n", m.mask(l)))
            .collect();
        assert_eq!(m.mask_lines(text), each);
        assert!(matches!(Masker::new().mask_lines(text), Cow::Borrowed(_)));
        assert!(matches!(m.mask_lines("nothing\nhere\n"), Cow::Borrowed(_)));
    }

    #[test]
    fn masks() {
        check_mask(&[], "plain", "plain");
        check_mask(&["s3cret"], "the s3cret is s3cret!", "the *** is ***!");
        check_mask(&["abc", "abcdef"], "xabcdefx abc", "x***x ***");
        check_mask(
            &["line one\nline two"],
            "line two and line one",
            "*** and ***",
        );
        check_mask(&["  "], "a  b", "a  b");
        check_mask(&[""], "ab", "ab");
        check_mask(&["YWJjCg=="], "YWJjCg==", "***");
    }

    async fn lines(input: &[u8], chunk: usize) -> Vec<String> {
        let (mut w, r) = tokio::io::duplex(chunk.max(1));
        let data = input.to_vec();
        let writer = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            for c in data.chunks(chunk.max(1)) {
                w.write_all(c).await.expect("write");
            }
        });
        let mut reader = LineReader::new(r);
        let mut out = Vec::new();
        while let Some(line) = reader.next_line().await.expect("read") {
            out.push(String::from_utf8_lossy(line).into_owned());
        }
        writer.await.expect("writer");
        out
    }

    #[tokio::test]
    async fn splits_lines() {
        for chunk in [1, 3, 4096] {
            assert_eq!(
                lines(b"a\nbb\r\n\nccc", chunk).await,
                vec!["a", "bb", "", "ccc"]
            );
            assert_eq!(lines(b"", chunk).await, Vec::<String>::new());
            assert_eq!(lines(b"x\n", chunk).await, vec!["x"]);
        }
    }

    async fn buffered_lines(input: &[u8], chunk: usize) -> Vec<String> {
        let (mut w, r) = tokio::io::duplex(chunk.max(1));
        let data = input.to_vec();
        let writer = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            for c in data.chunks(chunk.max(1)) {
                w.write_all(c).await.expect("write");
            }
        });
        let mut reader = LineReader::new(r);
        let mut out = Vec::new();
        while reader.fill_line().await.expect("fill") {
            while let Some(line) = reader.buffered_line() {
                out.push(String::from_utf8_lossy(line).into_owned());
            }
        }
        while let Some(line) = reader.next_line().await.expect("read") {
            out.push(String::from_utf8_lossy(line).into_owned());
        }
        writer.await.expect("writer");
        out
    }

    #[tokio::test]
    async fn buffered_draining_sees_the_same_lines() {
        let mut big = Vec::new();
        for i in 0..5000 {
            big.extend_from_slice(format!("line {i}\n").as_bytes());
        }
        big.extend_from_slice(b"tail");
        for chunk in [1, 7, 4096, 1 << 20] {
            assert_eq!(
                buffered_lines(b"a\nbb\r\n\nccc", chunk).await,
                vec!["a", "bb", "", "ccc"]
            );
            assert_eq!(buffered_lines(&big, chunk).await, lines(&big, chunk).await);
        }
        let long = vec![b'x'; MAX_LINE + 5];
        assert_eq!(
            buffered_lines(&long, 100_000)
                .await
                .iter()
                .map(String::len)
                .collect::<Vec<_>>(),
            vec![MAX_LINE, 5]
        );
    }

    #[tokio::test]
    async fn buffered_blocks_hold_the_same_lines() {
        let mut big = Vec::new();
        for i in 0..5000 {
            big.extend_from_slice(format!("line {i}\r\n").as_bytes());
        }
        big.extend_from_slice(b"tail");
        for chunk in [1, 7, 4096, 1 << 20] {
            let (mut w, r) = tokio::io::duplex(chunk);
            let data = big.clone();
            let writer = tokio::spawn(async move {
                use tokio::io::AsyncWriteExt;
                for c in data.chunks(chunk) {
                    w.write_all(c).await.expect("write");
                }
            });
            let mut reader = LineReader::new(r);
            let mut out = Vec::new();
            while reader.fill_line().await.expect("fill") {
                while let Some(block) = reader.buffered_lines() {
                    assert!(block.ends_with(b"\n"));
                    for line in block.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                        out.push(String::from_utf8_lossy(line.strip_suffix(b"\r").unwrap_or(line)).into_owned());
                    }
                }
            }
            while let Some(line) = reader.next_line().await.expect("read") {
                out.push(String::from_utf8_lossy(line).into_owned());
            }
            writer.await.expect("writer");
            assert_eq!(out, lines(&big, chunk).await);
        }
    }

    #[tokio::test]
    async fn long_lines_are_cut() {
        let long = vec![b'a'; MAX_LINE * 2 + 10];
        let got = lines(&long, 100_000).await;
        assert_eq!(
            got.iter().map(String::len).collect::<Vec<_>>(),
            vec![MAX_LINE, MAX_LINE, 10]
        );
    }
}
