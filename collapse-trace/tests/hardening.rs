//! Hardening, end to end on the real kernel, as root (issue 7): two instances at once, signals
//! in every subcommand, command-line validation, hand-made tracepoint formats, hostile file
//! names, capabilities of the running daemon.
//!
//! Like tests/e2e.rs these fail, never skip, when they cannot run. Every kernel-facing test
//! filters by pid or by a comm unique to this test run (khugepaged and other engineers' tests
//! may produce events on this machine at the same time), and they run one at a time (SERIAL).

mod common;

use common::ftrace::FtraceInstance;
use common::*;

use std::{
    collections::{BTreeMap, BTreeSet},
    io::{BufRead, BufReader, Read as _},
    os::unix::ffi::OsStrExt as _,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::{Arc, Mutex, mpsc},
    time::{Duration, Instant},
};

use collapse_trace::{
    capture::text::parse_line, export::json::Snapshot, kernel::tracefs::Tracefs,
    model::results::ResultSource, provoke::Tally,
};

/// A running collapse-trace: its stderr is collected line by line (and echoed), stdout is
/// read to the end on a thread of its own, so a full pipe never blocks it. SIGKILLed and
/// reaped on drop if still running.
struct Running {
    name: String,
    child: Option<Child>,
    stderr: Arc<Mutex<Vec<String>>>,
    stdout: Option<std::thread::JoinHandle<Vec<u8>>>,
}

