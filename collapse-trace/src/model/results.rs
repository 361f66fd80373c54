//! The one table of `scan_result` names in collapse-trace.
//!
//! `enum scan_result` (mm/khugepaged.c) is renumbered from kernel to kernel, so names are read
//! from the running kernel: first the tracepoints' own `__print_symbolic` tables, then BTF's
//! `enum scan_result`. The built-in table (kernel 6.18) is only a fallback, and says so.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Where the names came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResultSource {
    /// The tracepoint's `print fmt` in tracefs.
    Tracefs,
    /// `enum scan_result` in /sys/kernel/btf/vmlinux.
    Btf,
    /// collapse-trace's built-in copy (kernel 6.18): may be wrong on this kernel.
    Builtin,
    /// A text capture (ftrace, trace-cmd, perf script): the names are the ones the kernel
    /// printed into it; the numbers are this machine's for those names (or new ones).
    Capture,
}

impl ResultSource {
    /// Words for a person.
    pub fn describe(self) -> &'static str {
        match self {
            ResultSource::Tracefs => "read from the kernel's tracepoint format",
            ResultSource::Btf => "read from the kernel's BTF (enum scan_result)",
            ResultSource::Builtin => {
                "BUILT-IN FALLBACK (kernel 6.18 numbering): the kernel gave no table, names may be wrong"
            }
            ResultSource::Capture => {
                "as printed in the capture (numbers are this machine's, or assigned for names it lacks)"
            }
        }
    }
}

/// Number-to-name table for `scan_result`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResultTable {
    /// Where it came from.
    pub source: ResultSource,
    /// The names by number.
    pub names: BTreeMap<i64, String>,
}

/// Kernel 6.18's `enum scan_result`, as its tracepoints print it.
const BUILTIN: [&str; 31] = [
    "failed",
    "succeeded",
    "pmd_null",
    "pmd_none",
    "page_pmd_mapped",
    "exceed_none_pte",
    "exceed_swap_pte",
    "exceed_shared_pte",
    "pte_non_present",
    "pte_uffd_wp",
    "pte_mapped_hugepage",
    "lack_referenced_page",
    "page_null",
    "scan_aborted",
    "not_suitable_page_count",
    "page_not_in_lru",
    "page_locked",
    "page_not_anon",
    "page_compound",
    "no_process_for_page",
    "vma_null",
    "vma_check_failed",
    "not_suitable_address_range",
    "could_not_delete_page_from_lru",
    "alloc_huge_page_failed",
    "ccgroup_charge_failed",
    "truncated",
    "page_has_private",
    "store_failed",
    "copy_poisoned_page",
    "page_filled",
];

impl ResultTable {
    /// A table read from the kernel.
    pub fn new(source: ResultSource, names: BTreeMap<i64, String>) -> ResultTable {
        ResultTable { source, names }
    }

    /// The built-in fallback.
    pub fn builtin() -> ResultTable {
        ResultTable {
            source: ResultSource::Builtin,
            names: BUILTIN
                .iter()
                .enumerate()
                .map(|(i, n)| (i as i64, n.to_string()))
                .collect(),
        }
    }

    /// The name of a result number; `unknown(N)` for a number this kernel did not name.
    pub fn name(&self, result: i64) -> String {
        match self.names.get(&result) {
            Some(n) => n.clone(),
            None => format!("unknown({result})"),
        }
    }

    /// The name of result `r` of kind `tp`: a `scan_result` name, or for MADV_COLLAPSE calls
    /// the errno's (`ok` for success).
    pub fn name_of(&self, tp: collapse_trace_common::RecordKind, r: i64) -> String {
        if tp == collapse_trace_common::RecordKind::MadviseCall {
            errno_name(r)
        } else {
            self.name(r)
        }
    }

    /// The number for a name printed in a text capture: this table's, or else a new number
    /// (the first free one; below 63, so kernel-counter slots can hold it) added under that
    /// name, so the name survives. `None` only when every slot is taken.
    pub fn number_or_add(&mut self, name: &str) -> Option<i64> {
        if let Some(n) = self.number(name) {
            return Some(n);
        }
        let free = (0..collapse_trace_common::RESULT_OVERFLOW_SLOT as i64)
            .find(|n| !self.names.contains_key(n))?;
        self.names.insert(free, name.to_string());
        Some(free)
    }

    /// The number of a result name, if the table has it.
    pub fn number(&self, name: &str) -> Option<i64> {
        self.names
            .iter()
            .find_map(|(n, s)| (s == name).then_some(*n))
    }
}

