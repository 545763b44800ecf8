//! Campaign recipients from a CSV upload (RFC 4180: quoted fields, commas and newlines inside
//! quotes, `""` for a quote). The header row names a `to` column and one column per keyword;
//! each row is a recipient. An empty cell means "no override": the campaign default is used.
//! Problems name the line they are on.

use std::collections::HashSet;

use super::data::{Data, MAX_KEYWORDS};
use super::error::{Errors, ValidationError};
use super::request::Recipient;

const BOM: &[u8] = b"\xEF\xBB\xBF";
const TO: &str = "to";

/// Parses a CSV upload into recipients; keyword names and values are checked later by
/// `prepare_campaign`, which names the CSV line in its messages.
pub fn parse_csv(bytes: &[u8]) -> Result<Vec<Recipient>, ValidationError> {
    let bytes = bytes.strip_prefix(BOM).unwrap_or(bytes);
    let mut reader = ::csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(bytes);
    let mut errs = Errors::default();
    let mut record = ::csv::StringRecord::new();
    let mut lines = Lines::new(bytes);

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
    let to_col = check_header(&header, &mut errs);
    let width = header.len();

    let mut out = Vec::new();
    loop {
        match reader.read_record(&mut record) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => {
                let e = read_error(e, &mut lines);
                errs.add(
                    || e.errors[0].field.clone(),
                    e.errors[0].rule,
                    || e.errors[0].message.clone(),
                );
                break;
            }
        }
        let line = lines.of(record.position());
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
        let Some(to_col) = to_col else { continue };
        if !errs.is_empty() {
            continue; // keep counting problems, stop building recipients
        }
        let mut data = Data::new();
        for (i, cell) in record.iter().enumerate() {
            if i != to_col && !cell.is_empty() {
                data.push(header[i].clone(), cell.to_owned());
            }
        }
        out.push(Recipient {
            to: record[to_col].to_owned(),
            data,
            line: Some(line),
        });
    }
    errs.finish(out)
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
        _ => ValidationError::one(format!("line {line}"), "malformed_csv", e.to_string()),
    }
}

/// Line numbers of records. The csv crate's own count lags behind by the terminator of the
/// previous record (and blank lines), so lines are counted here: a record's line is the first
/// line at or after its start byte that holds something other than line breaks. Positions only
/// grow, so every byte is looked at once.
struct Lines<'a> {
    bytes: &'a [u8],
    /// Byte up to which newlines were counted, and how many there were.
    counted_to: usize,
    newlines: u64,
}

impl<'a> Lines<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Lines {
            bytes,
            counted_to: 0,
            newlines: 0,
        }
    }

    fn of(&mut self, pos: Option<&::csv::Position>) -> u64 {
        let mut start = pos
            .map_or(self.counted_to, |p| p.byte() as usize)
            .max(self.counted_to);
        while matches!(self.bytes.get(start), Some(b'\n' | b'\r')) {
            start += 1;
        }
        let start = start.min(self.bytes.len());
        let skipped = &self.bytes[self.counted_to..start];
        self.newlines += skipped.iter().filter(|&&b| b == b'\n').count() as u64;
        self.counted_to = start;
        self.newlines + 1
    }
}
