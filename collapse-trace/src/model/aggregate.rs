//! The aggregation core: consumes decoded events and kernel counter snapshots; every view
//! reads from it.
//!
//! Kernel counters are cumulative and never cleared (another reader may be reading them):
//! the core keeps a baseline and reports deltas.

use std::collections::{BTreeMap, VecDeque};

use foldhash::{HashMap, HashMapExt as _};

use collapse_trace_common::{NUM_KINDS, Origin, RESULT_OVERFLOW_SLOT, RESULT_SLOTS, RecordKind};

use super::{
    attempts::Attempts,
    event::Event,
    indexed::{Table, Threads, find},
    pods::{PodCgroup, PodName, pod_in_cgroup},
    results::{ResultTable, is_success},
};

/// Per-tracepoint totals read from the kernel's per-CPU maps (summed over CPUs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelCounters {
    /// `counts[tp][slot]`: events by result number (last slot: out of range).
    pub counts: [[u64; RESULT_SLOTS]; NUM_KINDS],
    /// Ring records that could not be reserved, per tracepoint.
    pub drops: [u64; NUM_KINDS],
    /// MADV_COLLAPSE calls that could not be tracked (their slot was busy): neither counted
    /// nor joined.
    pub untracked_calls: u64,
}

impl Default for KernelCounters {
    fn default() -> Self {
        KernelCounters {
            counts: [[0; RESULT_SLOTS]; NUM_KINDS],
            drops: [0; NUM_KINDS],
            untracked_calls: 0,
        }
    }
}

impl KernelCounters {
    /// `self - base`, element-wise (saturating: a reloaded map restarts at zero).
    pub fn since(&self, base: &KernelCounters) -> KernelCounters {
        let mut d = self.clone();
        for t in 0..NUM_KINDS {
            for s in 0..RESULT_SLOTS {
                d.counts[t][s] = self.counts[t][s].saturating_sub(base.counts[t][s]);
            }
            d.drops[t] = self.drops[t].saturating_sub(base.drops[t]);
        }
        d.untracked_calls = self.untracked_calls.saturating_sub(base.untracked_calls);
        d
    }

    /// All events of one tracepoint.
    pub fn total(&self, tp: RecordKind) -> u64 {
        self.counts[tp as usize].iter().sum()
    }
}

/// A count's key: (tracepoint, result number).
pub type ResultKey = (RecordKind, i64);

/// Counts by (tracepoint, result number), in key order: a short sorted list, searched from
/// the start (a process, file or cgroup sees a handful of results). Every event bumps five or
/// six of these, and a `BTreeMap`'s entry costs more than the whole search.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResultCounts {
    items: Vec<(ResultKey, u64)>,
}

impl ResultCounts {
    /// Empty.
    pub const fn new() -> ResultCounts {
        ResultCounts { items: Vec::new() }
    }

    /// Where `key` is, or where it would go.
    #[inline]
    fn search(&self, key: &ResultKey) -> Result<usize, usize> {
        for (i, (k, _)) in self.items.iter().enumerate() {
            match k.cmp(key) {
                std::cmp::Ordering::Less => {}
                std::cmp::Ordering::Equal => return Ok(i),
                std::cmp::Ordering::Greater => return Err(i),
            }
        }
        Err(self.items.len())
    }

    /// The count of `key`, made 0 if absent, to be added to.
    #[inline]
    pub fn entry(&mut self, key: ResultKey) -> CountEntry<'_> {
        let i = match self.search(&key) {
            Ok(i) => i,
            Err(i) => {
                self.items.insert(i, (key, 0));
                i
            }
        };
        CountEntry(&mut self.items[i].1)
    }

    /// The count of `key`, if any.
    pub fn get(&self, key: &ResultKey) -> Option<&u64> {
        self.search(key).ok().map(|i| &self.items[i].1)
    }

    /// (key, count) in key order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (&ResultKey, &u64)> + Clone {
        self.items.iter().map(|(k, n)| (k, n))
    }

    /// Counts in key order.
    pub fn values(&self) -> impl Iterator<Item = &u64> + Clone {
        self.items.iter().map(|(_, n)| n)
    }

    /// Distinct keys.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// No key yet.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Every key gone.
    pub fn clear(&mut self) {
        self.items.clear();
    }
}

impl std::ops::Index<&ResultKey> for ResultCounts {
    type Output = u64;

    /// The count of `key`; panics when it has none, as a map's index does.
    fn index(&self, key: &ResultKey) -> &u64 {
        self.get(key).expect("no count for this key")
    }
}

