//! Helpers shared by the end-to-end test binaries (each `tests/*.rs` includes this module).
//! Not every binary uses every helper, hence the allowance below.
#![allow(dead_code)]

pub mod ftrace;

use std::{
    io::{BufRead as _, BufReader},
    path::Path,
    process::{Child, Command, Stdio},
    sync::{Mutex, MutexGuard},
    time::Duration,
};

use collapse_trace::provoke::Tally;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_collapse-trace");

/// Kernel-facing tests of one binary run one at a time: each counts what one workload did.
static SERIAL: Mutex<()> = Mutex::new(());

/// Takes this binary's kernel lock (a test that panicked while holding it does not poison
/// the others).
pub fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Fails (never skips) when not root: CI must prove the kernel path.
pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "these tests need root (CAP_BPF, CAP_PERFMON, tracefs, mount); run them with sudo"
    );
}

/// Spawns `cmd` with stderr piped, echoes its stderr with `[label]` in front, and returns
/// the child and a receiver that gets one message when a line containing `needle` appears.
pub fn spawn_watching(
    mut cmd: Command,
    label: &'static str,
    needle: &'static str,
) -> (Child, std::sync::mpsc::Receiver<()>) {
    let mut child = cmd.stderr(Stdio::piped()).spawn().expect("spawn");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in BufReader::new(stderr).lines() {
            let line = line.unwrap_or_default();
            eprintln!("[{label}] {line}");
            if line.contains(needle)
                && let Some(tx) = tx.take()
            {
                let _ = tx.send(());
            }
        }
    });
    (child, rx)
}

/// Starts `collapse-trace ARGS` and waits for its "attached to" line on stderr (the rest of
/// stderr is echoed with a prefix).
pub fn start_attached(args: &[&str]) -> Child {
    let mut cmd = Command::new(BIN);
    cmd.args(args).stdout(Stdio::piped());
    let (child, rx) = spawn_watching(cmd, "collapse-trace", "attached to");
    rx.recv_timeout(Duration::from_secs(30))
        .expect("collapse-trace did not report attaching within 30 s");
    child
}

