//! The versioned JSON snapshot: `stat --json`, and later every JSON view. One schema, one
//! serializer. The schema is documented in docs/json-schema.md; bump [`SCHEMA`] on any change
//! that is not a pure addition.

use serde::{Deserialize, Serialize};

use collapse_trace_common::RecordKind;

use crate::{
    model::{
        aggregate::{Aggregate, ResultCounts, dominant, failures},
        event::{escape, origin_name},
        outcome::{Outcome, classify_errno, describe},
        pods::Qos,
        results::{ResultSource, is_success},
    },
    model::{filters::Filters, kernel_info::KernelInfo},
};

/// Schema name and major version.
pub const SCHEMA: &str = "collapse-trace.stat/2";

/// One document.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Snapshot {
    /// Always [`SCHEMA`].
    pub schema: String,
    /// collapse-trace's version.
    pub tool_version: String,
    /// `uname -r`.
    pub kernel_release: String,
    /// Where the result names came from.
    pub result_names: ResultSource,
    /// Seconds collected.
    pub duration_s: f64,
    /// Filters applied in the kernel.
    pub filters: Filters,
    /// Whether per-event records were collected (false: counting only; processes and files
    /// are then empty).
    pub events: bool,
    /// Sum over tracepoints.
    pub totals: Totals,
    /// Per tracepoint, with counts from the kernel counters (exact even when events drop).
    pub tracepoints: Vec<TracepointRow>,
    /// Per process (from delivered events), most events first.
    pub processes: Vec<ProcessRow>,
    /// Per owner of the memory (`mm->owner`: the workload behind khugepaged's work, the
    /// caller itself for MADV_COLLAPSE), most events first.
    #[serde(default)]
    pub owners: Vec<OwnerRow>,
    /// Per cgroup v2 of the owner (of the task when the kernel gave no owner), most events
    /// first.
    #[serde(default)]
    pub cgroups: Vec<CgroupRow>,
    /// Per file (from delivered events), most failures first.
    pub files: Vec<FileRow>,
    /// MADV_COLLAPSE callers: what their calls returned and the results behind each errno
    /// (from delivered call records joined with the events inside each call).
    #[serde(default)]
    pub callers: Vec<CallerRow>,
    /// Address ranges by failures (at most [`RANGE_ROWS`]): MADV_COLLAPSE call ranges with
    /// the results inside each call, and khugepaged `collapse_file` PMD ranges.
    #[serde(default)]
    pub ranges: Vec<RangeRow>,
    /// Events from processes / files past the tracking cap, counted but not itemised.
    pub untracked: Untracked,
    /// The events joined into attempts (one per range tried) with outcomes and latency.
    #[serde(default)]
    pub attempts: super::attempts::AttemptsSection,
    /// The event rings of a live run (`None` for a capture, or counting only).
    #[serde(default)]
    pub rings: Option<RingsRow>,
}

/// How big the event rings of a run were: what its drops are measured against.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct RingsRow {
    /// Possible CPUs, one ring each.
    pub cpus: u32,
    /// Records one CPU's ring holds.
    pub records_per_cpu: u32,
    /// Bytes of one CPU's ring.
    pub bytes_per_cpu: u64,
    /// Bytes of all rings together (mapped whole: part of the reader's resident memory).
    pub bytes: u64,
}

/// Schema of `report --json`.
pub const REPORT_SCHEMA: &str = "collapse-trace.report/1";

/// `report --json`: the capture's [`Snapshot`] (same schema as `stat --json`) wrapped with
/// what only a capture has.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Report {
    /// Always [`REPORT_SCHEMA`].
    pub schema: String,
    /// The capture read: format, cut short or not, skipped lines.
    pub capture: crate::model::capture::CaptureInfo,
    /// Everything `stat --json` would have said about the same events.
    pub snapshot: Snapshot,
    /// Per second from the first event: attempts and failures.
    pub timeline: Vec<TimelineRow>,
    /// Plain-words findings.
    pub findings: Vec<Finding>,
}

/// One second of a capture.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TimelineRow {
    /// Seconds since the first second with an event.
    pub t_s: u64,
    /// Collapse attempts (scan events).
    pub attempts: u64,
    /// Of which failed.
    pub failures: u64,
    /// MADV_COLLAPSE calls that returned an error.
    pub failed_calls: u64,
}

