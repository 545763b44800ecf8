//! Campaign recipients from an NDJSON upload (`application/x-ndjson`): one JSON object per
//! line, `{"to":"…","data":{…}}`, read as they arrive. The campaign's settings (`app`, `type`,
//! `template_id`, defaults…, everything of a JSON campaign but `recipients`) come from the
//! query string or, when it names no `app`, from the first line. Blank lines are skipped;
//! problems name their line.

use std::io::{BufRead, Read};
use std::ops::Range;

use super::error::{Errors, ValidationError};
use super::request::{CampaignRequest, Recipient};

/// A line longer than this is refused (a recipient is a few hundred bytes; the settings line
/// of a WeCom news campaign a few KiB).
pub const MAX_LINE_BYTES: usize = 1024 * 1024;

/// Recipients read from an NDJSON upload, one line at a time.
pub struct NdjsonRecipients<R: BufRead> {
    input: R,
    /// Lines read so far (the number of the last one).
    line: u64,
    buf: Vec<u8>,
    done: bool,
}

impl<R: BufRead> NdjsonRecipients<R> {
    pub fn new(input: R) -> Self {
        NdjsonRecipients {
            input,
            line: 0,
            buf: Vec::new(),
            done: false,
        }
    }

    /// The first non-blank line as the campaign's settings.
    pub fn settings(&mut self) -> Result<CampaignRequest, ValidationError> {
        let missing = || {
            ValidationError::one(
                "line 1",
                "missing_settings",
                "the first line must be the campaign's settings, like {\"app\":\"shop\",\
                 \"type\":\"template\",\"template_id\":\"…\"} (or give them in the query string)",
            )
        };
        let line = self.next_line().map_err(|e| e.unwrap_or_else(missing))?;
        let Some(line) = line else {
            return Err(missing());
        };
        let mut value: serde_json::Value =
            serde_json::from_slice(&self.buf[line]).map_err(|e| {
                ValidationError::one(
                    format!("line {}", self.line),
                    "invalid_json",
                    format!("line {} is not a JSON object: {e}", self.line),
                )
            })?;
        if let Some(obj) = value.as_object_mut() {
            obj.insert("recipients".into(), serde_json::json!([]));
        }
        serde_json::from_value(value).map_err(|e| {
            ValidationError::one(
                format!("line {}", self.line),
                "invalid_settings",
                format!("the settings on line {} are not valid: {e}", self.line),
            )
        })
    }

    /// The next recipient, reporting broken lines into `errs`; `None` at the end (or after an
    /// unreadable line). Once a problem is reported, lines are still read (their problems
    /// counted) but no more recipients are built.
    pub(crate) fn next(&mut self, errs: &mut Errors) -> Option<Recipient> {
        loop {
            let line = match self.next_line() {
                Ok(Some(line)) => line,
                Ok(None) => return None,
                Err(e) => {
                    errs.absorb_validation(e.unwrap_or_else(|| {
                        ValidationError::one("body", "unreadable", "the upload broke off")
                    }));
                    return None;
                }
            };
            let n = self.line;
            match serde_json::from_slice::<Recipient>(&self.buf[line]) {
                Ok(mut r) if errs.is_empty() => {
                    r.line = Some(n);
                    return Some(r);
                }
                Ok(_) => {}
                Err(e) => errs.add(
                    || format!("line {n}"),
                    "invalid_recipient",
                    || {
                        format!(
                            "line {n} is not a recipient like {{\"to\":\"openid\",\"data\":\
                             {{\"thing1\":\"…\"}}}}: {e}"
                        )
                    },
                ),
            }
        }
    }

    /// Where in `buf` the next non-blank line is, without its line break and surrounding
    /// spaces; `Err(None)` when the input failed (what failed is the body reader's to tell),
    /// `Err(Some(_))` for a line too long.
    fn next_line(&mut self) -> Result<Option<Range<usize>>, Option<ValidationError>> {
        while !self.done {
            self.buf.clear();
            let limit = (MAX_LINE_BYTES + 1) as u64;
            let got = (&mut self.input)
                .take(limit)
                .read_until(b'\n', &mut self.buf)
                .map_err(|_| None)?;
            if got == 0 {
                self.done = true;
                break;
            }
            self.line += 1;
            if self.buf.len() > MAX_LINE_BYTES {
                self.done = true;
                return Err(Some(ValidationError::one(
                    format!("line {}", self.line),
                    "line_too_long",
                    format!(
                        "line {} is over {} KiB: one recipient per line",
                        self.line,
                        MAX_LINE_BYTES / 1024
                    ),
                )));
            }
            let text = self.buf.trim_ascii();
            if !text.is_empty() {
                let start = text.as_ptr() as usize - self.buf.as_ptr() as usize;
                return Ok(Some(start..start + text.len()));
            }
        }
        Ok(None)
    }
}
