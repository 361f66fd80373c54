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

/// A size in bytes: a number with an optional binary unit (`8388608`, `256KiB`, `64M`,
/// `1GiB`; K, M and G are powers of 1024 either way).
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(digits);
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kib" => 10,
        "m" | "mib" => 20,
        "g" | "gib" => 30,
        _ => {
            return Err(format!(
                "{s:?} is not a size: give bytes, or a number with KiB, MiB or GiB (e.g. 64MiB)"
            ));
        }
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size: it must start with a number (e.g. 64MiB)"))?;
    n.checked_mul(1 << shift)
        .ok_or_else(|| format!("{s:?} is too large"))
}

/// A size for people: whole KiB, MiB or GiB where it is one, else one decimal (`8 MiB`,
/// `31.9 KiB`, `544 B`).
pub fn bytes_name(n: u64) -> String {
    const UNITS: [(&str, u64); 3] = [("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)];
    for (name, size) in UNITS {
        if n >= size {
            return if n.is_multiple_of(size) {
                format!("{} {name}", n / size)
            } else {
                format!("{:.1} {name}", n as f64 / size as f64)
            };
        }
    }
    format!("{n} B")
}

/// A value that parses but cannot be used, found out at run time (e.g. a `--web-config`
/// file that names a missing certificate): exit code 2, like clap's own errors.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_units() {
        assert_eq!(parse_bytes("8192"), Ok(8192));
        assert_eq!(parse_bytes("256KiB"), Ok(256 << 10));
        assert_eq!(parse_bytes("64M"), Ok(64 << 20));
        assert_eq!(parse_bytes("1 GiB"), Ok(1 << 30));
        assert_eq!(parse_bytes("4k"), Ok(4096));
        assert!(
            parse_bytes("MiB")
                .unwrap_err()
                .contains("start with a number")
        );
        assert!(
            parse_bytes("64 furlongs")
                .unwrap_err()
                .contains("KiB, MiB or GiB")
        );
        assert!(parse_bytes("99999999999999999999G").is_err());
    }

    #[test]
    fn sizes_are_named_for_people() {
        assert_eq!(bytes_name(8 << 20), "8 MiB");
        assert_eq!(bytes_name(256 << 10), "256 KiB");
        assert_eq!(bytes_name(32_640), "31.9 KiB");
        assert_eq!(bytes_name(544), "544 B");
    }
}
