//! What a result means for a person: one table that classifies every `scan_result` name of
//! every kernel we know (6.1, 6.6-6.16, 6.18, the newer mm tree) into a small set of
//! outcomes, with a one-line meaning and, where there is one, what to change.
//!
//! The classification is by name (the numbers drift between kernels; the names are read from
//! the running kernel): a name this table does not know, and `unknown(N)`, is an
//! [`Outcome::Error`] with a meaning that says so. Pure data: the knob values a hint quotes
//! (`max_ptes_none` ...) are read by the caller and passed in as [`Knobs`].

use collapse_trace_common::Origin;
use serde::{Deserialize, Serialize};

/// What happened to a range, in words a person understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The range is huge now because of this attempt.
    Collapsed,
    /// The range was huge already: nothing to do.
    AlreadyHuge,
    /// Nothing there to collapse (no page table, no pages, beyond the file's end).
    NothingToCollapse,
    /// A race or a passing state (a fault, a lock, the LRU, no free huge page): a retry may
    /// work.
    Transient,
    /// Refused by a setting, a limit or a userfaultfd: something must change first.
    Refused,
    /// The kernel could not collapse it for another reason (or the result is unknown).
    Error,
}

impl Outcome {
    /// Every outcome, in display order.
    pub const ALL: [Outcome; 6] = [
        Outcome::Collapsed,
        Outcome::AlreadyHuge,
        Outcome::NothingToCollapse,
        Outcome::Transient,
        Outcome::Refused,
        Outcome::Error,
    ];

    /// The snake_case name (JSON, Prometheus labels).
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Collapsed => "collapsed",
            Outcome::AlreadyHuge => "already_huge",
            Outcome::NothingToCollapse => "nothing_to_collapse",
            Outcome::Transient => "transient",
            Outcome::Refused => "refused",
            Outcome::Error => "error",
        }
    }

    /// Whether the attempt tried to collapse something: success ratios count these only
    /// (already-huge and empty ranges are neither successes nor failures).
    pub fn is_attempt(self) -> bool {
        !matches!(self, Outcome::AlreadyHuge | Outcome::NothingToCollapse)
    }

    /// Whether the range ended up huge (collapsed now, or already).
    pub fn is_huge(self) -> bool {
        matches!(self, Outcome::Collapsed | Outcome::AlreadyHuge)
    }
}

/// The khugepaged knobs a hint quotes, read at run time by the caller
/// (`/sys/kernel/mm/transparent_hugepage/khugepaged/`); `None` when unknown (a recording
/// from another machine, or no sysfs).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Knobs {
    /// `max_ptes_none`.
    pub max_ptes_none: Option<u32>,
    /// `max_ptes_swap`.
    pub max_ptes_swap: Option<u32>,
    /// `max_ptes_shared`.
    pub max_ptes_shared: Option<u32>,
}

/// The largest value of the `max_ptes_*` knobs: a PMD range's PTEs (512 on x86-64 with
/// 4 KiB pages) less one.
pub const KNOB_MAX: u32 = 511;

/// One row of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Description {
    /// The outcome class.
    pub outcome: Outcome,
    /// One line: what the result means.
    pub meaning: &'static str,
}