/// What a result means for a user (kept short: shown in tables): an errno of a MADV_COLLAPSE
/// call, or a `scan_result` name from the one table in [`super::outcome`].
pub fn meaning(name: &str) -> &'static str {
    match name {
        "ok" => "MADV_COLLAPSE returned 0: the range is huge",
        "EAGAIN" => "transient (a fault or lock raced the collapse): retrying may succeed",
        "EBUSY" => "refused: holes under a userfaultfd, or a cgroup charge failed",
        "ENOMEM" => "no huge page could be allocated",
        "EINVAL" => "the range cannot be collapsed (not THP-eligible, empty, misaligned)",
        _ => super::outcome::describe(name).meaning,
    }
}

/// Results that mean the range ended up huge: khugepaged says `succeeded`, a MADV_COLLAPSE
/// caller `pte_mapped_hugepage`. Views that speak of success count both.
pub fn is_success(name: &str) -> bool {
    matches!(name, "succeeded" | "pte_mapped_hugepage" | "ok")
}

/// The symbolic name of an errno number, for the errnos MADV_COLLAPSE (and provoke's set-up)
/// can return; `ok` for 0, `E<n>` for the rest.
pub fn errno_name(n: i64) -> String {
    let Ok(n) = i32::try_from(n) else {
        return format!("E{n}");
    };
    let name = match n {
        0 => "ok",
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::EINTR => "EINTR",
        libc::EIO => "EIO",
        libc::EBADF => "EBADF",
        libc::EAGAIN => "EAGAIN",
        libc::ENOMEM => "ENOMEM",
        libc::EACCES => "EACCES",
        libc::EFAULT => "EFAULT",
        libc::EBUSY => "EBUSY",
        libc::EEXIST => "EEXIST",
        libc::ENODEV => "ENODEV",
        libc::EINVAL => "EINVAL",
        libc::ENOSPC => "ENOSPC",
        libc::ENOSYS => "ENOSYS",
        libc::ESRCH => "ESRCH",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        libc::EHWPOISON => "EHWPOISON",
        n => return format!("E{n}"),
    };
    name.to_string()
}

/// The errno MADV_COLLAPSE returns for a final result (mm/khugepaged.c
/// `madvise_collapse_errno`), `None` for success. Used to join a caller's errno with the
/// results behind it.
pub fn madvise_errno(name: &str) -> Option<&'static str> {
    match name {
        n if is_success(n) => None,
        "alloc_huge_page_failed" => Some("ENOMEM"),
        "ccgroup_charge_failed" | "exceed_none_pte" => Some("EBUSY"),
        "page_count"
        | "not_suitable_page_count"
        | "page_locked"
        | "page_lru"
        | "page_not_in_lru"
        | "could_not_delete_page_from_lru"
        | "page_filled" => Some("EAGAIN"),
        _ => Some("EINVAL"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_numbers_are_named_as_such() {
        let t = ResultTable::builtin();
        assert_eq!(t.name(30), "page_filled");
        assert_eq!(t.name(31), "unknown(31)");
        assert_eq!(t.name(-1), "unknown(-1)");
        assert_eq!(t.number("exceed_none_pte"), Some(5));
        assert_eq!(t.source, ResultSource::Builtin);
    }

    #[test]
    fn call_results_are_errnos() {
        let t = ResultTable::builtin();
        use collapse_trace_common::RecordKind::*;
        assert_eq!(t.name_of(MadviseCall, 11), "EAGAIN");
        assert_eq!(t.name_of(MadviseCall, 0), "ok");
        assert_eq!(t.name_of(MadviseCall, 99), "E99");
        assert_eq!(t.name_of(CollapseFile, 11), "lack_referenced_page");
    }

    #[test]
    fn errno_classes() {
        assert_eq!(madvise_errno("page_filled"), Some("EAGAIN"));
        assert_eq!(madvise_errno("exceed_none_pte"), Some("EBUSY"));
        assert_eq!(madvise_errno("alloc_huge_page_failed"), Some("ENOMEM"));
        assert_eq!(madvise_errno("truncated"), Some("EINVAL"));
        assert_eq!(madvise_errno("pte_mapped_hugepage"), None);
    }

    #[test]
    fn success_counts_both_spellings() {
        assert!(is_success("succeeded") && is_success("pte_mapped_hugepage"));
        assert!(!is_success("failed") && !is_success("page_filled"));
    }
}
