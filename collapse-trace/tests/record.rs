//! End to end on the real kernel, as root: `record` while `provoke all` runs, then `report`
//! on the file must say what `stat --json` of the same run said, and what a private ftrace
//! instance (its `trace` text, and that buffer through `trace-cmd report`) recorded of it.
//! A recorder killed with SIGKILL leaves a file `report` reads up to the cut.
//!
//! These tests fail, never skip, when they cannot run.

mod common;

use common::ftrace::FtraceInstance;
use common::*;

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::{Child, Command},
    time::Duration,
};

use collapse_trace::{
    export::json::{Report, Snapshot},
    kernel::tracefs::Tracefs,
};

fn stop(child: Child, sig: i32) -> std::process::Output {
    // SAFETY: kill with a pid we own.
    unsafe { libc::kill(child.id() as i32, sig) };
    child.wait_with_output().expect("wait for collapse-trace")
}

fn report(file: &Path) -> (Report, String) {
    let out = Command::new(BIN)
        .arg("report")
        .arg(file)
        .arg("--json")
        .output()
        .expect("run report");
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "report {}: {err}", file.display());
    (
        serde_json::from_slice(&out.stdout).expect("report --json"),
        err,
    )
}

fn tmp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("ct-rec-{}-{name}", std::process::id()))
}

type Counts = BTreeMap<(String, String), u64>;

/// Per kind and result, by name (numbers may differ between a record and a text capture).
fn counts(s: &Snapshot) -> Counts {
    let mut c = Counts::new();
    for t in &s.tracepoints {
        for r in &t.results {
            c.insert((t.name.clone(), r.result.clone()), r.count);
        }
    }
    c
}

/// Per caller errno: calls and the results behind them, by name.
fn joins(s: &Snapshot) -> BTreeMap<(u32, String), (u64, Counts)> {
    let mut j = BTreeMap::new();
    for c in &s.callers {
        for e in &c.errnos {
            let r = e
                .results
                .iter()
                .map(|r| ((r.tracepoint.clone(), r.result.clone()), r.count))
                .collect();
            j.insert((c.tgid, e.errno.clone()), (e.calls, r));
        }
    }
    j
}

