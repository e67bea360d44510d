//! Checks of free-text values that every front door takes from people: one rule, one message,
//! naming the field at fault.

use outpost_core::schedule::Schedule;
use std::io::{BufRead, BufReader, Read};

use serde::de::DeserializeOwned;

use crate::error::{AppError, AppResult};

/// One row of a CSV upload: its line number as a spreadsheet shows it (the header is line 1)
/// and the row, or why it cannot be read.
pub type CsvRow<T> = (usize, Result<T, String>);

/// Reads a CSV upload into rows of `T`: a UTF-8 byte order mark is skipped, cells are trimmed,
/// every row must have the header's columns. `check_header` accepts or refuses the header
/// row; a file of more than `max_rows` rows is refused whole (split it). The file is read as
/// it goes: only the rows are kept.
pub fn csv_rows<T: DeserializeOwned>(
    reader: impl Read,
    max_rows: usize,
    check_header: impl FnOnce(&csv::StringRecord) -> AppResult<()>,
) -> AppResult<Vec<CsvRow<T>>> {
    let mut reader = BufReader::new(reader);
    let start = reader
        .fill_buf()
        .map_err(|e| AppError::internal(format!("reading the upload: {e}")))?;
    if start.starts_with("\u{feff}".as_bytes()) {
        reader.consume("\u{feff}".len());
    }
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .flexible(false)
        .from_reader(reader);
    let headers = reader
        .headers()
        .map_err(|e| AppError::invalid(format!("the CSV header cannot be read: {e}")))?
        .clone();
    check_header(&headers)?;
    let mut rows = Vec::new();
    for (index, record) in reader.records().enumerate() {
        if index >= max_rows {
            return Err(AppError::invalid(format!(
                "the file has more than {max_rows} rows; split it"
            )));
        }
        let row = record
            .map_err(|e| format!("unreadable CSV: {e}"))
            .and_then(|r| {
                r.deserialize::<T>(Some(&headers))
                    .map_err(|e| format!("unreadable row: {e}"))
            });
        rows.push((index + 2, row));
    }
    Ok(rows)
}

/// At most `max` characters and no control character (PostgreSQL refuses NUL in text, and the
/// others have no business in names). The message names the field.
pub fn check_text(field: &str, value: &str, max: usize) -> Result<(), String> {
    if value.chars().count() > max || value.chars().any(char::is_control) {
        return Err(format!(
            "{field} must be at most {max} characters without control characters"
        ));
    }
    Ok(())
}

/// A value that must be given: not blank, then [`check_text`].
pub fn check_required(field: &str, value: &str, max: usize) -> AppResult<()> {
    if value.trim().is_empty() {
        return Err(AppError::invalid(format!("{field}: required")));
    }
    check_text(field, value, max).map_err(AppError::invalid)
}

/// An email address (or nothing): at most 254 characters, with an `@` and no white space.
pub fn check_email(email: &str) -> AppResult<()> {
    check_text("email", email, 254).map_err(AppError::invalid)?;
    if email.is_empty() || (email.contains('@') && !email.contains(char::is_whitespace)) {
        Ok(())
    } else {
        Err(AppError::invalid(format!(
            "email: '{email}' is not an address"
        )))
    }
}

/// An IANA time zone name, as schedules take it.
pub fn check_time_zone(time_zone: &str) -> AppResult<()> {
    Schedule::new(1, 0, 0, time_zone)
        .map(|_| ())
        .map_err(AppError::invalid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_refused_with_the_field_named() {
        assert!(check_text("name", "ok", 2).is_ok());
        assert_eq!(
            check_text("name", "a\0b", 10).unwrap_err(),
            "name must be at most 10 characters without control characters"
        );
        assert!(check_text("name", "abc", 2).is_err());
        assert_eq!(
            check_required("smart_account", "  ", 200)
                .unwrap_err()
                .to_string(),
            "smart_account: required"
        );
        assert!(check_email("").is_ok());
        assert!(check_email("noc@acme.example").is_ok());
        assert_eq!(
            check_email("noc at acme").unwrap_err().to_string(),
            "email: 'noc at acme' is not an address"
        );
        assert!(check_time_zone("Europe/Paris").is_ok());
        assert!(check_time_zone("Mars/Olympus").is_err());
    }
}