/// A finding in plain words.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Finding {
    /// `page_filled`, `uffd_missing_pages`, ...
    pub kind: String,
    /// How many events or calls it is about.
    pub count: u64,
    /// What happened and what to do.
    pub text: String,
}

/// Rows of [`Snapshot::ranges`].
pub const RANGE_ROWS: usize = 100;

/// One address range of one process.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RangeRow {
    /// Process id.
    pub tgid: u32,
    /// Start address.
    pub start: u64,
    /// Length in bytes.
    pub len: u64,
    /// Collapse events in the range.
    pub events: u64,
    /// Of which failures.
    pub failures: u64,
    /// The most frequent failure.
    pub top_failure: Option<String>,
    /// MADV_COLLAPSE calls over the range, and how many failed.
    pub calls: u64,
    /// Of which returned an error.
    pub failed_calls: u64,
}

/// Totals.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Totals {
    /// Collapse events counted in the kernel (all tracepoints; MADV_COLLAPSE call records
    /// are counted in `calls`).
    pub events: u64,
    /// Of which `succeeded` or `pte_mapped_hugepage`.
    pub successes: u64,
    /// The rest.
    pub failures: u64,
    /// Records (collapse events and calls) that reached userspace:
    /// `delivered + dropped = events + calls`.
    pub delivered: u64,
    /// Records (collapse events and calls) the event rings could not take.
    pub dropped: u64,
    /// MADV_COLLAPSE calls that returned, counted in the kernel.
    #[serde(default)]
    pub calls: u64,
    /// Of which returned an error.
    #[serde(default)]
    pub failed_calls: u64,
    /// MADV_COLLAPSE calls that could not be tracked (another thread's call in flight held
    /// their slot): not in `calls`, not joined.
    #[serde(default)]
    pub untracked_calls: u64,
}

/// One MADV_COLLAPSE caller.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CallerRow {
    /// Process id.
    pub tgid: u32,
    /// comm, escaped.
    pub comm: String,
    /// Calls delivered.
    pub calls: u64,
    /// By errno, most calls first.
    pub errnos: Vec<ErrnoRow>,
}

/// The calls of one caller that returned one errno.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ErrnoRow {
    /// `ok`, `EAGAIN`, `EBUSY`, ...
    pub errno: String,
    /// The number (0 for ok).
    pub number: i64,
    /// Calls.
    pub calls: u64,
    /// The collapse results those calls produced, most frequent first.
    pub results: Vec<KeyedCount>,
}

/// One tracepoint.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TracepointRow {
    /// e.g. `mm_khugepaged_collapse_file`.
    pub name: String,
    /// Whether it was attached (false: the kernel lacks it).
    pub attached: bool,
    /// Events counted in the kernel.
    pub events: u64,
    /// Records delivered.
    pub delivered: u64,
    /// Records dropped.
    pub dropped: u64,
    /// By result, most frequent first.
    pub results: Vec<ResultRow>,
}

/// One result of one tracepoint.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ResultRow {
    /// Name from the kernel, or `unknown(N)`.
    pub result: String,
    /// The kernel's number.
    pub number: i64,
    /// Events.
    pub count: u64,
    /// count / events of the tracepoint.
    pub share: f64,
    /// Whether this result means the range is huge now.
    pub success: bool,
    /// What it means for the range (by name; for MADV_COLLAPSE calls, by errno).
    #[serde(default)]
    pub outcome: Option<Outcome>,
}

/// One result of one tracepoint, for a process.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct KeyedCount {
    /// Tracepoint name.
    pub tracepoint: String,
    /// Result name.
    pub result: String,
    /// The kernel's number.
    pub number: i64,
    /// Events.
    pub count: u64,
}

/// One process.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ProcessRow {
    /// Process id.
    pub tgid: u32,
    /// comm, escaped.
    pub comm: String,
    /// `khugepaged`, `madvise` or `unknown`.
    pub origin: String,
    /// Events delivered.
    pub events: u64,
    /// Of which failures.
    pub failures: u64,
    /// The most frequent failure.
    pub top_failure: Option<String>,
    /// By tracepoint and result.
    pub results: Vec<KeyedCount>,
}

/// The memory of one owner.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct OwnerRow {
    /// Process id of the owner.
    pub tgid: u32,
    /// Its comm, escaped.
    pub comm: String,
    /// Its cgroup v2 path from the cgroup2 root (`(gone)` if removed since; `cgroup:ID` where
    /// no path could be read).
    pub cgroup: String,
    /// Collapse events on its memory (call records left out).
    pub events: u64,
    /// Of which failures.
    pub failures: u64,
    /// By tracepoint and result (MADV_COLLAPSE call records included).
    pub results: Vec<KeyedCount>,
}