/// Every result name of every kernel we know: (name, outcome, meaning). Names that changed
/// are listed under each spelling (6.1's `no_writable_page` is later kernels' `page_ro`
/// spelling; the newer mm tree merges `pmd_null` into `pmd_none` and adds `page_lazyfree`
/// and `page_dirty_or_writeback`).
pub const TABLE: &[(&str, Outcome, &str)] = &[
    (
        "succeeded",
        Outcome::Collapsed,
        "collapsed into a huge page (khugepaged's word for success)",
    ),
    (
        "pte_mapped_hugepage",
        Outcome::Collapsed,
        "the range is one huge page now (MADV_COLLAPSE's success; from khugepaged: PTE-mapped, PMD-mapped next)",
    ),
    (
        "failed",
        Outcome::Error,
        "generic failure (the kernel gave no reason)",
    ),
    (
        "pmd_null",
        Outcome::NothingToCollapse,
        "no page table for the range yet: nothing mapped there",
    ),
    (
        "pmd_none",
        Outcome::NothingToCollapse,
        "no page table for the range yet: nothing mapped there",
    ),
    (
        "page_pmd_mapped",
        Outcome::AlreadyHuge,
        "the range is already mapped by a huge page (PMD)",
    ),
    (
        "pmd_mapped",
        Outcome::AlreadyHuge,
        "the range is already mapped by a huge page (PMD)",
    ),
    (
        "exceed_none_pte",
        Outcome::Refused,
        "too many empty pages (holes) in the range; on shmem with a userfaultfd in MISSING mode any hole refuses (EBUSY)",
    ),
    (
        "exceed_swap_pte",
        Outcome::Refused,
        "too many pages of the range are swapped out",
    ),
    (
        "exceed_shared_pte",
        Outcome::Refused,
        "too many pages of the range are shared with another process",
    ),
    (
        "pte_non_present",
        Outcome::Transient,
        "a page of the range is not present (migration or swap entry)",
    ),
    (
        "pte_uffd_wp",
        Outcome::Refused,
        "a page of the range is write-protected by a userfaultfd",
    ),
    (
        "no_writable_page",
        Outcome::Refused,
        "no page of the range is writable (khugepaged collapses written memory only)",
    ),
    (
        "page_ro",
        Outcome::Refused,
        "no page of the range is writable (khugepaged collapses written memory only)",
    ),
    (
        "lack_referenced_page",
        Outcome::Refused,
        "too few recently used pages: khugepaged leaves cold ranges alone",
    ),
    (
        "page_null",
        Outcome::Error,
        "a PTE maps no normal page (zero page or special mapping)",
    ),
    (
        "scan_aborted",
        Outcome::Transient,
        "the scan stopped early (lock contention, khugepaged asked to stop, or a signal)",
    ),
    (
        "not_suitable_page_count",
        Outcome::Transient,
        "a page has unexpected references (pinned or under I/O) (EAGAIN)",
    ),
    (
        "page_count",
        Outcome::Transient,
        "a page has unexpected references (pinned or under I/O) (EAGAIN)",
    ),
    (
        "page_not_in_lru",
        Outcome::Transient,
        "a page was not on the LRU yet (just faulted in) (EAGAIN)",
    ),
    (
        "page_lru",
        Outcome::Transient,
        "a page was not on the LRU yet (just faulted in) (EAGAIN)",
    ),
    (
        "page_locked",
        Outcome::Transient,
        "a page was locked by someone else (EAGAIN)",
    ),
    (
        "page_not_anon",
        Outcome::Error,
        "a page in an anonymous range is not anonymous",
    ),
    (
        "page_compound",
        Outcome::Error,
        "a page of the range is already part of a large folio (mTHP)",
    ),
    (
        "no_process_for_page",
        Outcome::NothingToCollapse,
        "the memory's process is exiting or gone",
    ),
    (
        "vma_null",
        Outcome::NothingToCollapse,
        "no mapping at the address any more (unmapped meanwhile)",
    ),
    (
        "vma_check_failed",
        Outcome::Refused,
        "the mapping may not hold a huge page (THP settings, prctl, mapping type or size)",
    ),
    (
        "not_suitable_address_range",
        Outcome::Refused,
        "the 2 MiB-aligned range does not fit inside the mapping",
    ),
    (
        "could_not_delete_page_from_lru",
        Outcome::Transient,
        "a page could not be isolated from the LRU (EAGAIN)",
    ),
    (
        "alloc_huge_page_failed",
        Outcome::Transient,
        "no free 2 MiB page could be allocated (ENOMEM)",
    ),
    (
        "ccgroup_charge_failed",
        Outcome::Refused,
        "the memory cgroup would go over its limit (EBUSY)",
    ),
    (
        "truncated",
        Outcome::NothingToCollapse,
        "the file range is beyond its end or not populated (EINVAL)",
    ),
    (
        "page_has_private",
        Outcome::Transient,
        "a page cache page has buffers attached (being written back)",
    ),
    (
        "store_failed",
        Outcome::Error,
        "storing the huge page in the page cache failed",
    ),
    (
        "copy_poisoned_page",
        Outcome::Error,
        "a source page is hardware-poisoned: copying it failed",
    ),
    (
        "page_filled",
        Outcome::Transient,
        "a hole was faulted in while the collapse ran: rolled back (EAGAIN)",
    ),
    (
        "page_lazyfree",
        Outcome::NothingToCollapse,
        "a page was freed lazily by the program (MADV_FREE)",
    ),
    (
        "page_dirty_or_writeback",
        Outcome::Transient,
        "a file page is dirty or under writeback (EAGAIN)",
    ),
];