#[test]
fn report_of_a_record_equals_stat_and_the_ftrace_and_trace_cmd_captures() {
    require_root();
    let _serial = serial();
    let comm = format!("ct-r{}", std::process::id() % 1_000_000);
    let tracefs = Tracefs::open(None).expect("tracefs");
    let inst_name = format!("ct-record-{}", std::process::id());
    let instance = FtraceInstance::create(
        &tracefs,
        &inst_name,
        &[
            "huge_memory/mm_khugepaged_scan_file",
            "huge_memory/mm_khugepaged_collapse_file",
            "huge_memory/mm_khugepaged_scan_pmd",
            "huge_memory/mm_collapse_huge_page",
            "syscalls/sys_enter_madvise",
            "syscalls/sys_exit_madvise",
        ],
        Some(&format!("comm == \"{comm}\"")),
        16384,
    )
    .expect("private ftrace instance");

    let rec = tmp("run.ndjson.zst");
    let stat = start_attached(&["stat", "--json", "--comm", &comm]);
    let record = start_attached(&["record", "-o", rec.to_str().unwrap(), "--comm", &comm]);
    let tally = provoke(&["all", "--comm", &comm]);
    let out = stop(stat, libc::SIGINT);
    assert!(out.status.success());
    let stat_snap: Snapshot = serde_json::from_slice(&out.stdout).unwrap();
    let out = stop(record, libc::SIGTERM);
    assert!(out.status.success(), "record exited with {}", out.status);
    instance.stop().unwrap();
    let trace = tmp("trace.txt");
    std::fs::write(&trace, instance.read().expect("ftrace record")).unwrap();

    // 1. The record, through report: stat's document in every count (not the duration).
    let (rep, err) = report(&rec);
    assert!(!rep.capture.cut_short, "{err}");
    assert!(rep.capture.compressed && rep.capture.kernel_counts);
    let mut ours = rep.snapshot.clone();
    let mut theirs = stat_snap.clone();
    ours.duration_s = 0.0;
    theirs.duration_s = 0.0;
    // A record does not say which clock its times came from (stat knows: the tick clock).
    assert_eq!(
        serde_json::to_value(ours.attempts.clock).unwrap(),
        "unknown"
    );
    ours.attempts.clock = theirs.attempts.clock;
    // Each tracer's programs cache their own tick clock, so two tracers of one run time the
    // same call a few us apart: latencies agree in samples, not in nanoseconds.
    let samples = |s: &Snapshot| {
        let a = &s.attempts;
        let n = |v: &[collapse_trace::export::attempts::LatencyRow]| {
            v.iter().map(|l| (l.outcome, l.count)).collect::<Vec<_>>()
        };
        (n(&a.latency), n(&a.call_latency))
    };
    assert_eq!(samples(&ours), samples(&theirs), "latency samples");
    ours.attempts.latency = theirs.attempts.latency.clone();
    ours.attempts.call_latency = theirs.attempts.call_latency.clone();
    // The rings are a fact of the live run; a report has none.
    assert!(theirs.rings.is_some() && ours.rings.is_none());
    ours.rings = theirs.rings;
    assert_eq!(
        ours, theirs,
        "report of the record vs stat --json of the same run"
    );
    assert!(theirs.totals.events > 0 && theirs.totals.dropped == 0);
    assert!(theirs.callers.iter().any(|c| c.tgid == tally.pid));

    // 2. The ftrace instance's text, through report: the same numbers.
    let (ftr, _) = report(&trace);
    assert_eq!(ftr.capture.format.name(), "ftrace");
    assert_eq!(
        ftr.capture.skipped_lines, 0,
        "{:?}",
        ftr.capture.first_skipped
    );
    assert_eq!(
        counts(&ftr.snapshot),
        counts(&rep.snapshot),
        "ftrace text vs record"
    );
    assert_eq!(
        joins(&ftr.snapshot),
        joins(&rep.snapshot),
        "errno join: ftrace vs record"
    );
    let t = |s: &Snapshot| {
        (
            s.totals.events,
            s.totals.successes,
            s.totals.calls,
            s.totals.failed_calls,
        )
    };
    assert_eq!(t(&ftr.snapshot), t(&rep.snapshot));
    assert_eq!(
        ftr.snapshot.attempts.by_outcome, rep.snapshot.attempts.by_outcome,
        "attempts: ftrace vs record"
    );
    let kinds = |r: &Report| {
        r.findings
            .iter()
            .map(|f| (f.kind.clone(), f.count))
            .collect::<Vec<_>>()
    };
    assert_eq!(kinds(&ftr), kinds(&rep), "findings");

    // 3. The same buffer through trace-cmd (Debian package trace-cmd): extract, report.
    let dat = tmp("trace.dat");
    // trace-cmd copies /proc/kallsyms, which changes whenever anyone on the machine loads
    // or unloads a BPF program; it then fails with "error in size of file": try again.
    let mut tries = 0;
    loop {
        let ex = Command::new("trace-cmd")
            .args(["extract", "-B", &inst_name, "-o"])
            .arg(&dat)
            .output()
            .expect("trace-cmd (Debian package trace-cmd) runs");
        tries += 1;
        if ex.status.success() {
            break;
        }
        let err = String::from_utf8_lossy(&ex.stderr);
        assert!(
            tries < 10 && err.contains("kallsyms"),
            "trace-cmd extract: {err}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let txt = Command::new("trace-cmd")
        .arg("report")
        .arg("-i")
        .arg(&dat)
        .output()
        .unwrap();
    assert!(txt.status.success());
    let tc = tmp("trace-cmd.txt");
    std::fs::write(&tc, &txt.stdout).unwrap();
    let (tcr, _) = report(&tc);
    assert_eq!(tcr.capture.format.name(), "trace-cmd");
    assert_eq!(
        counts(&tcr.snapshot),
        counts(&rep.snapshot),
        "trace-cmd vs record"
    );
    assert_eq!(
        joins(&tcr.snapshot),
        joins(&rep.snapshot),
        "errno join: trace-cmd vs record"
    );
    drop(instance);
    for f in [&rec, &trace, &dat, &tc] {
        let _ = std::fs::remove_file(f);
    }
}

#[test]
fn a_record_killed_with_sigkill_is_read_up_to_the_cut() {
    require_root();
    let _serial = serial();
    for name in ["killed.ndjson", "killed.ndjson.zst"] {
        let comm = format!("ct-k{}", std::process::id() % 1_000_000);
        let rec = tmp(name);
        let record = start_attached(&["record", "-o", rec.to_str().unwrap(), "--comm", &comm]);
        let tally = provoke(&["collapse", "-n", "40", "--comm", &comm]);
        // Let a drain batch pass (50 ms ticks), then kill without warning.
        std::thread::sleep(Duration::from_millis(500));
        let out = stop(record, libc::SIGKILL);
        assert!(!out.status.success());
        let (rep, err) = report(&rec);
        assert!(rep.capture.cut_short, "{name}: {:?}", rep.capture);
        assert!(err.contains("cut short"), "{name}: {err}");
        assert!(!rep.capture.kernel_counts);
        // Every complete event was read: each call is a collapse_file, a scan_file and
        // the call itself.
        assert_eq!(rep.capture.events, 3 * tally.scenarios[0].calls, "{name}");
        assert_eq!(rep.snapshot.totals.calls, tally.scenarios[0].calls);
        if !name.ends_with(".zst") {
            let lines = std::fs::read(&rec).unwrap();
            assert_eq!(
                lines.iter().filter(|b| **b == b'\n').count() as u64,
                1 + rep.capture.events
            );
        }
        let _ = std::fs::remove_file(&rec);
    }
}

/// A signal in the first milliseconds (while attaching) still ends in a complete file and
/// exit 0: the handlers are installed before anything is loaded.
#[test]
fn a_record_stopped_while_attaching_leaves_a_complete_file() {
    require_root();
    let _k = serial();
    for (sig, delay_ms) in [(libc::SIGTERM, 30), (libc::SIGINT, 30), (libc::SIGTERM, 5)] {
        let path = tmp(&format!("early-{sig}-{delay_ms}.ndjson"));
        let _ = std::fs::remove_file(&path);
        let child = std::process::Command::new(BIN)
            .args(["record", "-o"])
            .arg(&path)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        let out = stop(child, sig);
        assert!(
            out.status.success(),
            "signal {sig} after {delay_ms} ms: exit {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let (report, _) = report(&path);
        assert!(
            !report.capture.cut_short,
            "signal {sig}: the file is cut short"
        );
        let _ = std::fs::remove_file(&path);
    }
}
