//! A small streaming CSV reader (RFC 4180: quoted fields, doubled quotes; LF, CRLF or CR line
//! ends), so that
//! drift runs over files larger than memory, with errors that name the line.

use std::io::BufRead;

/// A CSV error with its 1-based line number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct CsvError {
    /// Line of the record where the problem is.
    pub line: u64,
    /// What is wrong.
    pub reason: String,
}

/// Longest record accepted, in bytes (a guard against a file without line ends).
pub const MAX_RECORD_BYTES: usize = 16 << 20;

/// Reads records one at a time, reusing its buffers.
pub struct CsvReader<R> {
    input: R,
    lines_read: u64,
    record_line: u64,
    raw: Vec<u8>,
}

impl<R: BufRead> CsvReader<R> {
    /// A reader over `input`.
    pub fn new(input: R) -> Self {
        CsvReader {
            input,
            lines_read: 0,
            record_line: 0,
            raw: Vec::new(),
        }
    }

    /// Appends one physical line to `raw`, its end included: LF, CRLF or a lone CR (classic
    /// Mac files, which Python's `csv` and pandas read too). Reads at most `room` bytes;
    /// returns how many it appended (0 at the end of input).
    fn read_line(&mut self, room: usize) -> std::io::Result<usize> {
        let mut appended = 0;
        while appended < room {
            let buf = match self.input.fill_buf() {
                Ok(buf) => buf,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if buf.is_empty() {
                break;
            }
            let window = &buf[..buf.len().min(room - appended)];
            match window.iter().position(|&b| b == b'\n' || b == b'\r') {
                Some(end) => {
                    let cr = window[end] == b'\r';
                    let crlf = cr && buf.get(end + 1) == Some(&b'\n');
                    let take = end + 1 + usize::from(crlf);
                    // A CR that ends the buffer: its LF, if any, is in the next one.
                    let lf_may_follow = cr && !crlf && take == buf.len();
                    self.raw.extend_from_slice(&buf[..take]);
                    self.input.consume(take);
                    appended += take;
                    if lf_may_follow {
                        appended += self.take_lf()?;
                    }
                    return Ok(appended);
                }
                None => {
                    let take = window.len();
                    self.raw.extend_from_slice(window);
                    self.input.consume(take);
                    appended += take;
                }
            }
        }
        Ok(appended)
    }

    /// Consumes and appends an LF if the input's next byte is one.
    fn take_lf(&mut self) -> std::io::Result<usize> {
        loop {
            match self.input.fill_buf() {
                Ok([b'\n', ..]) => {
                    self.raw.push(b'\n');
                    self.input.consume(1);
                    return Ok(1);
                }
                Ok(_) => return Ok(0),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// The line number where the last record returned started.
    #[must_use]
    pub fn line(&self) -> u64 {
        self.record_line
    }

    /// Reads the next record into `fields` (cleared first). `Ok(false)` at the end of input.
    ///
    /// A UTF-8 byte order mark at the start of the input is skipped.
    ///
    /// # Errors
    /// Unreadable input, invalid UTF-8, an unterminated quote or a record over
    /// [`MAX_RECORD_BYTES`].
    pub fn read_record(&mut self, fields: &mut Vec<String>) -> Result<bool, CsvError> {
        fields.clear();
        self.raw.clear();
        let start_line = self.lines_read + 1;
        let mut in_quotes = false;
        loop {
            let before = self.raw.len();
            // Read at most one byte past the record limit, so that a file without line ends
            // cannot make us hold more than the limit.
            let room = (MAX_RECORD_BYTES + 1).saturating_sub(self.raw.len());
            let read = self.read_line(room).map_err(|e| CsvError {
                line: start_line,
                reason: format!("cannot read: {e}"),
            })?;
            if read == 0 {
                if self.raw.is_empty() {
                    return Ok(false);
                }
                if in_quotes {
                    return Err(CsvError {
                        line: start_line,
                        reason: "a quoted field is not closed".into(),
                    });
                }
                break;
            }
            self.lines_read += 1;
            if self.raw.len() > MAX_RECORD_BYTES {
                return Err(CsvError {
                    line: start_line,
                    reason: format!("record longer than {MAX_RECORD_BYTES} bytes"),
                });
            }
            in_quotes = self.raw[before..]
                .iter()
                .fold(in_quotes, |q, &b| if b == b'"' { !q } else { q });
            if !in_quotes {
                break;
            }
        }
        while matches!(self.raw.last(), Some(b'\n' | b'\r')) {
            self.raw.pop();
        }
        // A UTF-8 byte order mark (as spreadsheet programs write) is not part of the data.
        if start_line == 1 && self.raw.starts_with(b"\xEF\xBB\xBF") {
            self.raw.drain(..3);
        }
        let text = std::str::from_utf8(&self.raw).map_err(|_| CsvError {
            line: start_line,
            reason: "not valid UTF-8".into(),
        })?;
        self.record_line = start_line;
        split_record(text, fields).map_err(|reason| CsvError {
            line: start_line,
            reason,
        })?;
        Ok(true)
    }
}

/// Splits one record's text into fields, unquoting quoted ones.
fn split_record(text: &str, fields: &mut Vec<String>) -> Result<(), String> {
    let mut field = String::new();
    let mut chars = text.chars().peekable();
    let mut quoted = false;
    let mut at_field_start = true;
    while let Some(c) = chars.next() {
        if quoted {
            if c == '"' {
                if chars.peek() == Some(&'"') {
                    field.push('"');
                    chars.next();
                } else {
                    quoted = false;
                    match chars.peek() {
                        None | Some(',') => {}
                        Some(other) => {
                            return Err(format!("unexpected `{other}` after a closing quote"));
                        }
                    }
                }
            } else {
                field.push(c);
            }
            continue;
        }
        match c {
            ',' => {
                fields.push(std::mem::take(&mut field));
                at_field_start = true;
                continue;
            }
            '"' if at_field_start => quoted = true,
            '"' => return Err("a quote inside an unquoted field".into()),
            _ => field.push(c),
        }
        at_field_start = false;
    }
    if quoted {
        return Err("a quoted field is not closed".into());
    }
    fields.push(field);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(text: &str) -> Result<Vec<Vec<String>>, CsvError> {
        let mut reader = CsvReader::new(text.as_bytes());
        let mut out = Vec::new();
        let mut fields = Vec::new();
        while reader.read_record(&mut fields)? {
            out.push(fields.clone());
        }
        Ok(out)
    }

    #[test]
    fn lf_crlf_and_lone_cr_end_lines_at_any_buffer_boundary() {
        let text = "a,b\r1,2\r\n3,\"x\ry\"\n4,5\r\r\n6,7\r";
        let want = vec![
            vec!["a", "b"],
            vec!["1", "2"],
            vec!["3", "x\ry"],
            vec!["4", "5"],
            vec![""],
            vec!["6", "7"],
        ];
        for capacity in 1..=text.len() + 1 {
            let input = std::io::BufReader::with_capacity(capacity, text.as_bytes());
            let mut reader = CsvReader::new(input);
            let (mut got, mut lines, mut fields) = (Vec::new(), Vec::new(), Vec::new());
            while reader.read_record(&mut fields).expect("valid") {
                got.push(fields.clone());
                lines.push(reader.line());
            }
            assert_eq!(got, want, "buffer of {capacity} bytes");
            assert_eq!(lines, [1, 2, 3, 5, 6, 7], "buffer of {capacity} bytes");
        }
    }

    #[test]
    fn reads_quoted_and_plain_fields() {
        let got = records("a,b,c\r\n1,\"x, \"\"y\"\"\",\n\"multi\nline\",2,\n").expect("valid");
        assert_eq!(
            got,
            vec![
                vec!["a", "b", "c"],
                vec!["1", "x, \"y\"", ""],
                vec!["multi\nline", "2", ""]
            ]
        );
        assert!(records("").expect("empty").is_empty());
        // A byte order mark is skipped, also before a quoted first field.
        let got = records("\u{feff}\"a\",b\n\u{feff}1,2\n").expect("BOM");
        assert_eq!(got, vec![vec!["a", "b"], vec!["\u{feff}1", "2"]]);
        let err = records("a,b\n\"open,2\n").expect_err("unterminated");
        assert_eq!(err.line, 2);
        assert!(records("a\"b,c\n").is_err());
        assert!(records("\"a\"b,c\n").is_err());
    }
}
