//! End to end on the real kernel, as root: attach `collapse-trace stat`, run
//! `collapse-trace provoke all` as a child, and check the counts for that pid against two
//! independent truths: ftrace's own record of the same run (a private instance), and the
//! errno the workload got from each MADV_COLLAPSE.
//!
//! These tests fail, never skip, when they cannot run: CI must prove the kernel path.

mod common;

use common::ftrace::FtraceInstance;
use common::*;

use std::{
    collections::BTreeMap,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use collapse_trace::{
    capture::text::parse_line, export::json::Snapshot, kernel::tracefs::Tracefs,
    model::results::madvise_errno,
};

type Counts = BTreeMap<(String, String), u64>;

fn ours_for(snap: &Snapshot, tgid: u32) -> Counts {
    let p = snap
        .processes
        .iter()
        .find(|p| p.tgid == tgid)
        .unwrap_or_else(|| panic!("collapse-trace saw no events from pid {tgid}"));
    assert_eq!(
        p.origin, "madvise",
        "a MADV_COLLAPSE caller is not a kernel thread"
    );
    p.results
        .iter()
        .map(|r| ((r.tracepoint.clone(), r.result.clone()), r.count))
        .collect()
}

/// The huge_memory events only (ftrace's instance records those; calls are checked against
/// the workload's own tally).
fn events_only(c: &Counts) -> Counts {
    c.iter()
        .filter(|((tp, _), _)| tp != "madvise_collapse")
        .map(|(k, v)| (k.clone(), *v))
        .collect()
}

fn ftrace_for(text: &str, tgid: u32) -> Counts {
    let mut c = Counts::new();
    for l in text.lines().filter_map(parse_line) {
        if l.tgid == Some(tgid) {
            let result = l.result().expect("result field").to_string();
            *c.entry((l.event, result)).or_default() += 1;
        }
    }
    c
}

#[test]
fn stat_counts_equal_ftrace_and_the_workloads_errnos() {
    check_against_ftrace(&[]);
}

/// The same check with every field read through `bpf_probe_read_kernel` at the offsets from
/// tracefs: the path a kernel whose fields moved takes.
#[test]
fn the_probe_read_path_counts_the_same() {
    check_against_ftrace(&["--force-probe-read"]);
}

fn check_against_ftrace(extra: &[&str]) {
    require_root();
    let _serial = serial();
    let tracefs = Tracefs::open(None).expect("tracefs");
    // The workload runs under a name of its own; both collapse-trace (in BPF) and ftrace (its
    // own event filter) keep only that task, so other work on the machine cannot interfere.
    let comm = format!("ct-f{}", std::process::id() % 1_000_000);
    let instance = FtraceInstance::create(
        &tracefs,
        &format!("collapse-trace-e2e-{}", std::process::id()),
        &[
            "huge_memory/mm_khugepaged_scan_file",
            "huge_memory/mm_khugepaged_collapse_file",
            "huge_memory/mm_khugepaged_scan_pmd",
            "huge_memory/mm_collapse_huge_page",
        ],
        Some(&format!("comm == \"{comm}\"")),
        16384,
    )
    .expect("private ftrace instance");

    let mut args = vec!["stat", "--json", "--comm", &comm];
    args.extend_from_slice(extra);
    let stat = start_attached(&args);
    let tally = provoke(&["all", "--comm", &comm]);
    let json = sigint_and_wait(stat);
    instance.stop().unwrap();
    let trace = instance.read().expect("ftrace record");
    let dir = instance.dir().to_path_buf();
    drop(instance);
    assert!(!dir.exists(), "the ftrace instance was not removed");

    let snap: Snapshot = serde_json::from_str(&json).expect("stat --json parses");
    assert_eq!(snap.schema, "collapse-trace.stat/2");
    let ours = ours_for(&snap, tally.pid);
    let truth = ftrace_for(&trace, tally.pid);
    assert!(
        !truth.is_empty(),
        "ftrace saw nothing from pid {}",
        tally.pid
    );
    assert_eq!(
        events_only(&ours),
        truth,
        "collapse-trace vs ftrace, per tracepoint and result"
    );

    // Nothing lost, and the kernel counters account for every event.
    assert_eq!(snap.totals.dropped, 0);
    assert_eq!(
        snap.totals.delivered,
        snap.totals.events + snap.totals.calls
    );

    // The workload's errnos. Every MADV_COLLAPSE call emits one scan_file event carrying its
    // final result, so the errno classes of those results must equal the tally exactly.
    let mut expected: BTreeMap<String, u64> = BTreeMap::new();
    let mut calls = 0;
    let mut ok = 0;
    for s in &tally.scenarios {
        assert!(
            s.skipped.is_none(),
            "{} skipped: {:?}",
            s.scenario,
            s.skipped
        );
        calls += s.calls;
        ok += s.ok;
        for (e, n) in &s.errnos {
            *expected.entry(e.clone()).or_default() += n;
        }
    }
    let mut seen: BTreeMap<String, u64> = BTreeMap::new();
    let mut seen_ok = 0;
    let mut scans = 0;
    for ((tp, result), n) in &ours {
        if tp == "mm_khugepaged_scan_file" || tp == "mm_khugepaged_scan_pmd" {
            scans += n;
            match madvise_errno(result) {
                Some(e) => *seen.entry(e.to_string()).or_default() += n,
                None => seen_ok += n,
            }
        }
    }
    assert_eq!(scans, calls, "one scan event per MADV_COLLAPSE call");
    assert_eq!(seen_ok, ok, "successful calls vs success results");
    assert_eq!(seen, expected, "errnos vs the results behind them");

    // The calls as collapse-trace saw them from the syscall exits: the same errnos.
    let mut calls_seen: BTreeMap<String, u64> = BTreeMap::new();
    for ((tp, errno), n) in &ours {
        if tp == "madvise_collapse" && errno != "ok" {
            calls_seen.insert(errno.clone(), *n);
        }
    }
    assert_eq!(
        calls_seen, expected,
        "madvise exits vs the workload's errnos"
    );
    assert_eq!(
        ours.get(&("madvise_collapse".into(), "ok".into()))
            .copied()
            .unwrap_or(0),
        ok
    );

    // The join: each errno of this caller, with the final results of the ranges behind it.
    let caller = snap
        .callers
        .iter()
        .find(|c| c.tgid == tally.pid)
        .expect("the workload is a MADV_COLLAPSE caller");
    assert_eq!(caller.calls, calls);
    // The comm as the kernel side read it: plain loads at task_struct.comm's BTF offset, or
    // the comm helper on the probe-read path.
    assert_eq!(caller.comm, comm, "the caller's comm");
    for e in &caller.errnos {
        let scans: u64 = e
            .results
            .iter()
            .filter(|r| r.tracepoint.contains("scan"))
            .map(|r| r.count)
            .sum();
        assert_eq!(scans, e.calls, "{}: one final result per call", e.errno);
        for r in e.results.iter().filter(|r| r.tracepoint.contains("scan")) {
            let class = madvise_errno(&r.result).unwrap_or("ok");
            assert_eq!(class, e.errno, "{} behind {}", r.result, e.errno);
        }
    }

    // The seed patch's cases, by scenario.
    let by = |name: &str| tally.scenarios.iter().find(|s| s.scenario == name).unwrap();
    let collapse = by("collapse");
    assert_eq!(collapse.ok, collapse.calls, "every full range collapses");
    let uffd = by("uffd-holes");
    let ebusy = uffd.errnos.get("EBUSY").copied().unwrap_or(0);
    assert_eq!(
        ebusy, uffd.calls,
        "every uffd-holes call is refused with EBUSY"
    );
    let key = |r: &str| ("mm_khugepaged_collapse_file".to_string(), r.to_string());
    assert_eq!(ours.get(&key("exceed_none_pte")).copied(), Some(ebusy));
    assert!(
        ours.get(&key("page_filled")).copied().unwrap_or(0) >= 1,
        "the page-filled race produced no page_filled in {} tries",
        by("page-filled").calls
    );

    // The anonymous side: kept apart from the file side, and it succeeds.
    let anon = by("anon");
    let key_anon = |r: &str| ("mm_collapse_huge_page".to_string(), r.to_string());
    assert_eq!(anon.ok, anon.calls);
    assert_eq!(ours.get(&key_anon("succeeded")).copied(), Some(anon.ok));
}

#[test]
fn pid_filter_counts_only_that_process_in_the_kernel() {
    require_root();
    let _serial = serial();
    // A filter for a pid that does nothing: the workload's events must not be counted.
    let idle = Command::new("sleep")
        .arg("30")
        .spawn()
        .expect("spawn sleep");
    let pid = idle.id().to_string();
    let stat = start_attached(&["stat", "--json", "--pid", &pid]);
    let tally = provoke(&["collapse", "-n", "5"]);
    assert_eq!(tally.scenarios[0].ok, 5);
    let snap: Snapshot = serde_json::from_str(&sigint_and_wait(stat)).unwrap();
    let mut idle = idle;
    let _ = idle.kill();
    let _ = idle.wait();
    assert_eq!(snap.filters.pid, Some(pid.parse().unwrap()));
    assert_eq!(snap.totals.events, 0, "filtered in the kernel: {snap:?}");
    assert!(snap.processes.is_empty());
}

#[test]
fn duration_stops_by_itself_and_text_output_names_results() {
    require_root();
    let _serial = serial();
    let comm = format!("ct-d{}", std::process::id() % 1_000_000);
    let start = Instant::now();
    let child = start_attached(&["stat", "--duration", "4s", "--comm", &comm]);
    let tally = provoke(&["uffd-holes", "-n", "3", "--comm", &comm]);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert!(start.elapsed() < Duration::from_secs(20));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("exceed_none_pte"), "{text}");
    assert!(text.contains(&tally.pid.to_string()), "{text}");
}

