//! Campaign recipients from a CSV upload (RFC 4180: quoted fields, commas and newlines inside
//! quotes, `""` for a quote). The header row names a `to` column and one column per keyword;
//! each row is a recipient. An empty cell means "no override": the campaign default is used.
//! Problems name the line they are on.

use std::cell::RefCell;
use std::collections::{HashSet, VecDeque};
use std::io::{self, Read};
use std::rc::Rc;

use super::data::{Data, MAX_KEYWORDS};
use super::error::{Errors, ValidationError};
use super::request::Recipient;

const BOM: &[u8] = b"\xEF\xBB\xBF";
const TO: &str = "to";

/// A record (one recipient, quoted newlines included) longer than this is refused: it is not a
/// recipient, and a field without its closing quote would otherwise grow until memory runs out.
pub const MAX_RECORD_BYTES: usize = 1024 * 1024;

/// Parses a CSV upload held in memory into recipients (see [`CsvRecipients`], which streams).
pub fn parse_csv(bytes: &[u8]) -> Result<Vec<Recipient>, ValidationError> {
    let mut errs = Errors::default();
    let mut rows = CsvRecipients::new(bytes)?;
    let mut out = Vec::new();
    while let Some(r) = rows.next(&mut errs) {
        out.push(r);
    }
    errs.finish(out)
}

/// Recipients read from a CSV as it arrives, one record at a time: memory holds the reader's
/// buffer and the current record, whatever the size of the upload. Keyword names and values
/// are checked later by the [`CampaignBuilder`](super::CampaignBuilder), which names the CSV
/// line in its messages.
pub struct CsvRecipients<R: Read> {
    reader: ::csv::Reader<Tap<R>>,
    lines: Lines,
    header: Vec<String>,
    to_col: Option<usize>,
    record: ::csv::StringRecord,
    /// Header problems, reported with the first call to `next`.
    header_errs: Option<Errors>,
    done: bool,
}

impl<R: Read> CsvRecipients<R> {
    /// Reads the header row. An empty or unreadable upload is refused here; problems with the
    /// column names are reported by the first [`next`](Self::next).
    pub fn new(input: R) -> Result<Self, ValidationError> {
        let window = Rc::new(RefCell::new(Window::default()));
        let tap = Tap {
            input,
            window: Rc::clone(&window),
            checked: false,
            head: Vec::with_capacity(BOM.len()),
        };
        let mut reader = ::csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(tap);
        let mut lines = Lines { window };
        let mut record = ::csv::StringRecord::new();
        let header: Vec<String> = match reader.read_record(&mut record) {
            Ok(true) => record.iter().map(|h| h.trim().to_owned()).collect(),
            Ok(false) => {
                return Err(ValidationError::one(
                    "line 1",
                    "missing_header",
                    "the CSV is empty: the first line must name the columns, like to,thing1,amount2",
                ));
            }
            Err(e) => return Err(read_error(e, &mut lines)),
        };
        let mut errs = Errors::default();
        let to_col = check_header(&header, &mut errs);
        Ok(CsvRecipients {
            reader,
            lines,
            header,
            to_col,
            record,
            header_errs: Some(errs),
            done: false,
        })
    }

    /// The next recipient, reporting the problems of the rows on the way into `errs`; `None`
    /// at the end (or after an unreadable row). Once a problem is reported, rows are still read
    /// (their problems counted) but no more recipients are built.
    pub(crate) fn next(&mut self, errs: &mut Errors) -> Option<Recipient> {
        if let Some(header_errs) = self.header_errs.take() {
            errs.absorb(header_errs);
        }
        let width = self.header.len();
        while !self.done {
            match self.reader.read_record(&mut self.record) {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) => {
                    let e = read_error(e, &mut self.lines);
                    errs.absorb_validation(e);
                    break;
                }
            }
            let line = self.lines.of(self.record.position());
            let record = &self.record;
            if record.len() != width {
                errs.add(
                    || format!("line {line}"),
                    "ragged_row",
                    || {
                        format!(
                            "line {line} has {} fields, the header has {width}",
                            record.len()
                        )
                    },
                );
                continue;
            }
            let Some(to_col) = self.to_col else { continue };
            if !errs.is_empty() {
                continue; // keep counting problems, stop building recipients
            }
            let mut data = Data::new();
            for (i, cell) in record.iter().enumerate() {
                if i != to_col && !cell.is_empty() {
                    data.push(self.header[i].clone(), cell.to_owned());
                }
            }
            return Some(Recipient {
                to: record[to_col].to_owned(),
                data,
                line: Some(line),
            });
        }
        self.done = true;
        None
    }
}