impl IntoIterator for ResultCounts {
    type Item = (ResultKey, u64);
    type IntoIter = std::vec::IntoIter<(ResultKey, u64)>;

    fn into_iter(self) -> Self::IntoIter {
        self.items.into_iter()
    }
}

/// A count in [`ResultCounts`] (`entry(k).or_default()`, as with a map).
pub struct CountEntry<'a>(&'a mut u64);

impl<'a> CountEntry<'a> {
    /// The count, to be added to.
    pub fn or_default(self) -> &'a mut u64 {
        self.0
    }
}

impl<'a> IntoIterator for &'a ResultCounts {
    type Item = (&'a ResultKey, &'a u64);
    type IntoIter = std::iter::Map<
        std::slice::Iter<'a, (ResultKey, u64)>,
        fn(&'a (ResultKey, u64)) -> (&'a ResultKey, &'a u64),
    >;

    fn into_iter(self) -> Self::IntoIter {
        self.items.iter().map(|(k, n)| (k, n))
    }
}

/// The entry of `key` in `t`, by way of `last` (where the previous lookup found its key), else
/// a new entry from `new` while `t` holds fewer than [`KEY_CAP`]; `None` beyond that.
fn entry_in<'t, K, V, Q>(
    t: &'t mut Table<K, V>,
    last: &mut usize,
    key: &Q,
    new: impl FnOnce() -> (K, V),
) -> Option<&'t mut V>
where
    K: std::hash::Hash + Eq + std::borrow::Borrow<Q>,
    Q: std::hash::Hash + Eq + ?Sized,
{
    if let Some(i) = find(t, last, key) {
        return t.get_index_mut(i).map(|(_, v)| v);
    }
    if t.len() >= KEY_CAP {
        return None;
    }
    let (k, v) = new();
    let (i, _) = t.insert_full(k, v);
    *last = i;
    t.get_index_mut(i).map(|(_, v)| v)
}

/// The results of a call's events so far, before its return joins them (a short list: a
/// call's events have few distinct results).
type CallResults = Vec<((RecordKind, i64), u64)>;

/// A thread's MADV_COLLAPSE call in flight: its entry time (0: none) and its events' results
/// so far.
#[derive(Debug, Default)]
struct CallInFlight {
    call_ns: u64,
    results: CallResults,
}

/// What one process did.
#[derive(Debug, Clone, Default)]
pub struct ProcessStats {
    /// Last comm seen (raw bytes).
    pub comm: Vec<u8>,
    /// khugepaged thread or MADV_COLLAPSE caller (last seen).
    pub origin: Option<Origin>,
    /// Events by (tracepoint, result).
    pub results: ResultCounts,
}

/// What happened to the memory of one owner (`mm->owner`): khugepaged's work and the
/// process's own MADV_COLLAPSE calls alike.
#[derive(Debug, Clone, Default)]
pub struct OwnerStats {
    /// Last comm seen (raw bytes).
    pub comm: Vec<u8>,
    /// Last cgroup v2 id seen.
    pub cgroup_id: u64,
    /// Events by (tracepoint, result).
    pub results: ResultCounts,
}

/// What happened to the memory of the processes in one cgroup (the owner's; the task's when
/// the kernel gave no owner).
#[derive(Debug, Clone, Default)]
pub struct CgroupStats {
    /// Events by (tracepoint, result).
    pub results: ResultCounts,
}

/// What happened to one file.
#[derive(Debug, Clone, Default)]
pub struct FileStats {
    /// Events by (tracepoint, result).
    pub results: ResultCounts,
    /// The file's own name (raw bytes; the key is its path within its mount where known).
    pub name: Vec<u8>,
    /// Its inode number and device, where the BTF-typed programs read them (else 0).
    pub inode: u64,
    /// See `inode`.
    pub dev: u32,
    /// The name is the dentry's own (not the tracepoint record's possibly stale copy).
    pub real_name: bool,
}

/// The key a file is filed under: its path within its mount (`dir/name`, `.../dir/name`
/// when only the nearest directories are known) where the event has one, else its name.
pub fn file_key(e: &Event) -> Vec<u8> {
    let mut k = Vec::new();
    file_key_into(e, &mut k);
    k
}

/// [`file_key`] into `k` (cleared first), so that the per-event path reuses one buffer.
fn file_key_into(e: &Event, k: &mut Vec<u8>) {
    k.clear();
    if !e.dir.is_empty() {
        if e.dir_cut {
            k.extend_from_slice(b".../");
        }
        k.extend_from_slice(&e.dir);
        k.push(b'/');
    }
    k.extend_from_slice(&e.filename);
}