#[test]
fn doctor_reads_this_kernel() {
    require_root();
    let out = Command::new(BIN).arg("doctor").output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("read from the kernel's tracepoint format"),
        "{text}"
    );
    assert!(text.contains("=page_filled"), "{text}");
    assert!(text.contains("verdict: ready to trace"), "{text}");
}

#[test]
fn a_tracefs_without_the_tracepoints_is_a_clear_error() {
    let dir = std::env::temp_dir().join(format!("ct-empty-tracefs-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("events/huge_memory")).unwrap();
    let out = Command::new(BIN)
        .args(["doctor", "--tracefs"])
        .arg(&dir)
        .output()
        .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(4), "{text}");
    assert!(
        text.contains("mm_khugepaged_scan_file") && text.contains("MISSING"),
        "{text}"
    );
}

#[test]
fn without_privileges_the_error_names_the_capabilities() {
    require_root(); // to drop them
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
        ])
        .arg(BIN)
        .args(["stat", "--duration", "1s"])
        .output()
        .expect("setpriv (util-linux) runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(
        err.contains("CAP_BPF") && err.contains("CAP_PERFMON") && err.contains("sudo"),
        "{err}"
    );
}

#[test]
fn a_kernel_lacking_one_tracepoint_still_gets_the_other() {
    require_root();
    let _serial = serial();
    // A tracefs copy that has scan_file's real format but no collapse_file.
    let real = Tracefs::open(None).expect("tracefs");
    let dir = std::env::temp_dir().join(format!("ct-one-tp-{}", std::process::id()));
    let ev = dir.join("events/huge_memory/mm_khugepaged_scan_file");
    std::fs::create_dir_all(&ev).unwrap();
    std::fs::copy(
        real.event_dir("huge_memory", "mm_khugepaged_scan_file")
            .join("format"),
        ev.join("format"),
    )
    .unwrap();
    let child = Command::new(BIN)
        .args(["stat", "--json", "--duration", "4s", "--tracefs"])
        .arg(&dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let tally = provoke(&["uffd-holes", "-n", "4"]);
    let out = child.wait_with_output().unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("no huge_memory:mm_khugepaged_collapse_file"),
        "{err}"
    );
    let snap: Snapshot = serde_json::from_slice(&out.stdout).unwrap();
    let attached: Vec<(&str, bool)> = snap
        .tracepoints
        .iter()
        .map(|t| (t.name.as_str(), t.attached))
        .collect();
    assert_eq!(
        attached,
        [
            ("mm_khugepaged_scan_file", true),
            ("mm_khugepaged_collapse_file", false),
            ("mm_khugepaged_scan_pmd", false),
            ("mm_collapse_huge_page", false),
            ("madvise_collapse", false),
        ]
    );
    let ours = events_only(&ours_for(&snap, tally.pid));
    assert_eq!(
        ours,
        Counts::from([(
            (
                "mm_khugepaged_scan_file".to_string(),
                "exceed_none_pte".to_string()
            ),
            4
        )])
    );
}

