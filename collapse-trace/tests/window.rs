//! One counting window, on a machine that is already busy (real kernel, as root): the tool
//! attaches to and detaches from a MADV_COLLAPSE storm that started before it and goes on
//! after it, and within each run the kernel counters, the records and the calls agree.

mod common;

use std::{
    process::{Child, Command, Stdio},
    time::Duration,
};

use collapse_trace::{capture::text::parse_line, export::json::Snapshot, kernel::tracefs::Tracefs};
use common::ftrace::FtraceInstance;
use common::{BIN, require_root, serial};

/// A storm of MADV_COLLAPSE calls on an already collapsed range (one `scan_file` event and
/// one successful call each), paced, under its own comm, running until killed.
fn storm(comm: &str, rate: &str) -> Child {
    let child = Command::new(BIN)
        .args([
            "provoke",
            "storm",
            "--range",
            "collapsed",
            "--rate",
            rate,
            "--duration",
            "120s",
            "--comm",
            comm,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the storm");
    // Running for a while before the first attach: the point of the test.
    std::thread::sleep(Duration::from_millis(700));
    child
}

fn stop(mut child: Child) {
    // SAFETY: kill with a pid we own.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let _ = child.wait();
}

/// `stat -d D --json --comm C`, attached while the storm runs.
fn stat(comm: &str, duration: &str) -> Snapshot {
    let out = Command::new(BIN)
        .args(["stat", "-d", duration, "--json", "--comm", comm])
        .stderr(Stdio::inherit())
        .output()
        .expect("run stat");
    assert!(out.status.success(), "stat exited with {}", out.status);
    serde_json::from_slice(&out.stdout).expect("stat --json")
}

fn row<'a>(s: &'a Snapshot, name: &str) -> &'a collapse_trace::export::json::TracepointRow {
    s.tracepoints.iter().find(|t| t.name == name).unwrap()
}

#[test]
fn attach_and_detach_on_a_busy_machine_twenty_times() {
    require_root();
    let _k = serial();
    let comm = format!("ct-w{}", std::process::id() % 1_000_000);
    let load = storm(&comm, "20000");
    let mut worst_call_gap = 0i64;
    for run in 0..20 {
        let s = stat(&comm, "300ms");
        for t in &s.tracepoints {
            assert_eq!(
                t.delivered + t.dropped,
                t.events,
                "run {run}, {}: delivered {} + dropped {} != counted {}",
                t.name,
                t.delivered,
                t.dropped,
                t.events
            );
        }
        let scans = row(&s, "mm_khugepaged_scan_file").events;
        let calls = s.totals.calls;
        assert!(
            scans > 1000,
            "run {run}: the storm made only {scans} events"
        );
        // Each call makes one scan_file event; only the one call in flight at each end of
        // the window (one thread) may be counted on one side only.
        let gap = calls as i64 - scans as i64;
        worst_call_gap = worst_call_gap.max(gap.abs());
        assert!(
            gap.abs() <= 1,
            "run {run}: {calls} calls but {scans} scan_file events"
        );
        assert_eq!(s.totals.failed_calls, 0, "run {run}: a call failed");
    }
    stop(load);
    eprintln!("worst calls - events difference over 20 runs: {worst_call_gap}");
}

#[test]
fn one_window_lies_within_ftrace_and_equals_the_kernel_counters() {
    require_root();
    let _k = serial();
    let comm = format!("ct-v{}", std::process::id() % 1_000_000);
    let tracefs = Tracefs::open(None).expect("tracefs");
    let load = storm(&comm, "20000");
    // Opened before the tool attaches, closed after it detached.
    let instance = FtraceInstance::create(
        &tracefs,
        &format!("collapse-trace-window-{}", std::process::id()),
        &["huge_memory/mm_khugepaged_scan_file"],
        Some(&format!("comm == \"{comm}\"")),
        16384,
    )
    .expect("private ftrace instance");
    let s = stat(&comm, "1s");
    instance.stop().unwrap();
    let trace = instance.read().expect("ftrace record");
    drop(instance);
    stop(load);
    let ftrace_events = trace.lines().filter_map(parse_line).count() as u64;
    let t = row(&s, "mm_khugepaged_scan_file");
    assert!(t.events > 10_000, "the storm made only {} events", t.events);
    assert_eq!(t.delivered + t.dropped, t.events);
    assert!(
        t.events < ftrace_events,
        "the window ({}) is not inside ftrace's longer one ({ftrace_events})",
        t.events
    );
}

#[test]
fn a_storm_stops_at_sigterm_with_an_exact_tally() {
    require_root();
    for sig in [libc::SIGTERM, libc::SIGINT] {
        let child = Command::new(BIN)
            .args([
                "provoke",
                "storm",
                "-n",
                "4000000000",
                "--json",
                "--comm",
                "ct-stop",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(800));
        let sent = std::time::Instant::now();
        // SAFETY: kill with a pid we own.
        unsafe { libc::kill(child.id() as i32, sig) };
        let out = child.wait_with_output().unwrap();
        assert!(
            sent.elapsed() < Duration::from_secs(3),
            "signal {sig}: the storm took {:?} to stop",
            sent.elapsed()
        );
        assert_eq!(out.status.code(), Some(128 + sig), "signal {sig}");
        let tally: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let calls = tally["scenarios"][0]["calls"].as_u64().unwrap();
        assert!(calls > 0 && calls < 4_000_000_000, "{calls}");
        assert_eq!(tally["scenarios"][0]["ok"].as_u64(), Some(calls));
        assert!(tally["interrupted"].is_string());
    }
}
