//! Prometheus text exposition (format 0.0.4) of the aggregation core, for `serve`'s
//! `/metrics`. Encoded by `prometheus-client` (names, `HELP`/`TYPE` lines, label escaping),
//! never concatenated by hand.
//!
//! Every metric is rebuilt from the aggregation core on each scrape: the core is cumulative,
//! so the counters are monotonic for the life of the daemon.
//!
//! | metric | labels | source |
//! |---|---|---|
//! | `collapse_trace_events_total` | tracepoint, result | kernel counters (exact); every known result of an attached tracepoint is exported, zeros included, so `rate()` sees the first event |
//! | `collapse_trace_events_delivered_total` | tracepoint | records that reached userspace |
//! | `collapse_trace_events_dropped_total` | tracepoint | records the event rings could not take (kernel counter) |
//! | `collapse_trace_collapse_file_events_total` | shmem, result | delivered `mm_khugepaged_collapse_file` records, by `is_shmem` |
//! | `collapse_trace_process_events_total` | comm, origin, tracepoint, result, cgroup, namespace, pod | delivered records, for at most [`COMM_CAP`] distinct comms; `namespace` and `pod` name the Kubernetes pod the cgroup path names (empty otherwise; see [`pod_labels`]) |
//! | `collapse_trace_comm_cardinality_capped_total` | | delivered records whose comm was past the cap (not itemised) |
//! | `collapse_trace_cgroup_cardinality_capped_total` | | delivered records whose cgroup was past [`CGROUP_CAP`] (labelled `cgroup="(other)"`) |
//! | `collapse_trace_decode_errors_total` | | ring records that did not decode (a build mismatch) |
//! | `collapse_trace_tracepoint_attached` | tracepoint | 1 when attached, 0 when this kernel lacks it |
//! | `collapse_trace_build_info` | version, kernel_release, result_names | always 1 |
//!
//! Label values that come from the kernel (comm, result names) go through
//! [`escape`](crate::model::event::escape) first: untrusted bytes become printable, reversible
//! text; the encoder then applies the exposition format's own escaping (`\\`, `\"`, `\n`).

use std::collections::BTreeMap;

use foldhash::HashMap;

use collapse_trace_common::{Origin, RecordKind};
use prometheus_client::{
    encoding::{EncodeLabelSet, prometheus_text},
    metrics::{counter::Counter, family::Family, gauge::Gauge, info::Info},
    registry::Registry,
};

use crate::{
    model::kernel_info::KernelInfo,
    model::{
        aggregate::Aggregate,
        event::{Event, escape, origin_name},
        indexed::{Table, find},
    },
};

/// `Content-Type` of the body [`render`] returns.
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

/// Default cap on distinct comms itemised in `collapse_trace_process_events_total`: each comm
/// costs at most (origins x tracepoints x results) series, so 200 comms stay a few thousand
/// series at worst. Events of further comms are counted in
/// `collapse_trace_comm_cardinality_capped_total` (and, exactly, in `collapse_trace_events_total`).
pub const COMM_CAP: usize = 200;

/// Default cap on distinct cgroups that label `collapse_trace_process_events_total`; events
/// of further cgroups carry `cgroup="(other)"` and are counted in
/// `collapse_trace_cgroup_cardinality_capped_total`.
pub const CGROUP_CAP: usize = 100;

/// The `cgroup` label of events whose cgroup was past the cap.
pub const OTHER_CGROUP: &str = "(other)";

/// Key of one per-comm count: (tracepoint, origin, result number, cgroup id of the memory's
/// owner, or of the task without one; 0: past the cgroup cap or unknown).
/// (The origin as the enum: a string key would cost a `memcmp` per comparison, per event.)
type CommKey = (RecordKind, Origin, i64, u64);

/// Counts the aggregation core does not keep, fed the same [`Event`] values as the core.
#[derive(Debug)]
pub struct EventCounts {
    /// `mm_khugepaged_collapse_file` records by (is_shmem, result number).
    pub by_shmem: BTreeMap<(bool, i64), u64>,
    /// By raw comm, then (tracepoint, origin, result).
    pub by_comm: Table<Vec<u8>, BTreeMap<CommKey, u64>>,
    /// Where the last event's comm is in `by_comm` (a thread's events come in runs).
    last_comm: usize,
    /// Records whose comm was not itemised because `cap` comms were tracked already.
    pub comm_capped: u64,
    cap: usize,
    /// The cgroups that label series (at most `cgroup_cap`).
    pub cgroups: std::collections::BTreeSet<u64>,
    /// Records whose cgroup was past the cap (labelled [`OTHER_CGROUP`]).
    pub cgroup_capped: u64,
    cgroup_cap: usize,
}

