//! Command-line values shared by the commands and the daemon's web layer: parsers, and the
//! error for a value that parses but cannot be used. Uses nothing else of the crate, so
//! every layer may use it.

use std::time::Duration;

/// A duration that must be more than zero (`10s`, `500ms`, `2m`).
pub fn parse_positive_duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s.trim())
        .map_err(|e| format!("{s:?} is not a duration ({e}); try 10s, 500ms or 2m"))?;
    if d.is_zero() {
        return Err(format!("{s:?} is zero; give a duration of more than zero"));
    }
    Ok(d)
}

/// A value that parses but cannot be used, found out at run time (e.g. a `--web-config`
/// file that names a missing certificate): exit code 2, like clap's own errors.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);
