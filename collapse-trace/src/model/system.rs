//! System context a user already has but rarely looks at: `/proc/vmstat`'s `thp_*` counters
//! and khugepaged's progress and knobs. Pure: the caller reads the files and passes their
//! text in.

/// What the system says about THP, read once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SystemContext {
    /// Every `thp_*` line of /proc/vmstat, in file order: (name, value since boot).
    pub vmstat_thp: Vec<(String, u64)>,
    /// Every numeric file of `transparent_hugepage/khugepaged/`: (name, value).
    pub khugepaged: Vec<(String, u64)>,
}

/// The `thp_*` lines of a /proc/vmstat text.
pub fn parse_vmstat_thp(text: &str) -> Vec<(String, u64)> {
    text.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            k.starts_with("thp_")
                .then(|| Some((k.to_string(), v.trim().parse().ok()?)))?
        })
        .collect()
}

/// khugepaged's files that count since boot (the rest are settings).
pub const KHUGEPAGED_COUNTERS: [&str; 2] = ["full_scans", "pages_collapsed"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vmstat_thp_lines_only() {
        let v = parse_vmstat_thp("nr_free_pages 5\nthp_collapse_alloc 7\nthp_split_pmd 0\nbad\n");
        assert_eq!(
            v,
            [
                ("thp_collapse_alloc".to_string(), 7),
                ("thp_split_pmd".to_string(), 0)
            ]
        );
    }
}