/// The meaning of a name this table does not know.
pub const UNKNOWN_MEANING: &str =
    "a result collapse-trace does not know (a newer kernel?): see mm/khugepaged.c";

/// The outcome and meaning of a result name (`unknown(N)` and names not in [`TABLE`]:
/// [`Outcome::Error`]).
pub fn describe(name: &str) -> Description {
    match TABLE.iter().find(|(n, _, _)| *n == name) {
        Some((_, outcome, meaning)) => Description {
            outcome: *outcome,
            meaning,
        },
        None => Description {
            outcome: Outcome::Error,
            meaning: UNKNOWN_MEANING,
        },
    }
}

/// The outcome of a result name, refined by who asked: `pte_mapped_hugepage` is
/// MADV_COLLAPSE's success, but from khugepaged it means a huge page is there already
/// (PTE-mapped, mapped by PMD later).
pub fn classify(name: &str, origin: Option<Origin>) -> Outcome {
    if name == "pte_mapped_hugepage" && origin == Some(Origin::Khugepaged) {
        return Outcome::AlreadyHuge;
    }
    describe(name).outcome
}

/// The outcome of a MADV_COLLAPSE call that produced no collapse event, by its errno name.
pub fn classify_errno(errno: &str) -> Outcome {
    match errno {
        "ok" => Outcome::Collapsed,
        "EAGAIN" | "ENOMEM" => Outcome::Transient,
        "EBUSY" | "EINVAL" | "EPERM" => Outcome::Refused,
        _ => Outcome::Error,
    }
}

