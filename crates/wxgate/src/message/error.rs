//! Why a message or campaign was refused: one `FieldError` per broken rule, each naming the JSON
//! path, a stable rule code and how to fix it. The list is capped so a million bad recipients
//! cost a counter, not a million formatted strings.

use std::fmt;

use serde::Serialize;

/// At most this many `FieldError`s are kept; the rest are only counted.
pub const MAX_ERRORS: usize = 20;

/// One broken rule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FieldError {
    /// JSON path of the value: `to`, `data.thing1`, `recipients[17].data.thing1`,
    /// `textcard.description`, or `line 5` for a CSV upload.
    pub field: String,
    /// Stable snake_case code (`too_long`, `not_a_number`, `required`, ...).
    pub rule: &'static str,
    /// What is wrong and how to fix it; names limits and lengths, never echoes long values.
    pub message: String,
}

/// Everything wrong with a request, capped at [`MAX_ERRORS`] plus a count of the rest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ValidationError {
    pub errors: Vec<FieldError>,
    /// Problems found beyond the first [`MAX_ERRORS`].
    pub more: usize,
}

impl ValidationError {
    /// A single problem.
    pub fn one(field: impl Into<String>, rule: &'static str, message: impl Into<String>) -> Self {
        ValidationError {
            errors: vec![FieldError {
                field: field.into(),
                rule,
                message: message.into(),
            }],
            more: 0,
        }
    }

    /// How many problems were found, kept or not.
    pub fn total(&self) -> usize {
        self.errors.len() + self.more
    }
}

impl fmt::Display for ValidationError {
    /// One line: the first problem and how many more there are.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.errors.first() {
            None => f.write_str("invalid request"),
            Some(e) => {
                write!(f, "{}: {} ({})", e.field, e.message, e.rule)?;
                match self.total() - 1 {
                    0 => Ok(()),
                    1 => f.write_str("; and 1 more problem"),
                    n => write!(f, "; and {n} more problems"),
                }
            }
        }
    }
}

impl std::error::Error for ValidationError {}

/// Collects problems while validation goes on. Field paths and messages are closures so that
/// nothing is formatted once the cap is reached.
#[derive(Debug, Default)]
pub(crate) struct Errors {
    list: Vec<FieldError>,
    more: usize,
}

impl Errors {
    pub fn add(
        &mut self,
        field: impl FnOnce() -> String,
        rule: &'static str,
        message: impl FnOnce() -> String,
    ) {
        if self.list.len() < MAX_ERRORS {
            self.list.push(FieldError {
                field: field(),
                rule,
                message: message(),
            });
        } else {
            self.more += 1;
        }
    }

    /// Takes over the problems `other` collected (still capped).
    pub fn absorb(&mut self, other: Errors) {
        self.absorb_validation(ValidationError {
            errors: other.list,
            more: other.more,
        });
    }

    /// Takes over the problems of `e` (still capped).
    pub fn absorb_validation(&mut self, e: ValidationError) {
        for f in e.errors {
            self.add(|| f.field, f.rule, || f.message);
        }
        self.more += e.more;
    }

    /// Shorthand for a fixed field path.
    pub fn at(&mut self, field: &str, rule: &'static str, message: impl FnOnce() -> String) {
        self.add(|| field.to_owned(), rule, message);
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// `Ok(value)` if nothing was reported.
    pub fn finish<T>(self, value: T) -> Result<T, ValidationError> {
        if self.list.is_empty() {
            Ok(value)
        } else {
            Err(ValidationError {
                errors: self.list,
                more: self.more,
            })
        }
    }
}

/// Adds the CSV line a recipient came from to a message.
pub(crate) fn with_line(message: impl Into<String>, line: Option<u64>) -> String {
    let message = message.into();
    match line {
        Some(n) => format!("{message} (CSV line {n})"),
        None => message,
    }
}
