//! Statistics, the JSON file and the text table.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use serde::Serialize;

/// Median, min and max of a sample.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub n: usize,
}

impl Spread {
    /// `None` for an empty sample (NaNs are ignored).
    pub fn of(values: &[f64]) -> Option<Spread> {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Some(Spread {
            median,
            min: v[0],
            max: v[n - 1],
            n,
        })
    }

    /// "1.23 (1.10-1.40)" with `prec` decimals.
    pub fn show(&self, prec: usize) -> String {
        format!(
            "{:.prec$} ({:.prec$}-{:.prec$})",
            self.median, self.min, self.max
        )
    }
}

/// A goal from issue 6 and whether the run met it (`None`: not measured).
#[derive(Debug, Clone, Serialize)]
pub struct Goal {
    pub goal: String,
    pub measured: String,
    pub met: Option<bool>,
}

impl Goal {
    pub fn new(goal: &str, measured: String, met: Option<bool>) -> Goal {
        Goal {
            goal: goal.to_string(),
            measured,
            met,
        }
    }
    pub fn verdict(&self) -> &'static str {
        match self.met {
            Some(true) => "met",
            Some(false) => "MISSED",
            None => "not measured",
        }
    }
}

/// `YYYYMMDDTHHMMSSZ` for a Unix time (UTC), for file names.
pub fn utc_stamp(unix_secs: u64) -> String {
    let days = (unix_secs / 86_400) as i64;
    let secs = unix_secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// Days since 1970-01-01 -> (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Writes `doc` as pretty JSON to `dir/bench-<stamp>.json` and `dir/latest.json`; returns the
/// timestamped path.
pub fn write_json(dir: &Path, stamp: &str, doc: &impl Serialize) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let text = serde_json::to_string_pretty(doc)? + "\n";
    let path = dir.join(format!("bench-{stamp}.json"));
    std::fs::write(&path, &text).with_context(|| format!("writing {}", path.display()))?;
    let latest = dir.join("latest.json");
    std::fs::write(&latest, &text).with_context(|| format!("writing {}", latest.display()))?;
    Ok(path)
}

/// A plain text table: the first row is the header; columns padded to their widest cell.
pub fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let width: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for (i, r) in rows.iter().enumerate() {
        let line: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(c, s)| format!("{s:<w$}", w = width[c]))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
        if i == 0 {
            let total = width.iter().sum::<usize>() + 2 * cols.saturating_sub(1);
            out.push_str(&"-".repeat(total));
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_takes_median_min_max() {
        let s = Spread::of(&[3.0, 1.0, 2.0, f64::NAN, 10.0]).unwrap();
        assert_eq!((s.median, s.min, s.max, s.n), (2.5, 1.0, 10.0, 4));
        assert_eq!(Spread::of(&[5.0]).unwrap().show(1), "5.0 (5.0-5.0)");
        assert!(Spread::of(&[]).is_none());
    }

    #[test]
    fn utc_stamps_are_right() {
        assert_eq!(utc_stamp(0), "19700101T000000Z");
        assert_eq!(utc_stamp(951_782_400), "20000229T000000Z");
        assert_eq!(utc_stamp(1_767_225_599), "20251231T235959Z");
    }

    #[test]
    fn json_is_written_twice_and_reads_back() {
        let dir = std::env::temp_dir().join(format!("xtask-bench-test-{}", std::process::id()));
        #[derive(Serialize)]
        struct Doc {
            schema: &'static str,
            ratio: Option<Spread>,
            goals: Vec<Goal>,
        }
        let doc = Doc {
            schema: "collapse-trace.bench/1",
            ratio: Spread::of(&[0.3, 0.2, 0.4]),
            goals: vec![Goal::new("x <= 1", "0.5".into(), Some(true))],
        };
        let path = write_json(&dir, "20250101T000000Z", &doc).unwrap();
        let a: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let b: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("latest.json")).unwrap())
                .unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(a, b);
        assert_eq!(a["ratio"]["median"], 0.3);
        assert_eq!(a["goals"][0]["met"], true);
    }

    #[test]
    fn table_pads_columns() {
        let t = table(&[
            vec!["a".into(), "bb".into()],
            vec!["ccc".into(), "d".into()],
        ]);
        assert_eq!(t, "a    bb\n-------\nccc  d\n");
    }
}