/// What to change for a result, where there is something to change; `None` otherwise.
/// `uffd_missing`: a userfaultfd is known to be armed in MISSING mode on the range (a
/// caller that saw EBUSY with `exceed_none_pte` on shmem, or `explain` reading VmFlags `um`).
pub fn advice(
    name: &str,
    origin: Option<Origin>,
    uffd_missing: bool,
    knobs: &Knobs,
) -> Option<String> {
    let of = |v: Option<u32>| v.map_or("unknown".to_string(), |n| n.to_string());
    let knob = "/sys/kernel/mm/transparent_hugepage/khugepaged";
    Some(match name {
        "exceed_none_pte" if uffd_missing || origin == Some(Origin::Madvise) => {
            "a userfaultfd armed in MISSING mode covers holes in the range: the uffd owner must \
             populate the range first (UFFDIO_COPY / UFFDIO_ZEROPAGE, or touch every page); \
             without a userfaultfd, touch the holes"
                .to_string()
        }
        "exceed_none_pte" => format!(
            "max_ptes_none is {} of {KNOB_MAX}: raise {knob}/max_ptes_none, or populate the \
             range (MADV_COLLAPSE ignores the knob)",
            of(knobs.max_ptes_none)
        ),
        "exceed_swap_pte" => format!(
            "max_ptes_swap is {} of {KNOB_MAX}: raise {knob}/max_ptes_swap, or touch the \
             range to swap it in (MADV_COLLAPSE ignores the knob)",
            of(knobs.max_ptes_swap)
        ),
        "exceed_shared_pte" => format!(
            "max_ptes_shared is {} of {KNOB_MAX}: raise {knob}/max_ptes_shared (MADV_COLLAPSE \
             ignores the knob)",
            of(knobs.max_ptes_shared)
        ),
        "pte_uffd_wp" => "the userfaultfd owner must remove write protection \
                          (UFFDIO_WRITEPROTECT) before the range can collapse"
            .to_string(),
        "no_writable_page" | "page_ro" | "lack_referenced_page" => {
            "khugepaged skips such ranges; MADV_COLLAPSE does not require it".to_string()
        }
        "vma_check_failed" => "allow THP for the mapping: transparent_hugepage/enabled (or \
                               shmem_enabled, or the tmpfs huge= option), MADV_HUGEPAGE, and \
                               no PR_SET_THP_DISABLE; `collapse-trace explain --pid P` says which"
            .to_string(),
        "not_suitable_address_range" => {
            "map the memory 2 MiB-aligned and at least 2 MiB long".to_string()
        }
        "ccgroup_charge_failed" => {
            "raise the cgroup's memory.max (or free memory in it)".to_string()
        }
        "alloc_huge_page_failed" => "memory is fragmented: retry later, let compaction run \
                                     (transparent_hugepage/defrag, khugepaged/defrag), or free memory"
            .to_string(),
        "page_filled" | "page_locked" | "page_not_in_lru" | "page_lru"
        | "could_not_delete_page_from_lru" | "not_suitable_page_count" | "page_count"
        | "scan_aborted" | "pte_non_present" | "page_dirty_or_writeback" | "page_has_private" => {
            "a race: a retry is expected to work".to_string()
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::results::{ResultTable, is_success};

    /// Each kernel's `enum scan_result` names, as its tracepoints print them.
    const KERNEL_6_1: &[&str] = &[
        "failed",
        "succeeded",
        "pmd_null",
        "page_pmd_mapped",
        "exceed_none_pte",
        "exceed_swap_pte",
        "exceed_shared_pte",
        "pte_non_present",
        "pte_uffd_wp",
        "no_writable_page",
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
        "copy_poisoned_page",
    ];
    const KERNEL_6_12: &[&str] = &[
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
        "page_ro",
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
    const NEWER_MM: &[&str] = &[
        "page_lazyfree",
        "page_dirty_or_writeback",
        "pmd_none",
        "page_filled",
    ];

    #[test]
    fn every_name_of_every_kernel_has_an_outcome_and_a_meaning() {
        let builtin = ResultTable::builtin();
        let names = builtin.names.values().map(String::as_str);
        for name in names
            .chain(KERNEL_6_1.iter().copied())
            .chain(KERNEL_6_12.iter().copied())
            .chain(NEWER_MM.iter().copied())
        {
            let d = describe(name);
            assert_ne!(d.meaning, UNKNOWN_MEANING, "{name} is not in the table");
            assert!(!d.meaning.is_empty(), "{name}");
            // Success in the outcome table agrees with is_success.
            assert_eq!(d.outcome == Outcome::Collapsed, is_success(name), "{name}");
        }
    }

    #[test]
    fn the_issue_cases_are_classified() {
        assert_eq!(describe("pmd_none").outcome, Outcome::NothingToCollapse);
        assert_eq!(describe("page_pmd_mapped").outcome, Outcome::AlreadyHuge);
        assert_eq!(describe("page_filled").outcome, Outcome::Transient);
        assert_eq!(describe("page_locked").outcome, Outcome::Transient);
        assert_eq!(describe("exceed_none_pte").outcome, Outcome::Refused);
        assert_eq!(describe("ccgroup_charge_failed").outcome, Outcome::Refused);
        assert_eq!(describe("unknown(40)").outcome, Outcome::Error);
        assert_eq!(describe("unknown(40)").meaning, UNKNOWN_MEANING);
        assert_eq!(
            classify("pte_mapped_hugepage", Some(Origin::Madvise)),
            Outcome::Collapsed
        );
        assert_eq!(
            classify("pte_mapped_hugepage", Some(Origin::Khugepaged)),
            Outcome::AlreadyHuge
        );
        assert!(!Outcome::AlreadyHuge.is_attempt() && Outcome::Transient.is_attempt());
    }

    #[test]
    fn advice_quotes_the_knob_and_names_the_userfaultfd() {
        let k = Knobs {
            max_ptes_none: Some(64),
            ..Knobs::default()
        };
        let a = advice("exceed_none_pte", Some(Origin::Khugepaged), false, &k).unwrap();
        assert!(a.contains("max_ptes_none is 64 of 511"), "{a}");
        let a = advice("exceed_none_pte", Some(Origin::Madvise), true, &k).unwrap();
        assert!(a.contains("uffd owner must populate"), "{a}");
        assert!(
            advice("page_filled", None, false, &k)
                .unwrap()
                .contains("retry")
        );
        assert_eq!(advice("succeeded", None, false, &k), None);
        let a = advice("exceed_swap_pte", None, false, &Knobs::default()).unwrap();
        assert!(a.contains("max_ptes_swap is unknown"), "{a}");
    }
}
