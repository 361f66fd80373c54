//! NDJSON for log shippers: `stat --json --follow` writes one compact
//! [`Snapshot`](super::json::Snapshot) per line (schema `collapse-trace.stat/2`), and
//! `--events` one [`EventLine`] per event (schema [`EVENT_SCHEMA`]).

use std::io::{self, Write};

use collapse_trace_common::RecordKind;
use serde::{Deserialize, Serialize};

use crate::model::{
    event::{Event, escape, origin_name},
    results::{ResultTable, is_success},
};

/// Schema name and major version of an event line.
pub const EVENT_SCHEMA: &str = "collapse-trace.event/1";

/// One event, as one JSON line. Fields a tracepoint does not have are absent.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EventLine {
    /// Always [`EVENT_SCHEMA`].
    pub schema: String,
    /// CLOCK_MONOTONIC nanoseconds; to the tick (4 ms at HZ=250) unless the collector ran
    /// with `--precise-time`.
    pub ts_ns: u64,
    /// e.g. `mm_khugepaged_collapse_file`.
    pub tracepoint: String,
    /// Result name from the kernel, or `unknown(N)`.
    pub result: String,
    /// The kernel's number for it.
    pub number: i64,
    /// Whether the range is huge now (`succeeded` or `pte_mapped_hugepage`).
    pub success: bool,
    /// Thread id.
    pub pid: u32,
    /// Process id.
    pub tgid: u32,
    /// Task comm, escaped (`\\`, `\xNN`).
    pub comm: String,
    /// `khugepaged`, `madvise` or `unknown`.
    pub origin: String,
    /// cgroup v2 id.
    pub cgroup_id: u64,
    /// Process id of the owner of the memory (`mm->owner`): the workload behind
    /// khugepaged's work; 0 when the kernel gave none.
    #[serde(default)]
    pub owner_tgid: u32,
    /// The owner's comm, escaped.
    #[serde(default)]
    pub owner_comm: String,
    /// The owner's cgroup v2 id, 0 when unknown.
    #[serde(default)]
    pub owner_cgroup_id: u64,
    /// File name, escaped: the dentry's own name when `real_name`, else the tracepoint
    /// record's copy (stale for names over ~40 bytes).
    pub file: String,
    /// The directories between the file and its mount's root, outermost first, escaped
    /// (file events read by the BTF-typed programs).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub dir: Option<String>,
    /// `dir` is only the part nearest the file (the walk stopped early or a name was cut).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub dir_cut: Option<bool>,
    /// `file` is the dentry's own name (the BTF-typed path).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub real_name: Option<bool>,
    /// The file's inode number (BTF-typed path).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub inode: Option<u64>,
    /// The file's device as `major:minor`.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub dev: Option<String>,
    /// pfn (scan_file) or hpfn (collapse_file).
    pub pfn: u64,
    /// Present pages (scan_file).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub present: Option<i32>,
    /// Swap entries (scan_file).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub swap: Option<i32>,
    /// Whether the file is shmem (collapse_file).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub is_shmem: Option<bool>,
    /// Pages handled (collapse_file).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub nr: Option<i32>,
    /// Page-cache index (collapse_file).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub index: Option<u64>,
    /// Virtual address (collapse_file).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub addr: Option<u64>,
    /// Referenced pages (scan_pmd).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub referenced: Option<i32>,
    /// Empty or zero-page PTEs (scan_pmd).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub none_or_zero: Option<i32>,
    /// Swapped-out PTEs (scan_pmd).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub unmapped: Option<i32>,
    /// Pages isolated (collapse_huge_page).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub isolated: Option<i32>,
    /// Entry time of the MADV_COLLAPSE call the event happened in, or of this call
    /// (`madvise_collapse` records), made unique per thread: joins a call with its events
    /// on the same `pid`.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub call_ns: Option<u64>,
    /// `start` of a MADV_COLLAPSE call (0 for process_madvise).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub start: Option<u64>,
    /// `len` of a MADV_COLLAPSE call (0 for process_madvise).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub len: Option<u64>,
    /// The call was process_madvise(2).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub process_madvise: Option<bool>,
}