/// Failed collapse events in `results` (MADV_COLLAPSE call records are not events of a
/// collapse and are left out).
pub fn failures(results: &ResultCounts, table: &ResultTable) -> u64 {
    results
        .iter()
        .filter(|((tp, r), _)| *tp != RecordKind::MadviseCall && !is_success(&table.name(*r)))
        .map(|(_, n)| n)
        .sum()
}

/// Collapse events in `results` (call records left out).
pub fn events(results: &ResultCounts) -> u64 {
    results
        .iter()
        .filter(|((tp, _), _)| *tp != RecordKind::MadviseCall)
        .map(|(_, n)| n)
        .sum()
}

/// The result with the most collapse events in `results` (ties: the lower number).
pub fn dominant(results: &ResultCounts, failures_only: bool, table: &ResultTable) -> Option<i64> {
    let mut by_result: BTreeMap<i64, u64> = BTreeMap::new();
    for ((tp, r), n) in results {
        if *tp != RecordKind::MadviseCall && (!failures_only || !is_success(&table.name(*r))) {
            *by_result.entry(*r).or_default() += n;
        }
    }
    by_result
        .into_iter()
        .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(&a.0)))
        .map(|(r, _)| r)
}

/// How many distinct processes and files are tracked before the rest fold into `other`.
pub const KEY_CAP: usize = 4096;

/// MADV_COLLAPSE calls whose events are being gathered before their exit record.
pub const PENDING_CAP: usize = 16384;

/// The calls of one process that returned one errno, and the results behind them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallOutcome {
    /// Calls.
    pub calls: u64,
    /// The collapse events those calls produced, by (tracepoint, result).
    pub results: ResultCounts,
}

/// What one process's MADV_COLLAPSE calls returned.
#[derive(Debug, Clone, Default)]
pub struct CallerStats {
    /// Last comm seen (raw bytes).
    pub comm: Vec<u8>,
    /// By errno number (0: success).
    pub by_errno: BTreeMap<i64, CallOutcome>,
}

/// Recent failure events kept for views.
pub const RECENT_CAP: usize = 256;

/// The size of the range a khugepaged collapse works on (a PMD: 2 MiB on x86-64).
pub const PMD_SIZE: u64 = 2 << 20;

/// Seconds kept in the timeline (about 11 days; later seconds are not itemised).
pub const TIMELINE_CAP: usize = 1_000_000;

/// What happened in one address range of one process.
#[derive(Debug, Clone, Default)]
pub struct RangeStats {
    /// Bytes: a MADV_COLLAPSE call's `len`, or [`PMD_SIZE`] for a khugepaged collapse.
    pub len: u64,
    /// Collapse events by (tracepoint, result), plus the calls over the range by errno
    /// (kind `madvise_collapse`).
    pub results: ResultCounts,
}

/// One second of the timeline.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tick {
    /// Collapse attempts (scan events: one per attempt, carrying its final result).
    pub attempts: u64,
    /// Of which failed.
    pub failures: u64,
    /// MADV_COLLAPSE calls that returned an error.
    pub failed_calls: u64,
}