impl Running {
    /// Starts `bin ARGS` and waits (30 s at most) for a stderr line containing `ready`.
    fn start(bin: &Path, args: &[&str], ready: &str) -> Running {
        let mut child = Command::new(bin)
            .args(args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn collapse-trace");
        let name = format!("{} {}", bin.display(), args.join(" "));
        let stdout = child.stdout.take().unwrap();
        let out = std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = BufReader::new(stdout).read_to_end(&mut v);
            v
        });
        let stderr = child.stderr.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let ready = ready.to_string();
        let l2 = lines.clone();
        let tag = args.first().copied().unwrap_or("").to_string();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines() {
                let line = line.unwrap_or_default();
                eprintln!("[{tag}] {line}");
                let hit = line.contains(&ready);
                l2.lock().unwrap().push(line);
                if hit && let Some(tx) = tx.take() {
                    let _ = tx.send(());
                }
            }
        });
        let mut r = Running {
            name,
            child: Some(child),
            stderr: lines,
            stdout: Some(out),
        };
        if rx.recv_timeout(Duration::from_secs(30)).is_err() {
            let status = r.child.as_mut().unwrap().try_wait();
            panic!(
                "{} did not print {:?} within 30 s (status {status:?}); stderr: {:?}",
                r.name,
                r.ready_hint(),
                r.stderr()
            );
        }
        r
    }

    fn ready_hint(&self) -> &str {
        "its ready line"
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    fn stderr(&self) -> Vec<String> {
        self.stderr.lock().unwrap().clone()
    }

    /// Sends `sig`, waits (20 s at most) and returns (status, stdout).
    fn signal_and_wait(&mut self, sig: i32) -> (ExitStatus, Vec<u8>) {
        // SAFETY: kill with the pid of a child we have not reaped.
        unsafe { libc::kill(self.pid() as i32, sig) };
        self.wait(Duration::from_secs(20))
    }

    /// Waits for the exit (at most `timeout`), then for stdout's end.
    fn wait(&mut self, timeout: Duration) -> (ExitStatus, Vec<u8>) {
        let mut child = self.child.take().expect("running");
        let start = Instant::now();
        let status = loop {
            if let Some(st) = child.try_wait().expect("wait") {
                break st;
            }
            if start.elapsed() > timeout {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{} did not exit within {timeout:?}", self.name);
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let out = self.stdout.take().unwrap().join().unwrap();
        // Let the stderr thread see the last lines.
        std::thread::sleep(Duration::from_millis(50));
        (status, out)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A symlink to the binary named `comm`: a process exec'd through it has that comm, unique
/// to this test run, so `--comm` counts only our own workload.
fn workload_link(dir: &TempDir, comm: &str) -> PathBuf {
    assert!(comm.len() < 16);
    let link = dir.0.join(comm);
    std::os::unix::fs::symlink(BIN, &link).unwrap();
    link
}

fn unique_comm(tag: &str) -> String {
    let c = format!("{tag}{}", std::process::id());
    c[..c.len().min(15)].to_string()
}

type Counts = BTreeMap<(String, String), u64>;

/// The file tracepoints, which the ftrace instances here record.
fn is_file_event(tracepoint: &str) -> bool {
    matches!(
        tracepoint,
        "mm_khugepaged_scan_file" | "mm_khugepaged_collapse_file"
    )
}

/// Delivered file events of the given processes, summed, by (tracepoint, result).
fn ours_for(snap: &Snapshot, tgids: &[u32]) -> Counts {
    let mut c = Counts::new();
    for p in snap.processes.iter().filter(|p| tgids.contains(&p.tgid)) {
        for r in p.results.iter().filter(|r| is_file_event(&r.tracepoint)) {
            *c.entry((r.tracepoint.clone(), r.result.clone()))
                .or_default() += r.count;
        }
    }
    c
}

/// The kernel counters of a snapshot's file tracepoints by (tracepoint, result).
fn kernel_counts(s: &Snapshot) -> Counts {
    let mut m = Counts::new();
    for t in s.tracepoints.iter().filter(|t| is_file_event(&t.name)) {
        for r in &t.results {
            m.insert((t.name.clone(), r.result.clone()), r.count);
        }
    }
    m
}

fn ftrace_for(text: &str, tgids: &[u32]) -> Counts {
    let mut c = Counts::new();
    for l in text.lines().filter_map(parse_line) {
        if l.tgid.is_some_and(|t| tgids.contains(&t)) {
            let result = l.result().expect("result field").to_string();
            *c.entry((l.event, result)).or_default() += 1;
        }
    }
    c
}

/// A private ftrace instance recording the file events of tasks named `comm` only (so other
/// work on the machine can neither disturb the counts nor overrun the buffer).
fn file_ftrace(tag: &str, comm: &str) -> FtraceInstance {
    let tracefs = Tracefs::open(None).expect("tracefs");
    FtraceInstance::create(
        &tracefs,
        &format!("collapse-trace-harden-{tag}-{}", std::process::id()),
        &[
            "huge_memory/mm_khugepaged_scan_file",
            "huge_memory/mm_khugepaged_collapse_file",
        ],
        Some(&format!("comm == \"{comm}\"")),
        16384,
    )
    .expect("private ftrace instance")
}

fn snapshot(out: &[u8]) -> Snapshot {
    serde_json::from_slice(out).unwrap_or_else(|e| {
        panic!(
            "stat --json output does not parse ({e}):\n{}",
            String::from_utf8_lossy(out)
        )
    })
}

// ---------------------------------------------------------------------------------------------
// BPF programs of a process, and whether they still exist after it exits.

/// The ids of the BPF programs a process holds (program fds and link fds both name theirs as
/// `prog_id:` in /proc/PID/fdinfo). Ids are allocated cyclically and never reused soon, so
/// unlike program names they tell our programs from another instance's.
fn bpf_prog_ids(pid: u32) -> BTreeSet<u32> {
    let mut ids = BTreeSet::new();
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fdinfo")) else {
        return ids;
    };
    for e in dir.flatten() {
        if let Ok(text) = std::fs::read_to_string(e.path()) {
            for l in text.lines() {
                if let Some(id) = l.strip_prefix("prog_id:") {
                    ids.insert(id.trim().parse().unwrap());
                }
            }
        }
    }
    ids
}

/// Whether the kernel still has a BPF program with this id (BPF_PROG_GET_FD_BY_ID).
fn bpf_prog_exists(id: u32) -> bool {
    const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;
    // union bpf_attr for *_GET_FD_BY_ID: prog_id, next_id, open_flags, fd_by_id_token_fd.
    let attr: [u32; 4] = [id, 0, 0, 0];
    // SAFETY: bpf(2) with a valid, correctly sized attribute buffer.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_GET_FD_BY_ID,
            attr.as_ptr(),
            std::mem::size_of_val(&attr) as u32,
        )
    };
    if fd >= 0 {
        // SAFETY: closing the fd we just got.
        unsafe { libc::close(fd as i32) };
        return true;
    }
    let err = std::io::Error::last_os_error();
    assert_eq!(
        err.raw_os_error(),
        Some(libc::ENOENT),
        "BPF_PROG_GET_FD_BY_ID({id}): {err}"
    );
    false
}

/// Programs are freed once their last reference goes, which for perf-event links may take an
/// RCU grace period or two after the exit: poll.
fn assert_progs_gone(ids: &BTreeSet<u32>, who: &str) {
    let start = Instant::now();
    loop {
        let left: Vec<u32> = ids
            .iter()
            .copied()
            .filter(|&i| bpf_prog_exists(i))
            .collect();
        if left.is_empty() {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{who}: BPF programs {left:?} still loaded 10 s after exit"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Programs an instance loads here: one per attach point (this kernel has them all), less the
/// two syscall entries, since on x86-64 with BTF the syscall exits alone track MADV_COLLAPSE
/// calls.
const PROGRAMS: usize =
    collapse_trace_common::NUM_PROBES - if cfg!(target_arch = "x86_64") { 2 } else { 0 };

/// The programs of a running instance, all loaded.
fn progs_of(r: &Running) -> BTreeSet<u32> {
    let ids = bpf_prog_ids(r.pid());
    assert_eq!(ids.len(), PROGRAMS, "{}: BPF programs {ids:?}", r.name);
    assert!(ids.iter().all(|&i| bpf_prog_exists(i)));
    ids
}

// ---------------------------------------------------------------------------------------------
// 1. Two instances at once.

/// Two `stat --json` with the same comm filter see every event of the workload; the first one
/// stopped early neither steals from nor breaks the other, whose counts for both workload runs
/// equal ftrace's.
#[test]
fn two_instances_each_see_every_event_and_survive_each_other() {
    require_root();
    let _serial = serial();
    let dir = TempDir::new("two");
    let comm = unique_comm("ct2-");
    let link = workload_link(&dir, &comm);
    let instance = file_ftrace("two", &comm);

    let args = ["stat", "--json", "--comm", comm.as_str()];
    let mut first = Running::start(Path::new(BIN), &args, "attached to");
    let mut second = Running::start(Path::new(BIN), &args, "attached to");
    let (p1, p2) = (progs_of(&first), progs_of(&second));
    assert!(p1.is_disjoint(&p2), "the instances share programs");

    // Phase 1: both attached.
    let t1 = provoke_with(&link, &["all", "-n", "10"]);
    let (st, out) = first.signal_and_wait(libc::SIGINT);
    assert!(st.success(), "first instance exited with {st}");
    let snap1 = snapshot(&out);
    assert_progs_gone(&p1, "the first instance");
    assert!(
        p2.iter().all(|&i| bpf_prog_exists(i)),
        "the first instance's exit took the second's programs"
    );

    // Phase 2: only the second.
    let t2 = provoke_with(&link, &["all", "-n", "10"]);
    let (st, out) = second.signal_and_wait(libc::SIGTERM);
    assert!(st.success(), "second instance exited with {st}");
    let snap2 = snapshot(&out);
    assert_progs_gone(&p2, "the second instance");

    instance.stop().unwrap();
    let trace = instance.read().expect("ftrace record");
    drop(instance);

    let truth1 = ftrace_for(&trace, &[t1.pid]);
    let truth2 = ftrace_for(&trace, &[t1.pid, t2.pid]);
    assert!(!truth1.is_empty(), "ftrace saw nothing from pid {}", t1.pid);
    assert_ne!(truth1, truth2, "the second run produced no event");

    // The first saw everything of run 1, as delivered events and as kernel counters.
    assert_eq!(
        ours_for(&snap1, &[t1.pid]),
        truth1,
        "first instance vs ftrace"
    );
    assert_eq!(kernel_counts(&snap1), truth1, "first instance's counters");
    assert_eq!(snap1.totals.dropped, 0);
    // The survivor saw both runs, whole.
    assert_eq!(
        ours_for(&snap2, &[t1.pid, t2.pid]),
        truth2,
        "second instance vs ftrace"
    );
    assert_eq!(kernel_counts(&snap2), truth2, "second instance's counters");
    assert_eq!(snap2.totals.dropped, 0);
    assert_eq!(
        snap2.totals.delivered,
        snap2.totals.events + snap2.totals.calls
    );
    // And the calls the workload made: one scan event each (file or anon).
    let calls = |t: &Tally| t.scenarios.iter().map(|s| s.calls).sum::<u64>();
    let scans: u64 = snap2
        .tracepoints
        .iter()
        .filter(|t| t.name == "mm_khugepaged_scan_file" || t.name == "mm_khugepaged_scan_pmd")
        .map(|t| t.events)
        .sum();
    assert_eq!(scans, calls(&t1) + calls(&t2));
}

// ---------------------------------------------------------------------------------------------
// 2. Signals in every subcommand.

/// The kernel's count of scan_file events in a snapshot (one per MADV_COLLAPSE call).
fn scan_events(s: &Snapshot) -> u64 {
    s.tracepoints
        .iter()
        .filter(|t| t.name == "mm_khugepaged_scan_file" || t.name == "mm_khugepaged_scan_pmd")
        .map(|t| t.events)
        .sum()
}

/// `stat --json`: SIGINT, SIGTERM and SIGHUP each end it with exit 0, a whole JSON document
/// and its programs gone; also when the signal comes right after the "attached" line.
#[test]
fn stat_on_signals_detaches_and_prints_a_whole_document() {
    require_root();
    let _serial = serial();
    let dir = TempDir::new("sig-stat");
    let comm = unique_comm("cts-");
    let link = workload_link(&dir, &comm);
    for (sig, workload) in [
        (libc::SIGINT, true),
        (libc::SIGTERM, true),
        (libc::SIGHUP, true),
        (libc::SIGINT, false),
        (libc::SIGTERM, false),
    ] {
        let mut stat = Running::start(
            Path::new(BIN),
            &["stat", "--json", "--comm", &comm],
            "attached to",
        );
        let progs = progs_of(&stat);
        let calls = if workload {
            provoke_with(&link, &["uffd-holes", "-n", "3"]).scenarios[0].calls
        } else {
            0
        };
        let (st, out) = stat.signal_and_wait(sig);
        assert_eq!(st.code(), Some(0), "stat on signal {sig}: {st}");
        let snap = snapshot(&out);
        assert_eq!(scan_events(&snap), calls, "signal {sig}");
        assert_eq!(snap.totals.events, 2 * calls, "signal {sig}");
        assert_eq!(snap.totals.calls, calls, "signal {sig}");
        assert_eq!(
            snap.totals.delivered,
            snap.totals.events + snap.totals.calls
        );
        assert_progs_gone(&progs, "stat");
    }
}

/// `stat --json --follow`: on SIGTERM or SIGINT every line is whole JSON and the last one is
/// the final snapshot.
#[test]
fn stat_follow_on_signals_ends_with_a_final_snapshot() {
    require_root();
    let _serial = serial();
    let dir = TempDir::new("sig-follow");
    let comm = unique_comm("ctf-");
    let link = workload_link(&dir, &comm);
    for (sig, events) in [(libc::SIGTERM, false), (libc::SIGINT, true)] {
        let mut args = vec![
            "stat",
            "--json",
            "--follow",
            "--interval",
            "200ms",
            "--comm",
            &comm,
        ];
        if events {
            args.push("--events");
        }
        let mut follow = Running::start(Path::new(BIN), &args, "attached to");
        let progs = progs_of(&follow);
        let tally = provoke_with(&link, &["uffd-holes", "-n", "3"]);
        std::thread::sleep(Duration::from_millis(300));
        let (st, out) = follow.signal_and_wait(sig);
        assert_eq!(st.code(), Some(0), "stat --follow on signal {sig}: {st}");
        let text = String::from_utf8(out).expect("UTF-8");
        assert!(text.ends_with('\n'), "the last line is whole: {text:?}");
        let lines: Vec<&str> = text.lines().collect();
        for l in &lines {
            serde_json::from_str::<serde_json::Value>(l)
                .unwrap_or_else(|e| panic!("not JSON ({e}): {l}"));
        }
        let last: Snapshot = serde_json::from_str(lines.last().expect("a line")).unwrap();
        assert_eq!(last.totals.events, 6, "3 calls x 2 tracepoints");
        if events {
            assert_eq!(
                lines.len(),
                10,
                "6 event lines, 3 call lines and the snapshot:\n{text}"
            );
        }
        assert!(last.processes.iter().all(|p| p.tgid == tally.pid));
        assert_progs_gone(&progs, "stat --follow");
    }
}

/// GET over HTTP/1.0: (status, body).
fn http_get(addr: &str, path: &str) -> std::io::Result<(u16, String)> {
    use std::io::Write as _;
    let mut s = std::net::TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8(raw).expect("UTF-8 response");
    let (head, body) = text.split_once("\r\n\r\n").expect("HTTP response");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status code");
    Ok((status, body.to_string()))
}

fn start_serve(args: &[&str]) -> (Running, String) {
    let addr = format!("127.0.0.1:{}", free_port());
    let mut all = vec!["serve", "--listen", &addr];
    all.extend_from_slice(args);
    let r = Running::start(Path::new(BIN), &all, "listening on");
    (r, addr)
}

/// `serve`: SIGHUP is ignored (logged, still serving); SIGINT and SIGTERM detach, log the
/// totals and exit 0.
#[test]
fn serve_ignores_sighup_and_stops_cleanly_on_sigint_and_sigterm() {
    require_root();
    let _serial = serial();
    let dir = TempDir::new("sig-serve");
    let comm = unique_comm("ctd-");
    let link = workload_link(&dir, &comm);
    for sig in [libc::SIGINT, libc::SIGTERM] {
        let (mut serve, addr) = start_serve(&["--comm", &comm]);
        let progs = progs_of(&serve);
        // SAFETY: kill with the pid of a child we have not reaped.
        unsafe { libc::kill(serve.pid() as i32, libc::SIGHUP) };
        let start = Instant::now();
        while !serve.stderr().iter().any(|l| l.contains("SIGHUP ignored")) {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "no SIGHUP log line"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        provoke_with(&link, &["uffd-holes", "-n", "2"]);
        std::thread::sleep(Duration::from_millis(600));
        let (code, body) = http_get(&addr, "/json").expect("serve still answers after SIGHUP");
        assert_eq!(code, 200);
        let snap: Snapshot = serde_json::from_str(&body).unwrap();
        assert_eq!(snap.totals.events, 4);
        let (st, _) = serve.signal_and_wait(sig);
        assert_eq!(st.code(), Some(0), "serve on signal {sig}: {st}");
        assert!(
            serve.stderr().iter().any(|l| l.contains("detached after")),
            "{:?}",
            serve.stderr()
        );
        assert_progs_gone(&progs, "serve");
        assert!(http_get(&addr, "/healthz").is_err(), "still listening");
    }
}

/// `provoke`: SIGINT/SIGTERM stop it after the current try; it prints its tally (exact: equal
/// to what the kernel counted for it), marks it interrupted and exits 128 + the signal.
#[test]
fn provoke_on_signals_stops_after_the_current_try_and_prints_its_tally() {
    require_root();
    let _serial = serial();
    let dir = TempDir::new("sig-provoke");
    let comm = unique_comm("ctp-");
    let link = workload_link(&dir, &comm);
    for (sig, name, scenario) in [
        (libc::SIGINT, "SIGINT", "page-filled"),
        (libc::SIGTERM, "SIGTERM", "collapse"),
    ] {
        let mut stat = Running::start(
            Path::new(BIN),
            &["stat", "--json", "--comm", &comm],
            "attached to",
        );
        let mut provoke = Command::new(&link)
            .args(["provoke", scenario, "-n", "4000000", "--json"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(1500));
        assert!(provoke.try_wait().unwrap().is_none(), "provoke ended early");
        // SAFETY: kill with the pid of a child we have not reaped.
        unsafe { libc::kill(provoke.id() as i32, sig) };
        let start = Instant::now();
        while provoke.try_wait().unwrap().is_none() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "provoke did not stop within 10 s of {name}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let out = provoke.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(128 + sig), "{err}");
        assert!(err.contains(&format!("stopped by {name}")), "{err}");
        let tally: Tally = serde_json::from_slice(&out.stdout).expect("the tally is whole JSON");
        assert_eq!(tally.interrupted.as_deref(), Some(name));
        let s = &tally.scenarios[0];
        assert!(s.calls > 0 && s.calls < 4_000_000, "{s:?}");
        assert_eq!(s.calls, s.ok + s.errnos.values().sum::<u64>());
        let (st, out) = stat.signal_and_wait(libc::SIGINT);
        assert!(st.success());
        let snap = snapshot(&out);
        assert_eq!(
            scan_events(&snap),
            s.calls,
            "one scan_file event per call the tally counts"
        );
    }
}

fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The children of a process (from /proc/PID/task/*/children).
fn children(pid: u32) -> Vec<u32> {
    let mut v = Vec::new();
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for t in tasks.flatten() {
            let s = std::fs::read_to_string(t.path().join("children")).unwrap_or_default();
            v.extend(s.split_whitespace().filter_map(|p| p.parse::<u32>().ok()));
        }
    }
    v
}

/// `top` in tmux: SIGTERM and SIGINT from outside end it with exit 0, out of the alternate
/// screen, the terminal back in cooked mode with echo, and its programs gone.
#[test]
fn top_on_signals_restores_the_terminal() {
    require_root();
    for (sig, tag) in [(libc::SIGTERM, "term"), (libc::SIGINT, "int")] {
        let name = format!("ct-harden-top-{tag}-{}", std::process::id());
        let dir = TempDir::new(&format!("top-{tag}"));
        let exit_file = dir.0.join("exit");
        let stty_file = dir.0.join("stty");
        let cmd = format!(
            "{BIN} top --pid 1 --interval 200ms; echo $? > {}.tmp; stty -a > {}; mv {0}.tmp {0}; \
             sleep 60",
            exit_file.display(),
            stty_file.display()
        );
        let session = Session::start(&name, 120, 40, &cmd);
        wait_until("top to draw", Duration::from_secs(30), || {
            session.screen().contains("collapse-trace top")
        });
        assert_eq!(session.display("#{alternate_on}"), "1");
        let shell: u32 = session.display("#{pane_pid}").parse().unwrap();
        let top = children(shell)
            .into_iter()
            .find(|&p| {
                std::fs::read_to_string(format!("/proc/{p}/comm"))
                    .is_ok_and(|c| c.trim() == "collapse-trace")
            })
            .expect("top's pid under the pane's shell");
        let progs = bpf_prog_ids(top);
        assert_eq!(progs.len(), PROGRAMS, "top's programs: {progs:?}");
        // SAFETY: kill with the pid of top, which we started (through tmux).
        unsafe { libc::kill(top as i32, sig) };
        wait_until("top to exit", Duration::from_secs(15), || {
            exit_file.exists()
        });
        let code = std::fs::read_to_string(&exit_file).unwrap();
        assert_eq!(code.trim(), "0", "top's exit code on signal {sig}");
        assert_eq!(
            session.display("#{alternate_on}"),
            "0",
            "top left the alternate screen on"
        );
        assert_eq!(
            session.display("#{cursor_flag}"),
            "1",
            "top left the cursor hidden"
        );
        let stty = std::fs::read_to_string(&stty_file).unwrap();
        let flags: Vec<&str> = stty.split_whitespace().collect();
        for want in ["icanon", "echo", "isig", "icrnl", "opost"] {
            assert!(flags.contains(&want), "terminal not restored: {stty}");
        }
        assert_progs_gone(&progs, "top");
        drop(session);
    }
}

// ---------------------------------------------------------------------------------------------
// 3. Command-line values.

/// Runs collapse-trace with `args`; returns (exit code, stdout, stderr).
fn run_args(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run collapse-trace");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Every bad value is refused before anything is loaded: exit 2, a message naming the value
/// and what would do, nothing on stdout.
#[test]
fn bad_values_are_refused_with_a_clear_message() {
    // A thread id of this process (not a process id).
    let (tx, rx) = mpsc::channel();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let t = std::thread::spawn(move || {
        // SAFETY: gettid has no preconditions.
        tx.send(unsafe { libc::gettid() }).unwrap();
        let _ = done_rx.recv();
    });
    let tid = rx.recv().unwrap().to_string();
    let long_comm = "a-comm-of-16-byt";
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["stat", "--duration", "ten"], "not a duration"),
        (vec!["stat", "-d", "0s"], "zero"),
        (
            vec!["stat", "--json", "--follow", "--interval", "0s"],
            "zero",
        ),
        (vec!["stat", "--interval", "1s"], "--follow"),
        (vec!["stat", "--events"], "--follow"),
        (vec!["stat", "--pid", "0"], "0 is not a process id"),
        (vec!["stat", "--pid=-5"], "not a process id"),
        (
            vec!["stat", "--pid", "4194304"],
            "no process has pid 4194304",
        ),
        (vec!["stat", "--pid", &tid], "is a thread of process"),
        (vec!["stat", "--comm", ""], "empty comm"),
        (vec!["stat", "--comm", long_comm], "at most 15 bytes"),
        (vec!["stat", "--ring-size", "5000"], "power of two"),
        (
            vec!["stat", "--tracefs", "/nonexistent/ct"],
            "cannot read directory",
        ),
        (
            vec!["doctor", "--tracefs", "/nonexistent/ct"],
            "cannot read directory",
        ),
        (vec!["top", "--interval", "10ms"], "shorter than 100ms"),
        (
            vec!["serve", "--listen", "localhost"],
            "invalid socket address",
        ),
        (
            vec!["serve", "--listen", "127.0.0.1:99999"],
            "invalid socket address",
        ),
        (vec!["provoke", "bogus"], "invalid value 'bogus'"),
        (vec!["provoke", "-n", "-1"], "-1"),
        (
            vec!["provoke", "--scenario", "collapse", "all"],
            "cannot be used",
        ),
        (vec!["frobnicate"], "unrecognized subcommand"),
    ];
    for (args, want) in cases {
        let (code, out, err) = run_args(&args);
        assert_eq!(code, Some(2), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: wanted {want:?} in: {err}");
        assert!(out.is_empty(), "{args:?} wrote to stdout: {out}");
    }
    done_tx.send(()).unwrap();
    t.join().unwrap();
}

/// `serve` on an address in use fails at once, before loading anything, and says what to do.
#[test]
fn serve_on_a_port_in_use_says_so_before_attaching() {
    require_root();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let start = Instant::now();
    let (code, out, err) = run_args(&["serve", "--listen", &addr]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains(&format!("cannot listen on {addr}"))
            && err.contains("in use")
            && err.contains("--listen"),
        "{err}"
    );
    assert!(!err.contains("attached"), "{err}");
    assert!(out.is_empty());
    assert!(start.elapsed() < Duration::from_secs(5));
}

/// A format file that cannot be read is named in the error (exit 4), not a panic.
#[test]
fn an_unreadable_format_file_is_named() {
    require_root();
    let dir = TempDir::new("badformat");
    // A directory where the file should be: read fails with EISDIR even for root.
    std::fs::create_dir_all(
        dir.0
            .join("events/huge_memory/mm_khugepaged_scan_file/format"),
    )
    .unwrap();
    let (code, out, err) = run_args(&[
        "stat",
        "--duration",
        "1s",
        "--tracefs",
        dir.0.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(4), "{err}");
    assert!(
        err.contains("cannot read") && err.contains("mm_khugepaged_scan_file/format"),
        "{err}"
    );
    assert!(out.is_empty());
}

// ---------------------------------------------------------------------------------------------
// 4. Hand-made formats through --tracefs: an unknown result number, a renamed field.

/// A copy of the real format files with `page_filled` taken out of both result tables (a newer
/// kernel's number this one does not name) and collapse_file's `nr` field renamed: the tool
/// runs, counts everything exactly, shows `unknown(30)`, and says why on stderr.
#[test]
fn an_unknown_result_number_and_a_renamed_field_are_survived_and_explained() {
    require_root();
    let _serial = serial();
    let dir = TempDir::new("formats");
    let comm = unique_comm("ctu-");
    let link = workload_link(&dir, &comm);
    let real = Tracefs::open(None).expect("tracefs");
    let fake = dir.0.join("tracefs");
    let mut number = None;
    for tp in ["mm_khugepaged_scan_file", "mm_khugepaged_collapse_file"] {
        let text =
            std::fs::read_to_string(real.event_dir("huge_memory", tp).join("format")).unwrap();
        // `{30, "page_filled"}` on 6.18, `{31, ...}` on older kernels: find the number.
        let at = text
            .find("\"page_filled\"}")
            .expect("page_filled in the format");
        let open = text[..at].rfind('{').unwrap();
        let n: i64 = text[open + 1..at]
            .trim()
            .trim_end_matches(',')
            .parse()
            .unwrap();
        number = Some(n);
        let entry = &text[open..at + "\"page_filled\"}".len()];
        let mut edited = text.replace(&format!(", {entry}"), "").replace(entry, "");
        assert!(!edited.contains("page_filled"));
        if tp == "mm_khugepaged_collapse_file" {
            assert!(edited.contains("field:int nr;"));
            edited = edited.replace("field:int nr;", "field:int nr_pages;");
        }
        let d = fake.join("events/huge_memory").join(tp);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("format"), edited).unwrap();
    }
    let number = number.unwrap();
    let unknown = format!("unknown({number})");

    let instance = file_ftrace("formats", &comm);
    let mut stat = Running::start(
        Path::new(BIN),
        &[
            "stat",
            "--json",
            "--comm",
            &comm,
            "--tracefs",
            fake.to_str().unwrap(),
        ],
        "attached to",
    );
    let tally = provoke_with(&link, &["page-filled"]);
    let (st, out) = stat.signal_and_wait(libc::SIGINT);
    instance.stop().unwrap();
    let trace = instance.read().unwrap();
    drop(instance);
    assert!(st.success(), "{st}");
    let err = stat.stderr().join("\n");
    assert!(err.contains("no `nr` field"), "{err}");
    assert!(
        err.contains(&unknown) && err.contains("do not include"),
        "no word on why {unknown}: {err}"
    );
    let snap = snapshot(&out);
    assert_eq!(snap.result_names, ResultSource::Tracefs);
    let text = String::from_utf8(out.clone()).unwrap();
    assert!(!text.contains("page_filled"), "{text}");

    // ftrace's (real) names, with page_filled read as the tool must show it.
    let truth: Counts = ftrace_for(&trace, &[tally.pid])
        .into_iter()
        .map(|((tp, r), n)| {
            let r = if r == "page_filled" {
                unknown.clone()
            } else {
                r
            };
            ((tp, r), n)
        })
        .collect();
    assert_eq!(kernel_counts(&snap), truth, "counters vs ftrace");
    assert_eq!(ours_for(&snap, &[tally.pid]), truth, "events vs ftrace");
    let cf = snap
        .tracepoints
        .iter()
        .find(|t| t.name == "mm_khugepaged_collapse_file")
        .unwrap();
    let row = cf
        .results
        .iter()
        .find(|r| r.result == unknown)
        .unwrap_or_else(|| panic!("no {unknown} in {:?}", cf.results));
    assert_eq!(row.number, number);
    assert!(row.count >= 1);
    assert_eq!(scan_events(&snap), tally.scenarios[0].calls);
}

// ---------------------------------------------------------------------------------------------
// 5. Hostile file names and comms, end to end.

/// A private tmpfs (huge=advise) of the test's own, unmounted when dropped. The global THP
/// settings are never touched.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn new(dir: &TempDir) -> Tmpfs {
        let p = dir.0.join("mnt");
        std::fs::create_dir_all(&p).unwrap();
        let target = std::ffi::CString::new(p.as_os_str().as_bytes()).unwrap();
        // SAFETY: valid NUL-terminated strings that outlive the call.
        let rc = unsafe {
            libc::mount(
                c"ct-harden".as_ptr(),
                target.as_ptr(),
                c"tmpfs".as_ptr(),
                libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                c"size=64m,huge=advise,mode=0700".as_ptr().cast(),
            )
        };
        assert_eq!(rc, 0, "mount tmpfs: {}", std::io::Error::last_os_error());
        Tmpfs(p)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let target = std::ffi::CString::new(self.0.as_os_str().as_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
    }
}

const HPAGE: usize = 2 << 20;

/// Creates `name` in `dir`, maps it MAP_SHARED 2 MiB-aligned, touches every page and calls
/// madvise(MADV_COLLAPSE) from this thread; returns the errno (0 for success).
/// MADV_COLLAPSE on a 2 MiB tmpfs file named `name`: populated (it succeeds), or truncated to
/// nothing after mapping (it fails with EINVAL, result `truncated`, so the name shows among
/// the failures).
fn collapse_file_named(dir: &Path, name: &[u8], populate: bool) -> i32 {
    use std::os::fd::AsRawFd as _;
    let path = dir.join(std::ffi::OsStr::from_bytes(name));
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .unwrap_or_else(|e| panic!("create {path:?}: {e}"));
    file.set_len(HPAGE as u64).unwrap();
    // SAFETY: a fresh 4 MiB PROT_NONE reservation; the file is mapped MAP_FIXED inside it at
    // the 2 MiB-aligned point, the slack is unmapped, the mapping is ours alone.
    let errno = unsafe {
        let base = libc::mmap(
            std::ptr::null_mut(),
            2 * HPAGE,
            libc::PROT_NONE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        );
        assert_ne!(base, libc::MAP_FAILED);
        let aligned = ((base as usize + HPAGE - 1) & !(HPAGE - 1)) as *mut libc::c_void;
        let addr = libc::mmap(
            aligned,
            HPAGE,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_FIXED,
            file.as_raw_fd(),
            0,
        );
        assert_eq!(addr, aligned, "{}", std::io::Error::last_os_error());
        let head = aligned as usize - base as usize;
        if head > 0 {
            libc::munmap(base, head);
        }
        let tail = 2 * HPAGE - head - HPAGE;
        if tail > 0 {
            libc::munmap((aligned as usize + HPAGE) as *mut libc::c_void, tail);
        }
        if populate {
            for i in (0..HPAGE).step_by(4096) {
                std::ptr::write_volatile((aligned as *mut u8).add(i), 1);
            }
        } else {
            file.set_len(0).unwrap();
        }
        let rc = libc::madvise(aligned, HPAGE, 25); // MADV_COLLAPSE
        let errno = if rc == 0 {
            0
        } else {
            std::io::Error::last_os_error().raw_os_error().unwrap()
        };
        libc::munmap(aligned, HPAGE);
        errno
    };
    drop(file);
    std::fs::remove_file(&path).unwrap();
    errno
}

/// A text report of the hostile run: no raw control byte but newlines, the comm escaped in
/// an aligned process row, and the file table's columns aligned.
fn check_hostile_tables(table: &str, comm: &[u8], names: usize) {
    use collapse_trace::model::event::escape;
    assert!(
        table.chars().all(|c| c == '\n' || !c.is_control()),
        "{table}"
    );
    let lines: Vec<&str> = table.lines().collect();
    let hdr = lines
        .iter()
        .position(|l| l.trim_start().starts_with("PID COMM"))
        .expect("process table");
    let col = |l: &str, word: &str| l.find(word).unwrap() + word.len();
    let events_end = col(lines[hdr + 1 - 1], "EVENTS");
    let row = lines[hdr + 1];
    assert!(row.contains(&escape(comm)), "{row}");
    let ev = (names * 4).to_string();
    assert_eq!(
        row.find(&format!(" {ev} ")).map(|i| i + 1 + ev.len()),
        Some(events_end),
        "EVENTS column misaligned:\n{}\n{row}",
        lines[hdr]
    );
    let fhdr = lines
        .iter()
        // (the cgroups table's header starts the same way; the file table's ends in FILE)
        .position(|l| l.trim_start().starts_with("EVENTS  FAILURES") && l.ends_with("FILE"))
        .expect("file table");
    let file_col = lines[fhdr].find("FILE").unwrap();
    let rows: Vec<&str> = lines[fhdr + 1..]
        .iter()
        // The table ends at a blank line or the note on stale names (classic programs only).
        .take_while(|l| !l.trim().is_empty() && !l.trim_start().starts_with('('))
        .copied()
        .collect();
    assert!(rows.len() >= names - 2, "{table}");
    for r in rows {
        assert_eq!(r.chars().nth(file_col - 1), Some(' '), "misaligned: {r:?}");
        assert!(r[..file_col].trim_end().ends_with(char::is_alphanumeric) || r.contains(" - "));
    }
}

/// The library's inverse of `escape`, for names the tool printed.
fn unescape(s: &str) -> Vec<u8> {
    collapse_trace::model::event::unescape(s)
        .unwrap_or_else(|e| panic!("not an escaped name: {s:?}: {e}"))
}

fn no_raw_control(s: &str) -> bool {
    !s.chars().any(char::is_control)
}

/// Files with quotes, backslashes, newlines, tabs, ANSI escapes, invalid UTF-8 and 255-byte
/// names, collapsed by this very thread under a hostile comm: `stat --json` is valid and its
/// short names round-trip through the escaping, long ones are at least escaped; the `stat`
/// table stays aligned; `serve`'s /metrics passes `promtool check metrics`.
#[test]
fn hostile_file_names_and_comms_survive_every_output() {
    use collapse_trace::model::event::escape;
    require_root();
    let _serial = serial();
    let dir = TempDir::new("hostile");
    let fs = Tmpfs::new(&dir);
    let me = std::process::id().to_string();
    let mut long = b"x".repeat(200);
    long.extend_from_slice(b"\n\x1b[2J\xff\"\\");
    long.resize(255, b'y');
    let names: Vec<Vec<u8>> = vec![
        b"q\"uote'd".to_vec(),
        b"back\\slash\\".to_vec(),
        b"new\nline".to_vec(),
        b"tab\there\r".to_vec(),
        b"\x1b[31mred\x1b[0m\x07".to_vec(),
        b"bad\xff\xfeutf8\xc3".to_vec(),
        "caf\u{e9} \u{9b}31m".as_bytes().to_vec(),
        b"z".repeat(255),
        long,
    ];
    // This thread's comm (15 bytes at most): the kernel records it with every event.
    let comm: &[u8] = b"c\"\\\n\x1b[1m\xff\t";
    let cname = std::ffi::CString::new(comm).unwrap();
    // SAFETY: PR_SET_NAME with a NUL-terminated string; renames this test thread only.
    assert_eq!(unsafe { libc::prctl(libc::PR_SET_NAME, cname.as_ptr()) }, 0);

    let mut json = Running::start(
        Path::new(BIN),
        &["stat", "--json", "--pid", &me],
        "attached to",
    );
    let mut text = Running::start(
        Path::new(BIN),
        &["stat", "--pid", &me, "--top", "50"],
        "attached to",
    );
    let (mut serve, addr) = start_serve(&["--pid", &me]);
    let record_file = dir.0.join("hostile.ndjson");
    let mut record = Running::start(
        Path::new(BIN),
        &["record", "--pid", &me, "-o", record_file.to_str().unwrap()],
        "attached to",
    );
    // top in a real terminal: hostile names must reach the screen escaped.
    let top_cmd = format!("{BIN} top --pid {me} --interval 200ms; sleep 60");
    let session = Session::start(&format!("ct-harden-hostile-{me}"), 200, 50, &top_cmd);
    wait_until("top to start", Duration::from_secs(30), || {
        session.screen().contains("collapse-trace top")
    });

    for n in &names {
        let e = collapse_file_named(&fs.0, n, true);
        assert_eq!(e, 0, "MADV_COLLAPSE on {n:?}: errno {e}");
    }
    for n in &names {
        let e = collapse_file_named(&fs.0, n, false);
        assert_eq!(
            e,
            libc::EINVAL,
            "MADV_COLLAPSE on truncated {n:?}: errno {e}"
        );
    }
    std::thread::sleep(Duration::from_millis(600));
    // The recent-failures pane shows this thread's comm and the short names, escaped.
    let mut screen = String::new();
    wait_until("top to show the failures", Duration::from_secs(10), || {
        screen = session.screen();
        screen.contains(&escape(comm)) && screen.contains("truncated")
    });
    assert!(
        !screen.contains('\x1b') && !screen.contains('\x07'),
        "{screen}"
    );
    for n in names.iter().filter(|n| n.len() <= 20) {
        assert!(
            screen.contains(&escape(n)),
            "{:?} not on screen:\n{screen}",
            escape(n)
        );
    }
    session.send_keys("q");
    let (st, _) = record.signal_and_wait(libc::SIGINT);
    assert!(st.success(), "record: {st}");
    let (code, metrics) = http_get(&addr, "/metrics").unwrap();
    assert_eq!(code, 200);
    let (code, served) = http_get(&addr, "/json").unwrap();
    assert_eq!(code, 200);
    assert!(serve.signal_and_wait(libc::SIGTERM).0.success());
    let (st, out) = json.signal_and_wait(libc::SIGINT);
    assert!(st.success());
    let (st, table) = text.signal_and_wait(libc::SIGINT);
    assert!(st.success());
    drop(fs);

    // JSON: valid; comm and names escaped; the short names round-trip exactly.
    for body in [String::from_utf8(out).unwrap(), served] {
        let snap: Snapshot = serde_json::from_str(&body).expect("valid JSON");
        assert_eq!(snap.totals.events, 4 * names.len() as u64, "{body}");
        let p = &snap.processes[0];
        assert_eq!(p.comm, escape(comm));
        assert_eq!(unescape(&p.comm), comm);
        let got: BTreeSet<&str> = snap.files.iter().map(|f| f.name.as_str()).collect();
        for f in &got {
            assert!(no_raw_control(f), "raw control character in {f:?}");
            assert_eq!(escape(&unescape(f)), *f, "not a canonical escape: {f:?}");
        }
        for n in names.iter().filter(|n| n.len() <= 32) {
            let e = escape(n);
            assert!(got.contains(e.as_str()), "{e:?} not among {got:?}");
            assert_eq!(unescape(&e), *n);
        }
        // Long names: the tracepoint may give a stale name (see README: Known limits), so
        // only the escaping is asserted, above.
    }

    // The text reports of stat and of report (the same renderer, fed by a record file): no
    // raw control byte but newlines, and aligned columns.
    check_hostile_tables(
        &String::from_utf8(table).expect("UTF-8 stat"),
        comm,
        names.len(),
    );
    let out = Command::new(BIN)
        .args(["report", "--top", "50"])
        .arg(&record_file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    check_hostile_tables(
        &String::from_utf8(out.stdout).expect("UTF-8 report"),
        comm,
        names.len(),
    );

    // /metrics passes promtool.
    assert_promtool_accepts(&metrics);
}

// ---------------------------------------------------------------------------------------------
// 6. serve drops its capabilities once attached.

/// Every thread of the running daemon has no capability left (CapEff, CapPrm, CapInh, CapAmb
/// all 0, no_new_privs), yet it still counts (map lookups and the ring through the fds it
/// holds), serves, and detaches on SIGTERM.
#[test]
fn serve_runs_with_no_capability_after_attaching() {
    require_root();
    let _serial = serial();
    let dir = TempDir::new("caps");
    let comm = unique_comm("ctc-");
    let link = workload_link(&dir, &comm);
    let (mut serve, addr) = start_serve(&["--comm", &comm]);
    let progs = progs_of(&serve);
    let tasks: Vec<PathBuf> = std::fs::read_dir(format!("/proc/{}/task", serve.pid()))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(!tasks.is_empty());
    for t in &tasks {
        let status = std::fs::read_to_string(t.join("status")).unwrap();
        let field = |k: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(k))
                .map(|v| v.trim().to_string())
                .unwrap_or_else(|| panic!("no {k} in {status}"))
        };
        for k in ["CapEff:", "CapPrm:", "CapInh:", "CapAmb:"] {
            assert_eq!(
                u64::from_str_radix(&field(k), 16).unwrap(),
                0,
                "{} {k}",
                t.display()
            );
        }
        assert_eq!(field("NoNewPrivs:"), "1", "{}", t.display());
    }
    let tally = provoke_with(&link, &["uffd-holes", "-n", "3"]);
    std::thread::sleep(Duration::from_millis(600));
    let (code, body) = http_get(&addr, "/json").unwrap();
    assert_eq!(code, 200);
    let snap: Snapshot = serde_json::from_str(&body).unwrap();
    assert_eq!(snap.totals.events, 6, "counters read without capabilities");
    assert_eq!(
        snap.totals.delivered, 9,
        "ring read without capabilities (6 events, 3 calls)"
    );
    assert!(snap.processes.iter().all(|p| p.tgid == tally.pid));
    let (code, metrics) = http_get(&addr, "/metrics").unwrap();
    assert_eq!(code, 200);
    assert!(metrics.contains("collapse_trace_events_total"));
    let (st, _) = serve.signal_and_wait(libc::SIGTERM);
    assert_eq!(st.code(), Some(0));
    assert_progs_gone(&progs, "serve without capabilities");
}

/// `provoke ... | head -1`: a reader that goes away is a normal end, never a panic.
#[test]
fn provoke_into_a_closed_pipe_ends_cleanly() {
    require_root();
    let _serial = serial();
    let mut child = Command::new(BIN)
        .args(["provoke", "collapse", "-n", "2", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Closed before the scenario has printed anything.
    drop(child.stdout.take());
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let status = child.wait().unwrap();
    assert!(!err.contains("panicked"), "{err}");
    assert!(status.success(), "{status}: {err}");
}