/// One cgroup.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CgroupRow {
    /// Path from the cgroup2 root, `(gone)` or `cgroup:ID` (see [`OwnerRow::cgroup`]).
    pub path: String,
    /// The cgroup v2 id (the inode number of its directory).
    pub id: u64,
    /// The systemd unit or container id in the path, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    /// The Kubernetes pod the path names, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<PodRow>,
    /// Collapse events.
    pub events: u64,
    /// Of which failures.
    pub failures: u64,
    /// By tracepoint and result.
    pub results: Vec<KeyedCount>,
}

/// A Kubernetes pod, as its cgroup path and the kubelet's pod log directory tell it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PodRow {
    /// The pod's UID (`metadata.uid`).
    pub uid: String,
    /// Its namespace, where the pod log directory names the UID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Its name, likewise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Its QoS class from the cgroup's place: `Guaranteed`, `Burstable` or `BestEffort`.
    pub qos: Qos,
    /// The container's id, when the cgroup is a container's rather than the pod's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
}

impl PodRow {
    /// The pod cgroup `id` belongs to, if its path names one.
    pub fn of(agg: &Aggregate, id: u64) -> Option<PodRow> {
        let (pod, name) = agg.pod_of(id)?;
        Some(PodRow {
            uid: pod.uid,
            namespace: name.map(|n| n.namespace.clone()),
            name: name.map(|n| n.name.clone()),
            qos: pod.qos,
            container: pod.container,
        })
    }

    /// `namespace/name`, or the UID when the name is unknown.
    pub fn display(&self) -> String {
        match (&self.namespace, &self.name) {
            (Some(ns), Some(n)) => format!("{ns}/{n}"),
            _ => self.uid.clone(),
        }
    }
}

/// The systemd unit or container a cgroup path names: a docker/containerd/podman container
/// id (`docker-<id>.scope`, `cri-containerd-<id>.scope`, `libpod-<id>.scope`, or a 64-hex
/// component), else the innermost `.service` or `.scope` unit.
pub fn cgroup_unit(path: &str) -> Option<String> {
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    for p in parts.iter().rev() {
        let stem = p.strip_suffix(".scope").unwrap_or(p);
        for prefix in ["docker-", "cri-containerd-", "crio-", "libpod-"] {
            if let Some(id) = stem.strip_prefix(prefix)
                && id.len() >= 12
                && id.bytes().all(|b| b.is_ascii_hexdigit())
            {
                return Some(format!("container {}", &id[..12]));
            }
        }
        if p.len() == 64 && p.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Some(format!("container {}", &p[..12]));
        }
    }
    parts
        .iter()
        .rev()
        .find(|p| p.ends_with(".service") || p.ends_with(".scope"))
        .map(|p| p.to_string())
}

/// One file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FileRow {
    /// The file's name, escaped (`\\`, `\xNN`): the dentry's own name where the BTF-typed
    /// programs read it (`real_name`), else the tracepoint record's copy.
    pub name: String,
    /// Its path within its mount (`dir/name`; `.../dir/name` when only the nearest
    /// directories were read), escaped; absent when not known or the same as `name`.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub path: Option<String>,
    /// Its inode number, where read (BTF-typed programs).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub inode: Option<u64>,
    /// Its device as `major:minor`, where read.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub dev: Option<String>,
    /// `name` is the dentry's own name, not the record's copy (stale for long names).
    #[serde(default)]
    pub real_name: bool,
    /// Events delivered.
    pub events: u64,
    /// Of which failures.
    pub failures: u64,
    /// The most frequent failure.
    pub top_failure: Option<String>,
}

/// Events counted but not itemised.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Untracked {
    /// From processes past the cap.
    pub process_events: u64,
    /// For files past the cap.
    pub file_events: u64,
    /// From owners past the cap.
    #[serde(default)]
    pub owner_events: u64,
    /// From cgroups past the cap.
    #[serde(default)]
    pub cgroup_events: u64,
}

