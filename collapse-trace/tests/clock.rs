//! End to end on the real kernel, as root: event times and call ids.
//!
//! By default the kernel programs read the clock once per tick, shared by all CPUs (a clock
//! read costs 15-90 ns in a guest); `--precise-time` reads it for every record. Either way every time must
//! fall inside the workload's own run, and every MADV_COLLAPSE call must keep a unique id on
//! its thread (the errno join depends on it), even when many calls share one tick.
//!
//! Records come from one ring per CPU, merged by time: a thread moved between CPUs while it
//! makes calls must still see its events before its call records, and times never go back.
//!
//! These tests fail, never skip, when they cannot run.

mod common;

use common::*;

use std::collections::{BTreeMap, BTreeSet};

use collapse_trace::{export::ndjson::EventLine, kernel::stream::monotonic_ns};
/// Runs `provoke ARGS --json` while moving it from CPU to CPU every few microseconds, so that
/// some of its calls start on one CPU and end on another. Returns its tally and the moves.
fn provoke_migrating(args: &[&str]) -> (collapse_trace::provoke::Tally, u64) {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert!(cpus >= 2, "moving a thread between CPUs needs two of them");
    let child = std::process::Command::new(BIN)
        .arg("provoke")
        .args(args)
        .arg("--json")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn provoke");
    let pid = child.id() as libc::pid_t;
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mover = {
        let done = done.clone();
        std::thread::spawn(move || {
            let mut moves = 0u64;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                // SAFETY: a zeroed cpu_set_t with one CPU set, passed by pointer and size.
                let ok = unsafe {
                    let mut set: libc::cpu_set_t = std::mem::zeroed();
                    libc::CPU_SET((moves % 2) as usize, &mut set);
                    libc::sched_setaffinity(pid, size_of::<libc::cpu_set_t>(), &set) == 0
                };
                moves += u64::from(ok);
                std::thread::sleep(std::time::Duration::from_micros(20));
            }
            moves
        })
    };
    let out = child.wait_with_output().expect("wait for provoke");
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let moves = mover.join().unwrap();
    assert!(out.status.success(), "provoke failed");
    (
        serde_json::from_slice(&out.stdout).expect("provoke --json output"),
        moves,
    )
}

fn check(extra: &[&str]) {
    check_with(extra, false);
}

fn check_with(extra: &[&str], migrate: bool) {
    require_root();
    let _serial = serial();
    let comm = format!(
        "ct-k{}{}{}",
        extra.len(),
        u8::from(migrate),
        std::process::id() % 100_000
    );
    let mut args = vec!["stat", "--json", "--follow", "--events", "--comm", &comm];
    args.extend_from_slice(extra);
    let stat = start_attached(&args);
    let before = monotonic_ns();
    // Thousands of calls on one thread in a few ticks; 6,000 records fit in the default ring
    // even while the pipe to this test is full.
    let storm = ["storm", "--range", "empty", "-n", "2000", "--comm", &comm];
    let tally = if migrate {
        // Paced to last ~40 ms, so that the mover gets to move it many times.
        let mut paced = storm.to_vec();
        paced.extend(["--rate", "50000"]);
        let (tally, moves) = provoke_migrating(&paced);
        eprintln!("the workload was moved between CPUs {moves} times");
        assert!(
            moves > 10,
            "the workload was moved between CPUs {moves} times"
        );
        tally
    } else {
        provoke(&storm)
    };
    let after = monotonic_ns();
    let out = sigint_and_wait(stat);

    let lines: Vec<EventLine> = out
        .lines()
        .filter(|l| l.contains("\"collapse-trace.event/1\""))
        .map(|l| serde_json::from_str(l).expect("an event line"))
        .collect();
    let calls: Vec<&EventLine> = lines
        .iter()
        .filter(|e| e.tracepoint == "madvise_collapse")
        .collect();
    let made: u64 = tally.scenarios.iter().map(|s| s.calls).sum();
    assert_eq!(calls.len() as u64, made, "one call record per call made");
    assert_eq!(
        lines.len() as u64,
        3 * made,
        "scan + collapse + call per call"
    );

    for e in &lines {
        assert!(
            (before..=after).contains(&e.ts_ns),
            "{} at {} outside the workload's run [{before}, {after}]",
            e.tracepoint,
            e.ts_ns
        );
    }
    // The CPUs' rings are merged by time: times never go back.
    for w in lines.windows(2) {
        assert!(w[0].ts_ns <= w[1].ts_ns, "time went back: {w:?}");
    }
    // And a call's events come before its call record, which the errno join needs.
    let mut seen: BTreeMap<(u32, u64), u32> = BTreeMap::new();
    for e in &lines {
        let id = (e.pid, e.call_ns.expect("every record here is in a call"));
        if e.tracepoint == "madvise_collapse" {
            assert_eq!(
                seen.get(&id),
                Some(&2),
                "call record before its events: {e:?}"
            );
        } else {
            *seen.entry(id).or_default() += 1;
        }
    }
    // Unique call ids per thread, and each event joins exactly one call.
    let mut ids = BTreeSet::new();
    for c in &calls {
        let id = c.call_ns.expect("a call record has its id");
        assert!(ids.insert((c.pid, id)), "call id {id} reused on {}", c.pid);
    }
    let mut per_call: BTreeMap<(u32, u64), u32> = BTreeMap::new();
    for e in lines.iter().filter(|e| e.tracepoint != "madvise_collapse") {
        let id = e.call_ns.expect("an event inside a MADV_COLLAPSE call");
        assert!(ids.contains(&(e.pid, id)), "event joins no call: {e:?}");
        *per_call.entry((e.pid, id)).or_default() += 1;
    }
    assert_eq!(per_call.len(), calls.len());
    assert!(per_call.values().all(|n| *n == 2), "2 events per call");
    let times: BTreeSet<u64> = calls.iter().map(|c| c.ts_ns).collect();
    if extra.contains(&"--precise-time") {
        // Each record is its own clock read: distinct times, not one per tick.
        assert!(times.len() as u64 > made / 2, "{} distinct", times.len());
    } else {
        // One clock read per tick, so calls share times: the ids above were unique anyway.
        assert!((times.len() as u64) < made / 10, "{} distinct", times.len());
    }
}

#[test]
fn tick_cached_times_stay_in_the_run_and_call_ids_stay_unique() {
    check(&[]);
}

#[test]
fn precise_times_stay_in_the_run() {
    check(&["--precise-time"]);
}

#[test]
fn a_thread_moving_between_cpus_keeps_time_order_and_the_join() {
    check_with(&[], true);
}