/// The aggregation core.
#[derive(Debug)]
pub struct Aggregate {
    /// The result names of this kernel.
    pub table: ResultTable,
    /// Events delivered, by (tracepoint, result).
    pub delivered: ResultCounts,
    /// Events delivered in all.
    pub delivered_total: u64,
    /// By process id (tgid).
    pub processes: Table<u32, ProcessStats>,
    /// Events from processes beyond [`KEY_CAP`].
    pub processes_other: u64,
    /// By owner of the memory (tgid; events without an owner are not listed).
    pub owners: Table<u32, OwnerStats>,
    /// Events from owners beyond [`KEY_CAP`].
    pub owners_other: u64,
    /// By cgroup v2 id of the owner (of the task without one).
    pub cgroups: Table<u64, CgroupStats>,
    /// Events from cgroups beyond [`KEY_CAP`].
    pub cgroups_other: u64,
    /// Paths of cgroup ids, filled in by whoever can read them (see
    /// [`Aggregate::set_cgroup_path`]); an id without one shows as its number.
    pub cgroup_paths: BTreeMap<u64, String>,
    /// Namespace and name of pod UIDs in those paths, filled in by whoever can read them
    /// (see [`Aggregate::set_pod_name`]); a pod without one shows as its UID. Kept once
    /// learnt, so a pod's label does not change when its directory goes.
    pub pod_names: BTreeMap<String, PodName>,
    /// By file, keyed by [`file_key`] (raw bytes).
    pub files: Table<Vec<u8>, FileStats>,
    /// Events for files beyond [`KEY_CAP`].
    pub files_other: u64,
    /// The last event's file key, a buffer reused so that filing an event allocates nothing.
    file_key: Vec<u8>,
    /// The newest failures, oldest first.
    pub recent_failures: VecDeque<Event>,
    /// First and last event time (CLOCK_MONOTONIC ns).
    pub span_ns: Option<(u64, u64)>,
    /// MADV_COLLAPSE callers (from call records joined with the events inside each call).
    pub callers: HashMap<u32, CallerStats>,
    /// Call-tagged events whose call record never came (the thread's next call began first:
    /// the record was dropped) or whose thread did not fit [`PENDING_CAP`].
    pub unjoined_events: u64,
    /// By (tgid, start address): MADV_COLLAPSE call ranges (with the events inside each
    /// call) and, for events outside a call, the PMD range of a `collapse_file` address.
    pub ranges: HashMap<(u32, u64), RangeStats>,
    /// Events for ranges beyond [`KEY_CAP`].
    pub ranges_other: u64,
    /// Attempts and failures per second of CLOCK_MONOTONIC (the events' clock).
    pub timeline: BTreeMap<u64, Tick>,
    /// The events joined into attempts (one per range tried), with their outcomes.
    pub attempts: Attempts,
    /// By thread: the call in flight (a thread makes one call at a time).
    pending: Threads<CallInFlight, PENDING_CAP>,
    /// Where the last event's process, owner, cgroup and file are in their tables.
    last: [usize; 4],
    /// Whether each result number is a success, by number (0: not known yet, 1: failure, 2:
    /// success), worked out once from the table's names; `success_names` is the table's
    /// size then (names are only ever added, by text captures).
    success: [u8; RESULT_SLOTS],
    success_names: usize,
    baseline: KernelCounters,
    latest: KernelCounters,
}

impl Aggregate {
    /// An empty core for a kernel with these result names.
    pub fn new(table: ResultTable) -> Aggregate {
        Aggregate {
            table,
            delivered: ResultCounts::new(),
            delivered_total: 0,
            processes: Table::default(),
            processes_other: 0,
            owners: Table::default(),
            owners_other: 0,
            cgroups: Table::default(),
            cgroups_other: 0,
            cgroup_paths: BTreeMap::new(),
            pod_names: BTreeMap::new(),
            files: Table::default(),
            files_other: 0,
            file_key: Vec::new(),
            recent_failures: VecDeque::new(),
            span_ns: None,
            callers: HashMap::new(),
            unjoined_events: 0,
            ranges: HashMap::new(),
            ranges_other: 0,
            timeline: BTreeMap::new(),
            attempts: Attempts::new(),
            pending: Threads::default(),
            last: [0; 4],
            success: [0; RESULT_SLOTS],
            success_names: 0,
            baseline: KernelCounters::default(),
            latest: KernelCounters::default(),
        }
    }