/// A kernel `dev_t` (`MKDEV`: 12-bit major, 20-bit minor) as `major:minor`.
pub fn dev_name(dev: u32) -> String {
    format!("{}:{}", dev >> 20, dev & 0xf_ffff)
}

impl EventLine {
    /// The line for one event, with names from `table`.
    pub fn new(e: &Event, table: &ResultTable) -> EventLine {
        let result = table.name_of(e.tracepoint, e.result);
        let scan = e.tracepoint == RecordKind::ScanFile;
        let collapse = e.tracepoint == RecordKind::CollapseFile;
        let pmd = e.tracepoint == RecordKind::ScanPmd;
        let anon = e.tracepoint == RecordKind::CollapseHugePage;
        let call = e.tracepoint == RecordKind::MadviseCall;
        EventLine {
            schema: EVENT_SCHEMA.to_string(),
            ts_ns: e.ts_ns,
            tracepoint: e.tracepoint.name().to_string(),
            success: is_success(&result),
            result,
            number: e.result,
            pid: e.pid,
            tgid: e.tgid,
            comm: escape(&e.comm),
            origin: origin_name(e.origin).to_string(),
            cgroup_id: e.cgroup_id,
            owner_tgid: e.owner_tgid,
            owner_comm: escape(&e.owner_comm),
            owner_cgroup_id: e.owner_cgroup_id,
            file: escape(&e.filename),
            dir: (e.real_name && !e.dir.is_empty()).then(|| escape(&e.dir)),
            dir_cut: e.real_name.then_some(e.dir_cut),
            real_name: (scan || collapse).then_some(e.real_name),
            inode: e.real_name.then_some(e.inode),
            dev: e.real_name.then(|| dev_name(e.dev)),
            pfn: e.pfn,
            present: scan.then_some(e.present),
            swap: scan.then_some(e.swap),
            is_shmem: collapse.then_some(e.is_shmem),
            nr: collapse.then_some(e.nr),
            index: collapse.then_some(e.index),
            addr: collapse.then_some(e.addr),
            referenced: pmd.then_some(e.referenced),
            none_or_zero: pmd.then_some(e.none_or_zero),
            unmapped: pmd.then_some(e.unmapped),
            isolated: anon.then_some(e.isolated),
            call_ns: (e.call_ns != 0).then_some(e.call_ns),
            start: call.then_some(e.addr),
            len: call.then_some(e.index),
            process_madvise: call.then_some(e.process_madvise),
        }
    }
}

/// Writes `value` as one compact JSON line.
pub fn write_line<W: Write, T: Serialize>(out: &mut W, value: &T) -> io::Result<()> {
    serde_json::to_writer(&mut *out, value)?;
    out.write_all(b"\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::event::tests::record;

    #[test]
    fn an_event_line_is_one_escaped_line() {
        let e = Event::decode(&record(
            RecordKind::CollapseFile,
            9,
            30,
            b"a\"b\\\n",
            b"f\nile\xff",
        ))
        .unwrap();
        let line = EventLine::new(&e, &ResultTable::builtin());
        let mut out = Vec::new();
        write_line(&mut out, &line).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text.matches('\n').count(), 1);
        assert!(text.ends_with('\n'));
        let back: EventLine = serde_json::from_str(&text).unwrap();
        assert_eq!(back, line);
        assert_eq!(back.comm, "a\"b\\\\\\x0a");
        assert_eq!(back.file, "f\\x0aile\\xff");
        assert_eq!(back.result, "page_filled");
        assert_eq!(back.is_shmem, Some(true));
        assert_eq!(back.present, None);
        assert!(!text.contains("\"present\""));
    }
}
