//! Reading `timestamp,value` load traces.
//!
//! The timestamp is an integer (kept as it is) or a UTC date-time
//! `YYYY-MM-DD HH:MM:SS` (a `T` separator and a trailing `Z` are accepted),
//! turned into Unix seconds. A first line whose value is not a number is a
//! header; blank lines are skipped.

use std::path::{Path, PathBuf};

/// Why a trace could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CsvError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Line { path: PathBuf, source: LineError },
}

/// A malformed line, by its 1-based number.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LineError {
    #[error("line {line}: expected `timestamp,value`, found {fields} field(s)")]
    Fields { line: usize, fields: usize },
    #[error("line {line}: timestamp {text:?} is neither an integer nor YYYY-MM-DD HH:MM:SS")]
    Timestamp { line: usize, text: String },
    #[error("line {line}: value {text:?} is not a finite number")]
    Value { line: usize, text: String },
}

/// The `(timestamp, value)` rows of the CSV file at `path`.
pub fn read_csv(path: impl AsRef<Path>) -> Result<Vec<(i64, f64)>, CsvError> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path).map_err(|source| CsvError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse_csv(&text).map_err(|source| CsvError::Line {
        path: path.to_path_buf(),
        source,
    })
}

/// The `(timestamp, value)` rows of CSV text (see the module doc).
pub fn parse_csv(text: &str) -> Result<Vec<(i64, f64)>, LineError> {
    let mut rows = Vec::new();
    let mut first = true;
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let raw = raw.trim();
        if raw.is_empty() {
            continue;
        }
        let is_first = std::mem::replace(&mut first, false);
        let fields: Vec<&str> = raw.split(',').map(str::trim).collect();
        let [timestamp, value] = fields[..] else {
            return Err(LineError::Fields {
                line,
                fields: fields.len(),
            });
        };
        let value = match value.parse::<f64>() {
            Ok(value) if value.is_finite() => value,
            Err(_) if is_first => continue, // the header
            _ => {
                return Err(LineError::Value {
                    line,
                    text: value.to_string(),
                })
            }
        };
        let timestamp = parse_timestamp(timestamp).ok_or_else(|| LineError::Timestamp {
            line,
            text: timestamp.to_string(),
        })?;
        rows.push((timestamp, value));
    }
    Ok(rows)
}

fn parse_timestamp(text: &str) -> Option<i64> {
    if let Ok(integer) = text.parse::<i64>() {
        return Some(integer);
    }
    let text = text.strip_suffix('Z').unwrap_or(text);
    let (date, time) = text.split_once([' ', 'T'])?;
    let mut date = date.splitn(3, '-').map(str::parse::<i64>);
    let (year, month, day) = (date.next()?.ok()?, date.next()?.ok()?, date.next()?.ok()?);
    let mut time = time.splitn(3, ':').map(str::parse::<i64>);
    let (hour, minute, second) = (time.next()?.ok()?, time.next()?.ok()?, time.next()?.ok()?);
    let valid = (1..=12).contains(&month)
        && (1..=31).contains(&day)
        && (0..24).contains(&hour)
        && (0..60).contains(&minute)
        && (0..=60).contains(&second);
    valid.then(|| days_from_civil(year, month, day) * 86_400 + hour * 3_600 + minute * 60 + second)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_integer_and_date_time_timestamps_with_or_without_header() {
        let with_header =
            "timestamp,value\n2015-02-26 21:42:53,104\n\n2015-02-26T21:47:53Z, 100.5\n";
        assert_eq!(
            parse_csv(with_header).unwrap(),
            [(1_424_986_973, 104.0), (1_424_987_273, 100.5)]
        );
        assert_eq!(parse_csv("0,1\n60,2.5\n").unwrap(), [(0, 1.0), (60, 2.5)]);
        assert_eq!(parse_csv("").unwrap(), []);
    }

    #[test]
    fn names_the_bad_line() {
        assert_eq!(
            parse_csv("t,v\n1,2\n3,x\n"),
            Err(LineError::Value {
                line: 3,
                text: "x".into()
            })
        );
        assert_eq!(
            parse_csv("1,2\n3\n"),
            Err(LineError::Fields { line: 2, fields: 1 })
        );
        let error = parse_csv("1,2\nyesterday,3\n").unwrap_err();
        assert_eq!(
            error.to_string(),
            "line 2: timestamp \"yesterday\" is neither an integer nor YYYY-MM-DD HH:MM:SS"
        );
        assert!(matches!(
            parse_csv("1,NaN\n"),
            Err(LineError::Value { line: 1, .. })
        ));
    }

    #[test]
    fn read_csv_names_the_path() {
        let error = read_csv("/nonexistent/trace.csv").unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("reading /nonexistent/trace.csv: "),
            "{error}"
        );
    }

    #[test]
    fn unix_epoch_and_leap_days() {
        assert_eq!(parse_timestamp("1970-01-01 00:00:00"), Some(0));
        assert_eq!(parse_timestamp("2000-03-01 00:00:00"), Some(951_868_800));
        assert_eq!(parse_timestamp("2024-02-29 12:00:00"), Some(1_709_208_000));
        assert_eq!(parse_timestamp("2024-13-01 00:00:00"), None);
    }
}