    /// Takes one event.
    pub fn add(&mut self, e: &Event) {
        let key = (e.tracepoint, e.result);
        *self.delivered.entry(key).or_default() += 1;
        self.delivered_total += 1;
        self.span_ns = Some(match self.span_ns {
            None => (e.ts_ns, e.ts_ns),
            Some((a, b)) => (a.min(e.ts_ns), b.max(e.ts_ns)),
        });

        let [lp, lo, lc, lf] = &mut self.last;
        let new_process = || {
            let p = ProcessStats {
                comm: e.comm.clone(),
                ..Default::default()
            };
            (e.tgid, p)
        };
        match entry_in(&mut self.processes, lp, &e.tgid, new_process) {
            Some(p) => {
                *p.results.entry(key).or_default() += 1;
                if p.comm != e.comm {
                    p.comm.clone_from(&e.comm);
                }
                p.origin = Some(e.origin);
            }
            None => self.processes_other += 1,
        }

        if e.owner_tgid != 0 {
            let new_owner = || {
                let o = OwnerStats {
                    comm: e.owner_comm.clone(),
                    ..Default::default()
                };
                (e.owner_tgid, o)
            };
            match entry_in(&mut self.owners, lo, &e.owner_tgid, new_owner) {
                Some(o) => {
                    *o.results.entry(key).or_default() += 1;
                    if o.comm != e.owner_comm {
                        o.comm.clone_from(&e.owner_comm);
                    }
                    o.cgroup_id = e.owner_cgroup_id;
                }
                None => self.owners_other += 1,
            }
        }
        let cgroup = if e.owner_cgroup_id != 0 {
            e.owner_cgroup_id
        } else {
            e.cgroup_id
        };
        if cgroup != 0 {
            match entry_in(&mut self.cgroups, lc, &cgroup, || {
                (cgroup, CgroupStats::default())
            }) {
                Some(c) => *c.results.entry(key).or_default() += 1,
                None => self.cgroups_other += 1,
            }
        }

        // Anonymous events and call records have no file.
        if !e.filename.is_empty() {
            file_key_into(e, &mut self.file_key);
            let k = &self.file_key;
            let new_file = || {
                let f = FileStats {
                    name: e.filename.clone(),
                    inode: e.inode,
                    dev: e.dev,
                    real_name: e.real_name,
                    ..FileStats::default()
                };
                (k.clone(), f)
            };
            match entry_in(&mut self.files, lf, k.as_slice(), new_file) {
                Some(f) => *f.results.entry(key).or_default() += 1,
                None => self.files_other += 1,
            }
        }

        self.join_call(e);
        self.attempts.add(e, &self.table);

        let success = self.success_of(e.tracepoint, e.result);
        if e.tracepoint.is_scan() || e.tracepoint == RecordKind::MadviseCall {
            let sec = e.ts_ns / 1_000_000_000;
            // Events come in time order: nearly always the newest second, reached down the
            // tree's right edge without comparing keys.
            let n = self.timeline.len();
            let tick = match self.timeline.last_entry() {
                Some(t) if *t.key() == sec => Some(t.into_mut()),
                _ => match self.timeline.get_mut(&sec) {
                    Some(t) => Some(t),
                    None if n < TIMELINE_CAP => Some(self.timeline.entry(sec).or_default()),
                    None => None,
                },
            };
            if let Some(t) = tick {
                if e.tracepoint == RecordKind::MadviseCall {
                    t.failed_calls += u64::from(!success);
                } else {
                    t.attempts += 1;
                    t.failures += u64::from(!success);
                }
            }
        }
        if e.call_ns == 0 && e.tracepoint == RecordKind::CollapseFile && e.addr != 0 {
            let start = e.addr & !(PMD_SIZE - 1);
            self.add_range(e.tgid, start, PMD_SIZE, [((e.tracepoint, e.result), 1)]);
        }

        if !success {
            if self.recent_failures.len() == RECENT_CAP {
                self.recent_failures.pop_front();
            }
            self.recent_failures.push_back(e.clone());
        }
    }

    /// Gathers the events inside a MADV_COLLAPSE call until its exit record, then files them
    /// under the caller and the errno the call returned. The reader merges the CPUs' rings by
    /// time, so a call's events always come before its exit record.
    fn join_call(&mut self, e: &Event) {
        if e.call_ns == 0 {
            return;
        }
        let idle = |c: &CallInFlight| c.results.is_empty();
        if e.tracepoint != RecordKind::MadviseCall {
            let k = (e.tracepoint, e.result);
            let Some(c) = self.pending.get_or_insert(e.pid, idle) else {
                self.unjoined_events += 1;
                return;
            };
            if c.call_ns != e.call_ns {
                // The thread's previous call never got its record (dropped): its events
                // stay unjoined.
                self.unjoined_events += c.results.iter().map(|(_, n)| n).sum::<u64>();
                c.results.clear();
                c.call_ns = e.call_ns;
            }
            // A call's events have few distinct results: a short list, searched.
            match c.results.iter_mut().find(|(x, _)| *x == k) {
                Some((_, n)) => *n += 1,
                None => c.results.push((k, 1)),
            }
            return;
        }
        // The vector goes back to the thread's entry once filed: no allocation per call.
        let mut results = match self.pending.get_mut(e.pid) {
            Some(c) if c.call_ns == e.call_ns => {
                c.call_ns = 0;
                std::mem::take(&mut c.results)
            }
            _ => Vec::new(),
        };
        // process_madvise's ranges are in an iovec the record does not carry (start 0).
        if e.addr != 0 {
            let own = [((e.tracepoint, e.result), 1)];
            let all = results.iter().copied().chain(own);
            Self::add_range_to(
                &mut self.ranges,
                &mut self.ranges_other,
                e.tgid,
                e.addr,
                e.index,
                all,
            );
        }
        let caller = self.callers.entry(e.tgid).or_default();
        if caller.comm != e.comm {
            caller.comm.clone_from(&e.comm);
        }
        let outcome = caller.by_errno.entry(e.result).or_default();
        outcome.calls += 1;
        for (k, n) in results.drain(..) {
            *outcome.results.entry(k).or_default() += n;
        }
        if results.capacity() > 0
            && let Some(c) = self.pending.get_mut(e.pid)
            && c.results.capacity() == 0
        {
            c.results = results;
        }
    }

