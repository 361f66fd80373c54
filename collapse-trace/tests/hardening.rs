//! Hardening, end to end on the real kernel, as root (issue 7): two instances at once, signals
//! in every subcommand, command-line validation, hand-made tracepoint formats, hostile file
//! names, capabilities of the running daemon.
//!
//! Like tests/e2e.rs these fail, never skip, when they cannot run. Every kernel-facing test
//! filters by pid or by a comm unique to this test run (khugepaged and other engineers' tests
//! may produce events on this machine at the same time), and they run one at a time (SERIAL).

use std::{
    collections::{BTreeMap, BTreeSet},
    io::{BufRead, BufReader, Read as _},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::{Arc, Mutex, mpsc},
    time::{Duration, Instant},
};

use collapse_trace::{
    capture::ftrace::parse_line,
    export::json::Snapshot,
    kernel::{ftrace::FtraceInstance, tracefs::Tracefs},
    provoke::Tally,
};

const BIN: &str = env!("CARGO_BIN_EXE_collapse-trace");

/// The kernel-facing tests run one at a time: each counts what one workload did.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "the hardening tests need root (CAP_BPF, CAP_PERFMON, tracefs, mount); run them with sudo"
    );
}

/// A temporary directory removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let d = std::env::temp_dir().join(format!("ct-harden-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        TempDir(d)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

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

fn provoke_with(bin: &Path, args: &[&str]) -> Tally {
    let out = Command::new(bin)
        .arg("provoke")
        .args(args)
        .arg("--json")
        .output()
        .expect("run provoke");
    assert!(
        out.status.success(),
        "provoke failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("provoke --json output")
}

type Counts = BTreeMap<(String, String), u64>;

/// Delivered events of the given processes, summed, by (tracepoint, result).
fn ours_for(snap: &Snapshot, tgids: &[u32]) -> Counts {
    let mut c = Counts::new();
    for p in snap.processes.iter().filter(|p| tgids.contains(&p.tgid)) {
        for r in &p.results {
            *c.entry((r.tracepoint.clone(), r.result.clone()))
                .or_default() += r.count;
        }
    }
    c
}

/// The kernel counters of a snapshot by (tracepoint, result).
fn kernel_counts(s: &Snapshot) -> Counts {
    let mut m = Counts::new();
    for t in &s.tracepoints {
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

fn file_ftrace(tag: &str) -> FtraceInstance {
    let tracefs = Tracefs::open(None).expect("tracefs");
    FtraceInstance::create(
        &tracefs,
        &format!("collapse-trace-harden-{tag}-{}", std::process::id()),
        &[
            "huge_memory/mm_khugepaged_scan_file",
            "huge_memory/mm_khugepaged_collapse_file",
        ],
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

/// The programs of a running instance: two (one per file tracepoint), all loaded.
fn progs_of(r: &Running) -> BTreeSet<u32> {
    let ids = bpf_prog_ids(r.pid());
    assert_eq!(ids.len(), 2, "{}: BPF programs {ids:?}", r.name);
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
    let instance = file_ftrace("two");

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
    assert_eq!(snap2.totals.delivered, snap2.totals.events);
    // And the calls the workload made: one scan_file event each.
    let calls = |t: &Tally| t.scenarios.iter().map(|s| s.calls).sum::<u64>();
    let scans: u64 = snap2
        .tracepoints
        .iter()
        .filter(|t| t.name == "mm_khugepaged_scan_file")
        .map(|t| t.events)
        .sum();
    assert_eq!(scans, calls(&t1) + calls(&t2));
}