#[test]
fn a_tiny_ring_drops_but_every_event_is_accounted_for() {
    require_root();
    let _serial = serial();
    // Filter by the workload's own comm so the kernel counters hold only its events.
    let comm = format!("ct-e{}", std::process::id() % 1_000_000);
    let tracefs = Tracefs::open(None).expect("tracefs");
    let instance = FtraceInstance::create(
        &tracefs,
        &format!("collapse-trace-overflow-{}", std::process::id()),
        &[
            "huge_memory/mm_khugepaged_scan_file",
            "huge_memory/mm_khugepaged_collapse_file",
        ],
        Some(&format!("comm == \"{comm}\"")),
        8192,
    )
    .expect("private ftrace instance");
    let stat = start_attached(&[
        "stat",
        "--json",
        "--ring-size",
        "4096",
        "--stall-reader",
        // Rings and reader sized for more CPUs than the machine has (the big-machine
        // simulation the bench uses): every ring is drained, and the counts stay exact.
        "--possible-cpus",
        "8",
        "--comm",
        &comm,
    ]);
    let tally = provoke(&["collapse", "-n", "300", "--comm", &comm]);
    let snap: Snapshot = serde_json::from_str(&sigint_and_wait(stat)).unwrap();
    instance.stop().unwrap();
    let trace = instance.read().expect("ftrace record");
    drop(instance);
    let ftrace_events = trace.lines().filter_map(parse_line).count() as u64;
    eprintln!("tiny ring: {:?}", snap.totals);
    assert!(
        snap.totals.dropped > 0,
        "a 4 KiB ring with a stalled reader must overflow"
    );
    // 4 KiB over 8 CPUs is less than the floor of 4 records a CPU.
    let rings = snap.rings.expect("a live run reports its rings");
    assert_eq!((rings.cpus, rings.records_per_cpu), (8, 4), "{rings:?}");
    assert_eq!(rings.bytes_per_cpu, 4 * 544);
    assert_eq!(rings.bytes, 8 * rings.bytes_per_cpu);
    assert_eq!(
        snap.totals.delivered + snap.totals.dropped,
        snap.totals.events + snap.totals.calls
    );
    for t in &snap.tracepoints {
        assert_eq!(t.delivered + t.dropped, t.events, "{}", t.name);
    }
    // Two events per successful call, counted exactly in the kernel whatever was dropped,
    // and ftrace's own count of the same run agrees.
    assert_eq!(snap.totals.events, 2 * tally.scenarios[0].calls);
    assert_eq!(
        snap.totals.events, ftrace_events,
        "kernel counters vs ftrace"
    );
}