impl EventCounts {
    /// Empty counts that itemise at most `cap` distinct comms and label them with at most
    /// `cgroup_cap` distinct cgroups.
    pub fn new(cap: usize, cgroup_cap: usize) -> EventCounts {
        EventCounts {
            by_shmem: BTreeMap::new(),
            by_comm: Table::default(),
            last_comm: 0,
            comm_capped: 0,
            cap,
            cgroups: std::collections::BTreeSet::new(),
            cgroup_capped: 0,
            cgroup_cap,
        }
    }

    /// Takes one event (the same one the aggregation core takes).
    pub fn add(&mut self, e: &Event) {
        if e.tracepoint == RecordKind::CollapseFile {
            *self.by_shmem.entry((e.is_shmem, e.result)).or_default() += 1;
        }
        let id = if e.owner_cgroup_id != 0 {
            e.owner_cgroup_id
        } else {
            e.cgroup_id
        };
        let cgroup = if id == 0 || self.cgroups.contains(&id) {
            id
        } else if self.cgroups.len() < self.cgroup_cap {
            self.cgroups.insert(id);
            id
        } else {
            self.cgroup_capped += 1;
            0
        };
        let key = (e.tracepoint, e.origin, e.result, cgroup);
        if let Some(i) = find(&self.by_comm, &mut self.last_comm, e.comm.as_slice()) {
            *self.by_comm[i].entry(key).or_default() += 1;
        } else if self.by_comm.len() < self.cap {
            self.last_comm = self
                .by_comm
                .insert_full(e.comm.clone(), BTreeMap::from([(key, 1)]))
                .0;
        } else {
            self.comm_capped += 1;
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    tracepoint: String,
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrnoLabels {
    errno: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TracepointLabels {
    tracepoint: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ShmemLabels {
    shmem: String,
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProcessLabels {
    comm: String,
    origin: String,
    tracepoint: String,
    result: String,
    cgroup: String,
    namespace: String,
    pod: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: String,
    kernel_release: String,
    result_names: String,
}

/// Everything [`render`] reads.
pub struct Source<'a> {
    /// The aggregation core (kernel counters refreshed by the caller).
    pub agg: &'a Aggregate,
    /// The extra per-event counts.
    pub counts: &'a EventCounts,
    /// What was attached.
    pub info: &'a KernelInfo,
    /// Ring records that did not decode.
    pub decode_errors: u64,
}

/// The `namespace` and `pod` labels of cgroup `id`: the pod's namespace and name where the
/// pod log directory named it, else an empty namespace and its UID; both empty when the path
/// names no pod (or is not known). A function of the cgroup alone, so these labels add no
/// series to the cgroup label's: one more at most per pod cgroup, when a UID gets its name
/// after a first scrape.
pub fn pod_labels(agg: &Aggregate, id: u64) -> (String, String) {
    match agg.pod_of(id) {
        Some((_, Some(n))) => (escape(n.namespace.as_bytes()), escape(n.name.as_bytes())),
        Some((pod, None)) => (String::new(), pod.uid),
        None => (String::new(), String::new()),
    }
}

fn result_label(agg: &Aggregate, tp: RecordKind, r: i64) -> String {
    escape(agg.table.name_of(tp, r).as_bytes())
}

/// Errnos exported from zero, so that `rate()` sees the first failing call.
const ZERO_ERRNOS: [i64; 5] = [
    0,
    libc::EAGAIN as i64,
    libc::EBUSY as i64,
    libc::ENOMEM as i64,
    libc::EINVAL as i64,
];

/// The `/metrics` body.
pub fn render(src: &Source<'_>) -> String {
    let agg = src.agg;
    let mut reg = Registry::default();

    let events = Family::<ResultLabels, Counter>::default();
    reg.register(
        "collapse_trace_events",
        "RecordKind hits by result, counted in the kernel (exact, whatever the ring buffer dropped); \
         success is succeeded (khugepaged) or pte_mapped_hugepage (MADV_COLLAPSE)",
        events.clone(),
    );
    let attached = Family::<TracepointLabels, Gauge>::default();
    reg.register(
        "collapse_trace_tracepoint_attached",
        "1 when the tracepoint is attached, 0 when this kernel lacks it",
        attached.clone(),
    );
    let calls = Family::<ErrnoLabels, Counter>::default();
    reg.register(
        "collapse_trace_madvise_calls",
        "MADV_COLLAPSE calls (madvise and process_madvise) by the errno they returned (ok for \
         success), counted in the kernel",
        calls.clone(),
    );
    for t in &src.info.tracepoints {
        let tp = t.tracepoint.name().to_string();
        attached
            .get_or_create(&TracepointLabels {
                tracepoint: tp.clone(),
            })
            .set(i64::from(t.attached));
        if t.tracepoint == RecordKind::MadviseCall {
            if t.attached {
                for e in ZERO_ERRNOS {
                    let _ = calls.get_or_create(&ErrnoLabels {
                        errno: agg.table.name_of(RecordKind::MadviseCall, e),
                    });
                }
            }
        } else if t.attached {
            // Zeros for every result this kernel names, so the first event is a visible step.
            for name in agg.table.names.values() {
                let _ = events.get_or_create(&ResultLabels {
                    tracepoint: tp.clone(),
                    result: escape(name.as_bytes()),
                });
            }
        }
    }
    for ((tp, r), n) in agg.kernel_results() {
        if tp == RecordKind::MadviseCall {
            calls
                .get_or_create(&ErrnoLabels {
                    errno: result_label(agg, tp, r),
                })
                .inc_by(n);
            continue;
        }
        events
            .get_or_create(&ResultLabels {
                tracepoint: tp.name().to_string(),
                result: result_label(agg, tp, r),
            })
            .inc_by(n);
    }

    let delivered = Family::<TracepointLabels, Counter>::default();
    reg.register(
        "collapse_trace_events_delivered",
        "Event records that reached userspace through the ring buffer",
        delivered.clone(),
    );
    let dropped = Family::<TracepointLabels, Counter>::default();
    reg.register(
        "collapse_trace_events_dropped",
        "Event records the event rings could not take (the events are still in collapse_trace_events_total)",
        dropped.clone(),
    );
    let kernel = agg.kernel();
    for t in src.info.tracepoints.iter().filter(|t| t.attached) {
        let tp = t.tracepoint;
        let l = TracepointLabels {
            tracepoint: tp.name().to_string(),
        };
        dropped.get_or_create(&l).inc_by(kernel.drops[tp as usize]);
        let d: u64 = agg
            .delivered
            .iter()
            .filter(|((k, _), _)| *k == tp)
            .map(|(_, n)| n)
            .sum();
        delivered.get_or_create(&l).inc_by(d);
    }

    let shmem = Family::<ShmemLabels, Counter>::default();
    reg.register(
        "collapse_trace_collapse_file_events",
        "Delivered mm_khugepaged_collapse_file records by is_shmem and result",
        shmem.clone(),
    );
    for ((is_shmem, r), n) in &src.counts.by_shmem {
        shmem
            .get_or_create(&ShmemLabels {
                shmem: is_shmem.to_string(),
                result: result_label(agg, RecordKind::CollapseFile, *r),
            })
            .inc_by(*n);
    }

    let process = Family::<ProcessLabels, Counter>::default();
    reg.register(
        "collapse_trace_process_events",
        "Delivered records by task comm (escaped), origin, tracepoint, result and cgroup (of the \
         memory's owner; its path from the cgroup2 root), with the Kubernetes namespace and pod \
         that cgroup belongs to (empty when none; pod is the UID when its name is unknown); at most the configured number of \
         distinct comms (default 200) and cgroups (default 100, the rest cgroup=\"(other)\"), see \
         collapse_trace_comm_cardinality_capped_total and collapse_trace_cgroup_cardinality_capped_total",
        process.clone(),
    );
    // One lookup per labelled cgroup, not per series.
    let pods: HashMap<u64, (String, String)> = src
        .counts
        .cgroups
        .iter()
        .map(|id| (*id, pod_labels(agg, *id)))
        .collect();
    let no_pod = (String::new(), String::new());
    for (comm, results) in &src.counts.by_comm {
        let comm = escape(comm);
        for ((tp, origin, r, cg), n) in results {
            let (namespace, pod) = pods.get(cg).unwrap_or(&no_pod).clone();
            process
                .get_or_create(&ProcessLabels {
                    comm: comm.clone(),
                    origin: origin_name(*origin).to_string(),
                    tracepoint: tp.name().to_string(),
                    result: result_label(agg, *tp, *r),
                    cgroup: match cg {
                        0 => OTHER_CGROUP.to_string(),
                        id => escape(agg.cgroup_name(*id).as_bytes()),
                    },
                    namespace,
                    pod,
                })
                .inc_by(*n);
        }
    }
    let capped = Counter::<u64>::default();
    capped.inc_by(src.counts.comm_capped);
    reg.register(
        "collapse_trace_comm_cardinality_capped",
        "Delivered records not itemised in collapse_trace_process_events_total because the comm cap was reached",
        capped,
    );

    super::attempts::register_metrics(&mut reg, agg);
    let cg_capped = Counter::<u64>::default();
    cg_capped.inc_by(src.counts.cgroup_capped);
    reg.register(
        "collapse_trace_cgroup_cardinality_capped",
        "Delivered records labelled cgroup=\"(other)\" in collapse_trace_process_events_total because the cgroup cap was reached",
        cg_capped,
    );

    let decode = Counter::<u64>::default();
    decode.inc_by(src.decode_errors);
    reg.register(
        "collapse_trace_decode_errors",
        "Ring records that did not decode: the embedded eBPF object and the binary disagree",
        decode,
    );

    reg.register(
        "collapse_trace_build",
        "collapse-trace's version, the kernel release, and where the result names came from",
        Info::new(BuildLabels {
            version: env!("CARGO_PKG_VERSION").to_string(),
            kernel_release: escape(src.info.release.as_bytes()),
            result_names: format!("{:?}", agg.table.source).to_lowercase(),
        }),
    );

    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = prometheus_text::encode(&mut out, &reg);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{aggregate::KernelCounters, event::tests::record, results::ResultTable};

    fn info() -> KernelInfo {
        let all: Vec<(RecordKind, bool)> = RecordKind::ALL.iter().map(|&k| (k, true)).collect();
        KernelInfo::offline("6.18.0-test".into(), ResultTable::builtin(), &all)
    }

    fn ev(tp: RecordKind, result: i32, comm: &[u8]) -> Event {
        Event::decode(&record(tp, 7, result, comm, b"f")).unwrap()
    }

    #[test]
    fn renders_kernel_counts_drops_and_escaped_comms() {
        let info = info();
        let mut agg = Aggregate::new(ResultTable::builtin());
        let mut counts = EventCounts::new(2, 1);
        let mut k = KernelCounters::default();
        agg.set_baseline(k.clone());
        for comm in [&b"q\"b\\c\n\xff"[..], b"two", b"three", b"q\"b\\c\n\xff"] {
            let e = ev(RecordKind::CollapseFile, 30, comm);
            agg.add(&e);
            counts.add(&e);
        }
        // A second cgroup, past the cap of 1.
        let mut e = ev(RecordKind::CollapseFile, 30, b"two");
        e.owner_cgroup_id = 99;
        agg.add(&e);
        counts.add(&e);
        agg.set_cgroup_path(14, "/system.slice/db.service".into());
        k.counts[RecordKind::CollapseFile as usize][30] = 5;
        k.drops[RecordKind::CollapseFile as usize] = 1;
        k.counts[RecordKind::MadviseCall as usize][11] = 3;
        agg.set_kernel(k);
        let body = render(&Source {
            agg: &agg,
            counts: &counts,
            info: &info,
            decode_errors: 0,
        });
        let has = |l: &str| assert!(body.lines().any(|x| x == l), "no line {l:?} in\n{body}");
        has("# TYPE collapse_trace_events_total counter");
        has("collapse_trace_madvise_calls_total{errno=\"EAGAIN\"} 3");
        has("collapse_trace_madvise_calls_total{errno=\"EBUSY\"} 0");
        assert!(
            !body.contains("tracepoint=\"madvise_collapse\",result"),
            "{body}"
        );
        has(
            "collapse_trace_events_total{tracepoint=\"mm_khugepaged_collapse_file\",result=\"page_filled\"} 5",
        );
        has(
            "collapse_trace_events_total{tracepoint=\"mm_khugepaged_scan_file\",result=\"page_filled\"} 0",
        );
        has("collapse_trace_events_dropped_total{tracepoint=\"mm_khugepaged_collapse_file\"} 1");
        has("collapse_trace_events_delivered_total{tracepoint=\"mm_khugepaged_collapse_file\"} 5");
        has("collapse_trace_collapse_file_events_total{shmem=\"true\",result=\"page_filled\"} 5");
        // escape() gives q"b\\c\x0a\xff; the exposition format then escapes `"` and `\`.
        has(
            "collapse_trace_process_events_total{comm=\"q\\\"b\\\\\\\\c\\\\x0a\\\\xff\",origin=\"madvise\",\
             tracepoint=\"mm_khugepaged_collapse_file\",result=\"page_filled\",\
             cgroup=\"/system.slice/db.service\",namespace=\"\",pod=\"\"} 2",
        );
        has(
            "collapse_trace_process_events_total{comm=\"two\",origin=\"madvise\",\
             tracepoint=\"mm_khugepaged_collapse_file\",result=\"page_filled\",cgroup=\"(other)\",\
             namespace=\"\",pod=\"\"} 1",
        );
        has("collapse_trace_cgroup_cardinality_capped_total 1");
        // Two comms itemised, the third counted as capped.
        assert!(!body.contains("comm=\"three\""));
        has("collapse_trace_comm_cardinality_capped_total 1");
        has(&format!(
            "collapse_trace_build_info{{version=\"{}\",kernel_release=\"6.18.0-test\",result_names=\"builtin\"}} 1",
            env!("CARGO_PKG_VERSION")
        ));
        // No raw control character or invalid UTF-8 reaches the body.
        assert!(!body.chars().any(|c| c.is_control() && c != '\n'));
        for l in body.lines() {
            assert!(
                l.starts_with("# ") || l.starts_with("collapse_trace_"),
                "{l:?}"
            );
        }
    }

    #[test]
    fn pod_cgroups_label_their_namespace_and_pod() {
        let info = info();
        let mut agg = Aggregate::new(ResultTable::builtin());
        let mut counts = EventCounts::new(10, 10);
        agg.set_baseline(KernelCounters::default());
        let named = "0b6f4c9a-7d3e-4f21-9a8b-1c2d3e4f5a6b";
        let unnamed = "11111111-2222-3333-4444-555555555555";
        let paths = [
            (
                21,
                format!(
                    "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{}.slice/\
                     cri-containerd-{}.scope",
                    named.replace('-', "_"),
                    "ab".repeat(32)
                ),
            ),
            (22, format!("/kubepods/burstable/pod{unnamed}")),
            (23, "/system.slice/db.service".to_string()),
        ];
        for (id, path) in &paths {
            let mut e = ev(RecordKind::CollapseFile, 30, b"w");
            e.owner_cgroup_id = *id;
            agg.add(&e);
            counts.add(&e);
            agg.set_cgroup_path(*id, path.clone());
        }
        assert_eq!(
            agg.unnamed_pods(),
            vec![named.to_string(), unnamed.to_string()]
        );
        agg.set_pod_name(
            named.to_string(),
            crate::model::pods::PodName {
                namespace: "prod".into(),
                name: "web-7f9c".into(),
            },
        );
        assert_eq!(agg.unnamed_pods(), vec![unnamed.to_string()]);
        let body = render(&Source {
            agg: &agg,
            counts: &counts,
            info: &info,
            decode_errors: 0,
        });
        let series = |cgroup: &str| {
            body.lines()
                .filter(|l| {
                    l.starts_with("collapse_trace_process_events_total{")
                        && l.contains(&format!("cgroup=\"{cgroup}\""))
                })
                .collect::<Vec<_>>()
        };
        let pod = series(&paths[0].1);
        assert_eq!(pod.len(), 1, "{body}");
        assert!(
            pod[0].ends_with(",namespace=\"prod\",pod=\"web-7f9c\"} 1"),
            "{}",
            pod[0]
        );
        let uid = series(&paths[1].1);
        assert!(
            uid[0].ends_with(&format!(",namespace=\"\",pod=\"{unnamed}\"}} 1")),
            "{}",
            uid[0]
        );
        let none = series(&paths[2].1);
        assert!(
            none[0].ends_with(",namespace=\"\",pod=\"\"} 1"),
            "{}",
            none[0]
        );
    }
}