fn keyed(results: &ResultCounts, agg: &Aggregate) -> Vec<KeyedCount> {
    let mut v: Vec<KeyedCount> = results
        .iter()
        .map(|((tp, r), n)| KeyedCount {
            tracepoint: tp.name().to_string(),
            result: agg.table.name_of(*tp, *r),
            number: *r,
            count: *n,
        })
        .collect();
    v.sort_by(|a, b| b.count.cmp(&a.count).then(a.number.cmp(&b.number)));
    v
}

impl Snapshot {
    /// Builds the document from the aggregation core.
    pub fn build(
        agg: &Aggregate,
        info: &KernelInfo,
        filters: Filters,
        events: bool,
        duration_s: f64,
    ) -> Snapshot {
        let kernel = agg.kernel();
        let kres = agg.kernel_results();
        let mut totals = Totals::default();
        let mut tracepoints = Vec::new();
        for t in &info.tracepoints {
            let tp = t.tracepoint;
            let total = kernel.total(tp);
            let mut results: Vec<ResultRow> = kres
                .iter()
                .filter(|((k, _), _)| *k == tp)
                .map(|((_, r), n)| {
                    let name = agg.table.name_of(tp, *r);
                    ResultRow {
                        success: is_success(&name),
                        outcome: Some(if tp == RecordKind::MadviseCall {
                            classify_errno(&name)
                        } else {
                            describe(&name).outcome
                        }),
                        result: name,
                        number: *r,
                        count: *n,
                        share: *n as f64 / total.max(1) as f64,
                    }
                })
                .collect();
            results.sort_by(|a, b| b.count.cmp(&a.count).then(a.number.cmp(&b.number)));
            let delivered: u64 = agg
                .delivered
                .iter()
                .filter(|((k, _), _)| *k == tp)
                .map(|(_, n)| n)
                .sum();
            let dropped = kernel.drops[tp as usize];
            let successes: u64 = results.iter().filter(|r| r.success).map(|r| r.count).sum();
            if tp == RecordKind::MadviseCall {
                totals.calls += total;
                totals.failed_calls += total - successes;
            } else {
                totals.events += total;
                totals.successes += successes;
            }
            totals.delivered += delivered;
            totals.dropped += dropped;
            tracepoints.push(TracepointRow {
                name: tp.name().to_string(),
                attached: t.attached,
                events: total,
                delivered,
                dropped,
                results,
            });
        }
        totals.failures = totals.events - totals.successes;
        totals.untracked_calls = kernel.untracked_calls;

        let mut processes: Vec<ProcessRow> = agg
            .processes
            .iter()
            .map(|(tgid, p)| ProcessRow {
                tgid: *tgid,
                comm: escape(&p.comm),
                origin: p.origin.map_or("unknown", origin_name).to_string(),
                events: crate::model::aggregate::events(&p.results),
                failures: failures(&p.results, &agg.table),
                top_failure: dominant(&p.results, true, &agg.table).map(|r| agg.table.name(r)),
                results: keyed(&p.results, agg),
            })
            .collect();
        processes.sort_by(|a, b| b.events.cmp(&a.events).then(a.tgid.cmp(&b.tgid)));

        let mut owners: Vec<OwnerRow> = agg
            .owners
            .iter()
            .map(|(tgid, o)| OwnerRow {
                tgid: *tgid,
                comm: escape(&o.comm),
                cgroup: agg.cgroup_name(o.cgroup_id),
                events: crate::model::aggregate::events(&o.results),
                failures: failures(&o.results, &agg.table),
                results: keyed(&o.results, agg),
            })
            .collect();
        owners.sort_by(|a, b| b.events.cmp(&a.events).then(a.tgid.cmp(&b.tgid)));

        let mut cgroups: Vec<CgroupRow> = agg
            .cgroups
            .iter()
            .map(|(id, c)| {
                let path = agg.cgroup_name(*id);
                CgroupRow {
                    unit: cgroup_unit(&path),
                    pod: PodRow::of(agg, *id),
                    path,
                    id: *id,
                    events: crate::model::aggregate::events(&c.results),
                    failures: failures(&c.results, &agg.table),
                    results: keyed(&c.results, agg),
                }
            })
            .collect();
        cgroups.sort_by(|a, b| b.events.cmp(&a.events).then(a.id.cmp(&b.id)));

        let mut files: Vec<FileRow> = agg
            .files
            .iter()
            .map(|(key, f)| FileRow {
                name: escape(if f.name.is_empty() { key } else { &f.name }),
                path: (!f.name.is_empty() && *key != f.name).then(|| escape(key)),
                inode: (f.inode != 0).then_some(f.inode),
                dev: (f.real_name).then(|| crate::export::ndjson::dev_name(f.dev)),
                real_name: f.real_name,
                events: f.results.values().sum(),
                failures: failures(&f.results, &agg.table),
                top_failure: dominant(&f.results, true, &agg.table).map(|r| agg.table.name(r)),
            })
            .collect();
        files.sort_by(|a, b| {
            b.failures
                .cmp(&a.failures)
                .then(b.events.cmp(&a.events))
                .then(a.name.cmp(&b.name))
        });

        let mut callers: Vec<CallerRow> = agg
            .callers
            .iter()
            .map(|(tgid, c)| {
                let mut errnos: Vec<ErrnoRow> = c
                    .by_errno
                    .iter()
                    .map(|(errno, o)| ErrnoRow {
                        errno: agg.table.name_of(RecordKind::MadviseCall, *errno),
                        number: *errno,
                        calls: o.calls,
                        results: keyed(&o.results, agg),
                    })
                    .collect();
                errnos.sort_by(|a, b| b.calls.cmp(&a.calls).then(a.number.cmp(&b.number)));
                CallerRow {
                    tgid: *tgid,
                    comm: escape(&c.comm),
                    calls: c.by_errno.values().map(|o| o.calls).sum(),
                    errnos,
                }
            })
            .collect();
        callers.sort_by(|a, b| b.calls.cmp(&a.calls).then(a.tgid.cmp(&b.tgid)));

        let mut ranges: Vec<RangeRow> = agg
            .ranges
            .iter()
            .map(|((tgid, start), r)| {
                let calls: Vec<(i64, u64)> = r
                    .results
                    .iter()
                    .filter(|((tp, _), _)| *tp == RecordKind::MadviseCall)
                    .map(|((_, e), n)| (*e, *n))
                    .collect();
                RangeRow {
                    tgid: *tgid,
                    start: *start,
                    len: r.len,
                    events: crate::model::aggregate::events(&r.results),
                    failures: failures(&r.results, &agg.table),
                    top_failure: dominant(&r.results, true, &agg.table).map(|x| agg.table.name(x)),
                    calls: calls.iter().map(|(_, n)| n).sum(),
                    failed_calls: calls.iter().filter(|(e, _)| *e != 0).map(|(_, n)| n).sum(),
                }
            })
            .collect();
        ranges.sort_by(|a, b| {
            (b.failures + b.failed_calls)
                .cmp(&(a.failures + a.failed_calls))
                .then(b.events.cmp(&a.events))
                .then((a.tgid, a.start).cmp(&(b.tgid, b.start)))
        });
        ranges.truncate(RANGE_ROWS);

        Snapshot {
            schema: SCHEMA.to_string(),
            tool_version: env!("CARGO_PKG_VERSION").to_string(),
            kernel_release: info.release.clone(),
            result_names: agg.table.source,
            duration_s,
            filters,
            events,
            totals,
            tracepoints,
            processes,
            owners,
            cgroups,
            files,
            callers,
            ranges,
            untracked: Untracked {
                process_events: agg.processes_other,
                file_events: agg.files_other,
                owner_events: agg.owners_other,
                cgroup_events: agg.cgroups_other,
            },
            attempts: super::attempts::AttemptsSection::build(agg),
            rings: info.rings.map(|r| RingsRow {
                cpus: r.cpus,
                records_per_cpu: r.records_per_cpu,
                bytes_per_cpu: r.bytes_per_cpu,
                bytes: r.bytes_per_cpu * u64::from(r.cpus),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{event::Event, results::ResultTable};
    use collapse_trace_common::Origin;

    #[test]
    fn cgroup_units_and_containers_are_named() {
        assert_eq!(
            cgroup_unit("/system.slice/postgresql.service").as_deref(),
            Some("postgresql.service")
        );
        assert_eq!(
            cgroup_unit("/user.slice/user-0.slice/session-3.scope").as_deref(),
            Some("session-3.scope")
        );
        let id = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        assert_eq!(
            cgroup_unit(&format!("/system.slice/docker-{id}.scope")).as_deref(),
            Some("container 0123456789ab")
        );
        assert_eq!(
            cgroup_unit(&format!("/kubepods/burstable/pod1/{id}")).as_deref(),
            Some("container 0123456789ab")
        );
        assert_eq!(cgroup_unit("/"), None);
        assert_eq!(cgroup_unit("/my-test-dir"), None);
    }

    fn ev(tgid: u32, owner: u32, cgroup: u64, result: i64) -> Event {
        let mut e = Event::empty();
        e.tracepoint = RecordKind::ScanFile;
        e.result = result;
        e.pid = tgid;
        e.tgid = tgid;
        e.comm = b"khugepaged".to_vec();
        e.origin = Origin::Khugepaged;
        e.owner_tgid = owner;
        e.owner_comm = format!("app{owner}").into_bytes();
        e.owner_cgroup_id = cgroup;
        e.filename = b"f".to_vec();
        e
    }

    #[test]
    fn owners_and_cgroups_rows_come_from_the_owner() {
        let mut agg = Aggregate::new(ResultTable::builtin());
        // khugepaged (38) works on the memory of 100 (cgroup 7) and 200 (cgroup 8).
        for e in [
            ev(38, 100, 7, 1),
            ev(38, 100, 7, 5),
            ev(38, 200, 8, 5),
            ev(38, 0, 0, 5),
        ] {
            agg.add(&e);
        }
        assert_eq!(agg.unnamed_cgroups(), vec![7, 8]);
        agg.set_cgroup_path(7, "/system.slice/db.service".into());
        agg.set_cgroup_path(8, "(gone)".into());
        assert!(agg.unnamed_cgroups().is_empty());
        let info = KernelInfo::offline("x".into(), ResultTable::builtin(), &[]);
        let s = Snapshot::build(&agg, &info, Filters::default(), true, 1.0);
        assert_eq!(s.schema, "collapse-trace.stat/2");
        assert_eq!(s.processes.len(), 1, "one task did all the work");
        let owners: Vec<_> = s
            .owners
            .iter()
            .map(|o| {
                (
                    o.tgid,
                    o.comm.as_str(),
                    o.cgroup.as_str(),
                    o.events,
                    o.failures,
                )
            })
            .collect();
        assert_eq!(
            owners,
            [
                (100, "app100", "/system.slice/db.service", 2, 1),
                (200, "app200", "(gone)", 1, 1)
            ]
        );
        let cgroups: Vec<_> = s
            .cgroups
            .iter()
            .map(|c| (c.id, c.path.as_str(), c.unit.as_deref(), c.events))
            .collect();
        assert_eq!(
            cgroups,
            [
                (7, "/system.slice/db.service", Some("db.service"), 2),
                (8, "(gone)", None, 1)
            ]
        );
    }

    #[test]
    fn cgroup_rows_name_their_pod_in_json() {
        let mut agg = Aggregate::new(ResultTable::builtin());
        let uid = "0b6f4c9a-7d3e-4f21-9a8b-1c2d3e4f5a6b";
        let cid = "cd".repeat(32);
        for e in [ev(38, 100, 7, 1), ev(38, 200, 8, 1), ev(38, 300, 9, 1)] {
            agg.add(&e);
        }
        agg.set_cgroup_path(
            7,
            format!(
                "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice/\
                 cri-containerd-{cid}.scope",
                uid.replace('-', "_")
            ),
        );
        let other = "11111111-2222-3333-4444-555555555555";
        agg.set_cgroup_path(8, format!("/kubepods/pod{other}"));
        agg.set_cgroup_path(9, "/system.slice/db.service".into());
        agg.set_pod_name(
            uid.into(),
            crate::model::pods::PodName {
                namespace: "prod".into(),
                name: "web-0".into(),
            },
        );
        let info = KernelInfo::offline("x".into(), ResultTable::builtin(), &[]);
        let s = Snapshot::build(&agg, &info, Filters::default(), true, 1.0);
        let row = |id: u64| {
            let c = s.cgroups.iter().find(|c| c.id == id).unwrap();
            serde_json::to_value(c).unwrap()["pod"].clone()
        };
        assert_eq!(
            row(7),
            serde_json::json!({"uid": uid, "namespace": "prod", "name": "web-0",
                               "qos": "Burstable", "container": cid})
        );
        assert_eq!(
            row(8),
            serde_json::json!({"uid": other, "qos": "Guaranteed"})
        );
        assert_eq!(row(9), serde_json::Value::Null);
        // And back: the document reads as it was written.
        let back: Snapshot = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
        assert_eq!(back, s);
    }
}