#[test]
fn no_calls_leaves_out_the_madvise_hooks() {
    require_root();
    let _serial = serial();
    let comm = format!("ct-n{}", std::process::id() % 1_000_000);
    let stat = start_attached(&["stat", "--json", "--no-calls", "--comm", &comm]);
    let tally = provoke(&["uffd-holes", "-n", "3", "--comm", &comm]);
    let snap: Snapshot = serde_json::from_str(&sigint_and_wait(stat)).unwrap();
    let calls = snap
        .tracepoints
        .iter()
        .find(|t| t.name == "madvise_collapse")
        .unwrap();
    assert!(!calls.attached && calls.events == 0);
    assert_eq!(snap.totals.calls, 0);
    assert_eq!(snap.totals.events, 2 * tally.scenarios[0].calls);
    assert!(snap.callers.is_empty());
}

/// A MADV_COLLAPSE call that fails before scanning anything (here: a range marked
/// MADV_NOHUGEPAGE, EINVAL) makes no huge_memory event, so no event opens its call: the
/// syscall exit must still count it and send its record under an id of its own.
#[test]
fn a_call_that_scans_nothing_is_counted_and_recorded() {
    require_root();
    let _serial = serial();
    let me = std::process::id();
    let stat = start_attached(&["stat", "--json", "--pid", &me.to_string()]);
    const LEN: usize = 4 << 20;
    const CALLS: u64 = 5;
    // SAFETY: a fresh private anonymous mapping, marked, called on and unmapped here.
    unsafe {
        let p = libc::mmap(
            std::ptr::null_mut(),
            LEN,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        assert_ne!(p, libc::MAP_FAILED);
        assert_eq!(libc::madvise(p, LEN, libc::MADV_NOHUGEPAGE), 0);
        for _ in 0..CALLS {
            let r = libc::madvise(p, LEN, 25 /* MADV_COLLAPSE */);
            let errno = std::io::Error::last_os_error().raw_os_error();
            assert_eq!(
                (r, errno),
                (-1, Some(libc::EINVAL)),
                "MADV_COLLAPSE on NOHUGEPAGE"
            );
        }
        libc::munmap(p, LEN);
    }
    let snap: Snapshot = serde_json::from_str(&sigint_and_wait(stat)).unwrap();
    assert_eq!(snap.totals.events, 0, "no scan happened");
    assert_eq!(snap.totals.calls, CALLS);
    assert_eq!(snap.totals.delivered, CALLS, "one record per call");
    let caller = snap
        .callers
        .iter()
        .find(|c| c.tgid == me)
        .expect("this process is a caller");
    assert_eq!(caller.calls, CALLS);
    assert_eq!(caller.errnos.len(), 1, "{:?}", caller.errnos);
    assert_eq!(
        (caller.errnos[0].errno.as_str(), caller.errnos[0].calls),
        ("EINVAL", CALLS)
    );
    assert!(caller.errnos[0].results.is_empty());
}