/// Finds the `to` column; reports a missing one and empty or repeated column names.
fn check_header(header: &[String], errs: &mut Errors) -> Option<usize> {
    let mut seen = HashSet::with_capacity(header.len());
    for (i, name) in header.iter().enumerate() {
        if name.is_empty() {
            errs.at("line 1", "empty_column_name", || {
                format!("column {} of the header has no name", i + 1)
            });
        } else if !seen.insert(name.as_str()) {
            errs.at("line 1", "duplicate_column", || {
                format!("column {name:?} appears twice")
            });
        }
    }
    if header.len() > MAX_KEYWORDS + 1 {
        errs.at("line 1", "too_many_columns", || {
            format!(
                "the header has {} columns: to and at most {MAX_KEYWORDS} keywords",
                header.len()
            )
        });
    }
    let to = header.iter().position(|h| h == TO);
    if to.is_none() {
        errs.at("line 1", "missing_column", || {
            "the header has no to column: name the recipients' column to (openids, or WeCom \
             userids), and one column per keyword, like to,thing1,amount2"
                .into()
        });
    }
    to
}

fn read_error(e: ::csv::Error, lines: &mut Lines) -> ValidationError {
    let line = lines.of(e.position());
    match e.kind() {
        ::csv::ErrorKind::Utf8 { .. } => ValidationError::one(
            format!("line {line}"),
            "not_utf8",
            format!("line {line} is not UTF-8 text: save the file as UTF-8 (in Excel: CSV UTF-8)"),
        ),
        ::csv::ErrorKind::Io(io) if io.kind() == io::ErrorKind::InvalidData => {
            ValidationError::one(format!("line {line}"), "record_too_long", io.to_string())
        }
        _ => ValidationError::one(format!("line {line}"), "malformed_csv", e.to_string()),
    }
}

/// The bytes the CSV reader has read but whose line breaks are not counted yet: from the start
/// of the record being looked at to the end of the reader's buffer.
#[derive(Default)]
struct Window {
    /// Offset in the upload of `bytes[0]`.
    base: u64,
    bytes: VecDeque<u8>,
    /// Line breaks before `base`.
    newlines: u64,
}

/// The upload as the CSV reader sees it: without a UTF-8 byte order mark, and copied into the
/// [`Window`] so that [`Lines`] can count line breaks. Refuses to let the window (the current
/// record) grow past [`MAX_RECORD_BYTES`].
struct Tap<R> {
    input: R,
    window: Rc<RefCell<Window>>,
    /// Whether the first bytes were looked at for a byte order mark.
    checked: bool,
    /// Bytes read while looking, not handed over yet.
    head: Vec<u8>,
}

impl<R: Read> Read for Tap<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if !self.checked {
            while self.head.len() < BOM.len() {
                let mut more = [0u8; 3];
                let got = self.input.read(&mut more[..BOM.len() - self.head.len()])?;
                if got == 0 {
                    break;
                }
                self.head.extend_from_slice(&more[..got]);
            }
            if self.head == BOM {
                self.head.clear();
            }
            self.checked = true;
        }
        let n = if self.head.is_empty() {
            self.input.read(buf)?
        } else {
            let n = self.head.len().min(buf.len());
            buf[..n].copy_from_slice(&self.head[..n]);
            self.head.drain(..n);
            n
        };
        let mut w = self.window.borrow_mut();
        w.bytes.extend(&buf[..n]);
        if w.bytes.len() > MAX_RECORD_BYTES + 64 * 1024 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "a record is over {} KiB: one recipient per line, and check that every \
                     quoted field has its closing quote",
                    MAX_RECORD_BYTES / 1024
                ),
            ));
        }
        Ok(n)
    }
}

/// Line numbers of records. The csv crate's own count lags behind by the terminator of the
/// previous record (and blank lines), so lines are counted here: a record's line is the first
/// line at or after its start byte that holds something other than line breaks. Positions only
/// grow, so every byte is looked at once, and bytes before the record are let go.
struct Lines {
    window: Rc<RefCell<Window>>,
}

impl Lines {
    fn of(&mut self, pos: Option<&::csv::Position>) -> u64 {
        let mut w = self.window.borrow_mut();
        let end = w.base + w.bytes.len() as u64;
        let mut start = pos.map_or(w.base, |p| p.byte()).clamp(w.base, end);
        while start < end && matches!(w.bytes[(start - w.base) as usize], b'\n' | b'\r') {
            start += 1;
        }
        let skipped = (start - w.base) as usize;
        let newlines = w.bytes.drain(..skipped).filter(|&b| b == b'\n').count() as u64;
        w.newlines += newlines;
        w.base = start;
        w.newlines + 1
    }
}