    fn add_range(
        &mut self,
        tgid: u32,
        start: u64,
        len: u64,
        results: impl IntoIterator<Item = ((RecordKind, i64), u64)>,
    ) {
        Self::add_range_to(
            &mut self.ranges,
            &mut self.ranges_other,
            tgid,
            start,
            len,
            results,
        );
    }

    /// [`Aggregate::add_range`] on the two fields it changes (so that a caller may hold other
    /// fields borrowed meanwhile).
    fn add_range_to(
        ranges: &mut HashMap<(u32, u64), RangeStats>,
        ranges_other: &mut u64,
        tgid: u32,
        start: u64,
        len: u64,
        results: impl IntoIterator<Item = ((RecordKind, i64), u64)>,
    ) {
        let n = ranges.len();
        let r = match ranges.get_mut(&(tgid, start)) {
            Some(r) => r,
            None if n < KEY_CAP => ranges.entry((tgid, start)).or_default(),
            None => {
                *ranges_other += results.into_iter().map(|(_, n)| n).sum::<u64>();
                return;
            }
        };
        r.len = r.len.max(len);
        for (k, n) in results {
            *r.results.entry(k).or_default() += n;
        }
    }

    /// Cgroup ids seen (owners' and the cgroups table's) that have no path yet.
    pub fn unnamed_cgroups(&self) -> Vec<u64> {
        let mut ids: Vec<u64> = self
            .cgroups
            .keys()
            .copied()
            .chain(self.owners.values().map(|o| o.cgroup_id))
            .filter(|id| *id != 0 && !self.cgroup_paths.contains_key(id))
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// Names cgroup `id` (a path from the cgroup2 root, or `(gone)`).
    pub fn set_cgroup_path(&mut self, id: u64, path: String) {
        self.cgroup_paths.insert(id, path);
    }

    /// The path of cgroup `id` if known, else its number.
    pub fn cgroup_name(&self, id: u64) -> String {
        match self.cgroup_paths.get(&id) {
            Some(p) => p.clone(),
            None if id == 0 => String::new(),
            None => format!("cgroup:{id}"),
        }
    }

    /// UIDs of the pods named in known cgroup paths that have no namespace and name yet.
    pub fn unnamed_pods(&self) -> Vec<String> {
        let mut uids: Vec<String> = self
            .cgroup_paths
            .values()
            .filter_map(|p| pod_in_cgroup(p))
            .map(|p| p.uid)
            .filter(|uid| !self.pod_names.contains_key(uid))
            .collect();
        uids.sort_unstable();
        uids.dedup();
        uids
    }

    /// Names pod `uid`.
    pub fn set_pod_name(&mut self, uid: String, name: PodName) {
        self.pod_names.insert(uid, name);
    }

    /// The pod cgroup `id`'s path names, with its namespace and name when known.
    pub fn pod_of(&self, id: u64) -> Option<(PodCgroup, Option<&PodName>)> {
        let pod = pod_in_cgroup(self.cgroup_paths.get(&id)?)?;
        let name = self.pod_names.get(&pod.uid);
        Some((pod, name))
    }

    /// Whether result `r` of kind `tp` means success (no allocation: called per event).
    pub fn is_success(&self, tp: RecordKind, r: i64) -> bool {
        if tp == RecordKind::MadviseCall {
            r == 0
        } else {
            self.table.names.get(&r).is_some_and(|n| is_success(n))
        }
    }

    /// [`Aggregate::is_success`] by way of the per-number cache (called per event).
    fn success_of(&mut self, tp: RecordKind, r: i64) -> bool {
        if tp == RecordKind::MadviseCall {
            return r == 0;
        }
        let Some(slot) = usize::try_from(r).ok().filter(|s| *s < RESULT_SLOTS) else {
            return self.is_success(tp, r);
        };
        if self.success_names != self.table.names.len() {
            self.success = [0; RESULT_SLOTS];
            self.success_names = self.table.names.len();
        }
        if self.success[slot] == 0 {
            self.success[slot] = 1 + u8::from(self.is_success(tp, r));
        }
        self.success[slot] == 2
    }

    /// Kernel counters equal to the delivered events: for captures whose kernel counts are
    /// unknown (text captures, a record cut short), where no drop is known either.
    pub fn counters_from_delivered(&self) -> KernelCounters {
        let mut k = KernelCounters::default();
        for ((tp, r), n) in &self.delivered {
            let slot = if (0..RESULT_OVERFLOW_SLOT as i64).contains(r) {
                *r as usize
            } else {
                RESULT_OVERFLOW_SLOT as usize
            };
            k.counts[*tp as usize][slot] += n;
        }
        k
    }

    /// Call-tagged events still waiting for their call's exit record (at the end of a run:
    /// calls that had not returned yet).
    pub fn pending_events(&self) -> u64 {
        self.pending
            .values()
            .flat_map(|c| c.results.iter().map(|(_, n)| n))
            .sum()
    }

    /// Takes a kernel counter snapshot.
    pub fn set_kernel(&mut self, k: KernelCounters) {
        self.latest = k;
    }

    /// Takes the snapshot that counts start from.
    pub fn set_baseline(&mut self, k: KernelCounters) {
        self.baseline = k.clone();
        self.latest = k;
    }

    /// Kernel counts since the baseline: exact, whatever the ring buffer lost.
    pub fn kernel(&self) -> KernelCounters {
        self.latest.since(&self.baseline)
    }

    /// Kernel counts by (tracepoint, result number), zero entries left out. The overflow slot
    /// is reported as result number [`RESULT_OVERFLOW_SLOT`] only when it is not a real result.
    pub fn kernel_results(&self) -> ResultCounts {
        let k = self.kernel();
        let mut out = ResultCounts::new();
        for tp in RecordKind::ALL {
            for (slot, &n) in k.counts[tp as usize].iter().enumerate() {
                if n > 0 {
                    let r = if slot as u32 == RESULT_OVERFLOW_SLOT {
                        -1
                    } else {
                        slot as i64
                    };
                    *out.entry((tp, r)).or_default() = n;
                }
            }
        }
        out
    }

    /// Events delivered for one process, by (tracepoint, result).
    pub fn process(&self, tgid: u32) -> Option<&ProcessStats> {
        self.processes.get(&tgid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::event::tests::record;

    #[test]
    fn result_counts_keep_key_order_and_add_up() {
        let mut c = ResultCounts::new();
        for key in [
            (RecordKind::ScanFile, 30),
            (RecordKind::CollapseFile, 1),
            (RecordKind::ScanFile, 1),
            (RecordKind::ScanFile, 30),
            (RecordKind::ScanFile, -1),
        ] {
            *c.entry(key).or_default() += 1;
        }
        let want: BTreeMap<ResultKey, u64> = BTreeMap::from([
            ((RecordKind::ScanFile, 30), 2),
            ((RecordKind::CollapseFile, 1), 1),
            ((RecordKind::ScanFile, 1), 1),
            ((RecordKind::ScanFile, -1), 1),
        ]);
        // The same order and counts a map gives.
        assert!(c.iter().map(|(k, n)| (*k, *n)).eq(want.clone()));
        assert_eq!(c.len(), 4);
        assert_eq!(c.get(&(RecordKind::ScanFile, 30)), Some(&2));
        assert_eq!(c.get(&(RecordKind::ScanPmd, 30)), None);
        assert!(c.clone().into_iter().eq(want));
        assert_eq!(c[&(RecordKind::ScanFile, 30)], 2);
        c.clear();
        assert!(c.is_empty());
    }

    fn ev(tp: RecordKind, tgid: u32, result: i32, name: &[u8]) -> Event {
        Event::decode(&record(tp, tgid, result, b"w", name)).unwrap()
    }

    #[test]
    fn counts_by_result_process_and_file() {
        let mut a = Aggregate::new(ResultTable::builtin());
        a.add(&ev(RecordKind::CollapseFile, 7, 30, b"f1"));
        a.add(&ev(RecordKind::CollapseFile, 7, 30, b"f1"));
        a.add(&ev(RecordKind::ScanFile, 7, 10, b"f1"));
        let f2 = ev(RecordKind::CollapseFile, 8, 5, b"f2");
        a.add(&f2);
        assert_eq!(a.delivered_total, 4);
        assert_eq!(a.delivered[&(RecordKind::CollapseFile, 30)], 2);
        let p = a.process(7).unwrap();
        assert_eq!(failures(&p.results, &a.table), 2);
        assert_eq!(dominant(&p.results, true, &a.table), Some(30));
        assert_eq!(dominant(&p.results, false, &a.table), Some(30));
        // Filed under its path within the mount (the record's directories are cut).
        assert_eq!(file_key(&f2), b".../top/sub/f2");
        let f = &a.files[&file_key(&f2)];
        assert_eq!(f.results[&(RecordKind::CollapseFile, 5)], 1);
        assert_eq!((f.name.as_slice(), f.inode, f.dev), (&b"f2"[..], 16, 17));
        // pte_mapped_hugepage is a success: not in recent failures.
        assert_eq!(a.recent_failures.len(), 3);
    }

    /// An event of thread 7 inside the MADV_COLLAPSE call `call_ns` (the call's own record
    /// when `tp` is `MadviseCall`: it has no file).
    fn with_call(tp: RecordKind, result: i32, call_ns: u64) -> Event {
        let name: &[u8] = if tp == RecordKind::MadviseCall {
            b""
        } else {
            b"f"
        };
        let mut e = ev(tp, 7, result, name);
        e.call_ns = call_ns;
        e
    }

    #[test]
    fn calls_are_joined_with_the_results_inside_them() {
        let mut a = Aggregate::new(ResultTable::builtin());
        // Call 100: page_filled then EAGAIN. Call 200: success. A khugepaged event (no call).
        a.add(&with_call(RecordKind::CollapseFile, 30, 100));
        a.add(&with_call(RecordKind::ScanFile, 30, 100));
        a.add(&ev(RecordKind::ScanFile, 7, 1, b"g"));
        a.add(&with_call(RecordKind::MadviseCall, 11, 100));
        a.add(&with_call(RecordKind::ScanFile, 10, 200));
        a.add(&with_call(RecordKind::MadviseCall, 0, 200));
        a.add(&with_call(RecordKind::ScanFile, 16, 300)); // its call never returned
        let c = &a.callers[&7];
        assert_eq!(c.by_errno[&11].calls, 1);
        assert_eq!(c.by_errno[&11].results[&(RecordKind::CollapseFile, 30)], 1);
        assert_eq!(c.by_errno[&11].results[&(RecordKind::ScanFile, 30)], 1);
        assert_eq!(c.by_errno[&0].results[&(RecordKind::ScanFile, 10)], 1);
        assert_eq!(a.pending_events(), 1);
        // Call records are neither collapse events nor files.
        let p = a.process(7).unwrap();
        assert_eq!(events(&p.results), 5);
        assert_eq!(failures(&p.results, &a.table), 3);
        assert_eq!(a.files.len(), 2);
    }

    #[test]
    fn a_call_whose_record_never_came_is_unjoined_when_the_next_call_begins() {
        let mut a = Aggregate::new(ResultTable::builtin());
        // Call 100's two events; its record was dropped. Call 200 begins on the same thread.
        a.add(&with_call(RecordKind::CollapseFile, 30, 100));
        a.add(&with_call(RecordKind::ScanFile, 30, 100));
        assert_eq!((a.pending_events(), a.unjoined_events), (2, 0));
        a.add(&with_call(RecordKind::ScanFile, 10, 200));
        assert_eq!((a.pending_events(), a.unjoined_events), (1, 2));
        a.add(&with_call(RecordKind::MadviseCall, 0, 200));
        // Call 200 is filed with its own event only.
        let c = &a.callers[&7];
        assert_eq!(c.by_errno.len(), 1);
        assert_eq!(c.by_errno[&0].calls, 1);
        let joined: Vec<_> = c.by_errno[&0].results.iter().collect();
        assert_eq!(joined, [(&(RecordKind::ScanFile, 10), &1)]);
        assert_eq!((a.pending_events(), a.unjoined_events), (0, 2));
        // A record of call 100 arriving late joins nothing and is counted as a call.
        a.add(&with_call(RecordKind::MadviseCall, 11, 100));
        assert!(a.callers[&7].by_errno[&11].results.is_empty());
    }

    #[test]
    fn kernel_counts_are_deltas_from_the_baseline() {
        let mut a = Aggregate::new(ResultTable::builtin());
        let mut k = KernelCounters::default();
        k.counts[1][30] = 5;
        k.drops[0] = 2;
        a.set_baseline(k.clone());
        k.counts[1][30] = 9;
        k.counts[0][63] = 1;
        k.drops[0] = 3;
        a.set_kernel(k);
        let r = a.kernel_results();
        assert_eq!(r[&(RecordKind::CollapseFile, 30)], 4);
        assert_eq!(r[&(RecordKind::ScanFile, -1)], 1);
        assert_eq!(a.kernel().drops[0], 1);
    }
}