/// SIGINT, then the child's stdout; it must exit 0.
pub fn sigint_and_wait(child: Child) -> String {
    // SAFETY: kill with a pid we own.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().expect("wait for collapse-trace");
    assert!(
        out.status.success(),
        "collapse-trace exited with {}",
        out.status
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

/// Runs `cmd`, which must exit 0 (else the panic names `what` and carries its stderr), and
/// returns its stdout.
pub fn stdout_of(cmd: &mut Command, what: &str) -> Vec<u8> {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// `collapse-trace provoke ARGS --json`, run through `bin` (a symlink gives the workload a
/// comm of the test's choosing).
pub fn provoke_with(bin: &Path, args: &[&str]) -> Tally {
    make_room_for_huge_pages();
    let out = stdout_of(
        Command::new(bin).arg("provoke").args(args).arg("--json"),
        "provoke",
    );
    serde_json::from_slice(&out).expect("provoke --json output")
}

/// `collapse-trace provoke ARGS --json`.
pub fn provoke(args: &[&str]) -> Tally {
    provoke_with(Path::new(BIN), args)
}

/// `collapse-trace report --json FILE`, which must succeed; the file is removed afterwards.
pub fn report_json_and_remove(file: &Path) -> collapse_trace::export::json::Report {
    let out = Command::new(BIN)
        .arg("report")
        .arg("--json")
        .arg(file)
        .output()
        .expect("run report");
    let _ = std::fs::remove_file(file);
    assert!(
        out.status.success(),
        "report failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("report --json parses")
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A tmux session on a server of its own. A shared server exits when its last session
/// closes, and a `new-session` that reaches it while it exits (the next session of the
/// same test, or a test running in parallel) fails with "server exited unexpectedly".
/// Killed, with its server, however the test ends.
pub struct Session {
    /// The session's name, for `-t`.
    pub name: String,
    /// The socket name (`tmux -L`) of this session's own server.
    socket: String,
}

impl Session {
    /// Starts `cmd` detached in a `width` x `height` terminal.
    pub fn start(name: &str, width: u16, height: u16, cmd: &str) -> Session {
        use std::sync::atomic::{AtomicU32, Ordering};
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let session = Session {
            name: name.to_owned(),
            socket: format!(
                "collapse-trace-test-{}-{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ),
        };
        let (w, h) = (width.to_string(), height.to_string());
        session.tmux(&["new-session", "-d", "-s", name, "-x", &w, "-y", &h, cmd]);
        session
    }

    /// Runs `tmux ARGS` on this session's server; it must succeed.
    pub fn tmux(&self, args: &[&str]) -> String {
        let mut cmd = Command::new("tmux");
        cmd.args(["-L", &self.socket]).args(args);
        // `cargo xtask test` installs tmux.
        let out = stdout_of(&mut cmd, &format!("tmux {args:?}"));
        String::from_utf8_lossy(&out).into_owned()
    }

    /// The pane's text now.
    pub fn screen(&self) -> String {
        self.tmux(&["capture-pane", "-p", "-t", &self.name])
    }

    /// A format variable of the pane (`#{alternate_on}` and the like), trimmed.
    pub fn display(&self, format: &str) -> String {
        self.tmux(&["display", "-p", "-t", &self.name, format])
            .trim()
            .to_owned()
    }

    /// Types `keys` into the pane.
    pub fn send_keys(&self, keys: &str) {
        self.tmux(&["send-keys", "-t", &self.name, keys]);
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .output();
    }
}

/// `promtool check metrics` (Debian package `prometheus`) must accept `body`.
pub fn assert_promtool_accepts(body: &str) {
    use std::io::Write as _;
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package `prometheus`)");
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let out = promtool.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}\n{body}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Compacts memory once per test binary: a build machine keeps its memory full of page
/// cache, and a collapse then fails with ENOMEM for want of a free huge page, which would be
/// the machine's fault, not the code's. A one-off action (/proc/sys/vm/compact_memory); no
/// setting changes.
pub fn make_room_for_huge_pages() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = std::fs::write("/proc/sys/vm/compact_memory", "1");
    });
}

/// A child process stopped with SIGTERM (then SIGKILL after 5 s) when dropped.
pub struct Guard {
    /// Named in panics.
    pub name: &'static str,
    /// The process, until stopped.
    pub child: Option<Child>,
}

impl Guard {
    /// Guards `child`.
    pub fn new(name: &'static str, child: Child) -> Guard {
        Guard {
            name,
            child: Some(child),
        }
    }

    /// The process id.
    pub fn pid(&self) -> i32 {
        self.child.as_ref().expect("running").id() as i32
    }

    /// Sends `sig`.
    pub fn signal(&self, sig: i32) {
        // SAFETY: kill with the pid of a child we have not reaped.
        unsafe { libc::kill(self.pid(), sig) };
    }

    /// SIGTERM and wait (at most 20 s); returns the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("already stopped");
        // SAFETY: kill with the pid of a child we have not reaped.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let start = std::time::Instant::now();
        loop {
            if let Some(st) = child.try_wait().expect("wait") {
                return st;
            }
            if start.elapsed() > Duration::from_secs(20) {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{} did not stop within 20 s of SIGTERM", self.name);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: as above.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            for _ in 0..100 {
                if matches!(c.try_wait(), Ok(Some(_))) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A temporary directory, `ct-TAG-PID` under the temp dir, removed when dropped.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    /// Makes it (empty).
    pub fn new(tag: &str) -> TempDir {
        let d = std::env::temp_dir().join(format!("ct-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        TempDir(d)
    }

    /// A path inside it.
    pub fn path(&self, name: &str) -> std::path::PathBuf {
        self.0.join(name)
    }

    /// Writes `text` to `name` inside it.
    pub fn write(&self, name: &str, text: &str) -> std::path::PathBuf {
        let p = self.path(name);
        std::fs::write(&p, text).unwrap();
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
