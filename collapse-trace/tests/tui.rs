//! `collapse-trace top` in a real terminal (tmux), as root against the real kernel: the
//! page_filled row must show the count that `stat --json` reports for the same run, and
//! quitting must exit 0 and leave the alternate screen.

mod common;

use common::*;

use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use collapse_trace::{export::json::Snapshot, provoke::Tally};

fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A task name for this test's workload, so that `--comm` filters exactly it even when other
/// collapse-trace workloads run on the machine.
fn workload_comm() -> String {
    format!("ct-t{}", std::process::id() % 1_000_000)
}

fn start_stat() -> Child {
    let mut child = Command::new(BIN)
        .args(["stat", "--json", "--comm", &workload_comm()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    loop {
        let line = lines.next().expect("stat exited before attaching").unwrap();
        if line.contains("attached to") {
            break;
        }
    }
    std::thread::spawn(move || lines.for_each(drop));
    child
}

#[test]
fn top_shows_the_same_page_filled_count_as_stat_and_quits_cleanly() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(unsafe { libc::geteuid() }, 0, "this test needs root");
    let name = format!("ct-top-{}", std::process::id());
    let exit_file = std::env::temp_dir().join(format!("{name}.exit"));
    let _ = std::fs::remove_file(&exit_file);
    let cmd = format!(
        "{BIN} top --comm {} --interval 500ms; echo $? > {}; sleep 60",
        workload_comm(),
        exit_file.display()
    );
    tmux(&[
        "new-session",
        "-d",
        "-s",
        &name,
        "-x",
        "150",
        "-y",
        "45",
        &cmd,
    ]);
    let session = Session(name.clone());
    let screen = || tmux(&["capture-pane", "-p", "-t", &session.0]);
    wait_for("top to start", Duration::from_secs(30), || {
        screen().contains("collapse-trace top")
    });

    let stat = start_stat();
    let out = Command::new(BIN)
        .args([
            "provoke",
            "page-filled",
            "--json",
            "--comm",
            &workload_comm(),
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let tally: Tally = serde_json::from_slice(&out.stdout).unwrap();
    // SAFETY: kill with a pid we own.
    unsafe { libc::kill(stat.id() as i32, libc::SIGINT) };
    let snap: Snapshot = serde_json::from_slice(&stat.wait_with_output().unwrap().stdout).unwrap();
    let want = snap
        .tracepoints
        .iter()
        .find(|t| t.name == "mm_khugepaged_collapse_file")
        .and_then(|t| t.results.iter().find(|r| r.result == "page_filled"))
        .map(|r| r.count)
        .unwrap_or_else(|| {
            panic!(
                "no page_filled in {} tries: {snap:?}",
                tally.scenarios[0].calls
            )
        });
    assert!(want > 0);

    // The row: "collapse_file > page_filled   <count> ...". Wait for a refresh to show it.
    let row_count = |s: &str| -> Option<u64> {
        let line = s
            .lines()
            .find(|l| l.contains("collapse_file > page_filled"))?;
        let after = &line[line.find("page_filled")? + "page_filled".len()..];
        after.split_whitespace().next()?.parse().ok()
    };
    let mut last = String::new();
    let start = Instant::now();
    while row_count(&last) != Some(want) && start.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(200));
        last = screen();
    }
    assert_eq!(row_count(&last), Some(want), "top's screen:\n{last}");
    assert!(tmux(&["display", "-p", "-t", &name, "#{alternate_on}"]).trim() == "1");

    tmux(&["send-keys", "-t", &name, "q"]);
    wait_for("top to exit", Duration::from_secs(15), || {
        exit_file.exists()
    });
    wait_for("the exit code", Duration::from_secs(5), || {
        std::fs::read_to_string(&exit_file).is_ok_and(|s| s.ends_with('\n'))
    });
    let code = std::fs::read_to_string(&exit_file).unwrap();
    let _ = std::fs::remove_file(&exit_file);
    assert_eq!(code.trim(), "0", "top's exit code");
    assert_eq!(
        tmux(&["display", "-p", "-t", &name, "#{alternate_on}"]).trim(),
        "0",
        "top left the terminal in the alternate screen"
    );
}

#[test]
fn top_without_a_terminal_points_to_stat() {
    let out = Command::new(BIN)
        .arg("top")
        .stdout(Stdio::piped())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("needs a terminal") && err.contains("stat --json"),
        "{err}"
    );
}
