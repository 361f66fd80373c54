//! `collapse-trace top` in a real terminal (tmux), as root against the real kernel: the
//! page_filled row must show the count that `stat --json` reports for the same run, and
//! quitting must exit 0 and leave the alternate screen. At 80x24, 120x40 and 200x60 every
//! result name and count `stat` saw, and the drop count, must be on screen whole; `?` must
//! list every key; `v` must switch to the attempts and owners views.

mod common;

use common::*;

use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use collapse_trace::{export::json::Snapshot, provoke::Tally, tui::app::KEYS};

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
    start_stat_for(&workload_comm())
}

fn start_stat_for(comm: &str) -> Child {
    let mut child = Command::new(BIN)
        .args(["stat", "--json", "--comm", comm])
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
    let _serial = serial();
    let name = format!("ct-top-{}", std::process::id());
    let exit_file = std::env::temp_dir().join(format!("{name}.exit"));
    let _ = std::fs::remove_file(&exit_file);
    let cmd = format!(
        "{BIN} top --comm {} --interval 500ms; echo $? > {}; sleep 60",
        workload_comm(),
        exit_file.display()
    );
    let session = Session::start(&name, 150, 45, &cmd);
    let screen = || session.screen();
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
        s.lines().find_map(|l| {
            let w: Vec<&str> = l.split([' ', '│', '>']).filter(|w| !w.is_empty()).collect();
            w.windows(3)
                .find(|x| x[0] == "collapse_file" && x[1] == "page_filled")
                .and_then(|x| x[2].parse().ok())
        })
    };
    let mut last = String::new();
    let start = Instant::now();
    while row_count(&last) != Some(want) && start.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(200));
        last = screen();
    }
    assert_eq!(row_count(&last), Some(want), "top's screen:\n{last}");
    assert!(session.display("#{alternate_on}") == "1");

    session.send_keys("q");
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
        session.display("#{alternate_on}"),
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

/// The sizes `top` must work at: what many terminals open at, a laptop's half screen, a
/// large monitor.
const SIZES: [(u16, u16); 3] = [(80, 24), (120, 40), (200, 60)];

/// Whether a line of `screen` reads `words` in order, each whole (between spaces, box
/// lines or the seed marker).
fn has_row(screen: &str, words: &[&str]) -> bool {
    screen.lines().any(|l| {
        let w: Vec<&str> = l.split([' ', '│', '>']).filter(|w| !w.is_empty()).collect();
        w.windows(words.len()).any(|x| x == words)
    })
}

/// The short tracepoint name `top` shows.
fn short(tp: &str) -> &str {
    tp.trim_start_matches("mm_khugepaged_")
        .trim_start_matches("mm_")
}

#[test]
fn top_at_three_sizes_shows_every_result_whole_help_and_views() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(unsafe { libc::geteuid() }, 0, "this test needs root");
    let _serial = serial();
    // A comm of this test's own: the other test of this binary uses workload_comm().
    let comm = format!("ct-s{}", std::process::id() % 1_000_000);
    let sessions: Vec<(Session, (u16, u16))> = SIZES
        .iter()
        .map(|&(w, h)| {
            let name = format!("ct-top-{w}x{h}-{}", std::process::id());
            let cmd = format!("{BIN} top --comm {comm} --interval 500ms; sleep 60");
            (Session::start(&name, w, h, &cmd), (w, h))
        })
        .collect();
    let screen = |s: &Session| s.screen();
    for (s, _) in &sessions {
        wait_for("top to start", Duration::from_secs(30), || {
            screen(s).contains("collapse-trace top")
        });
    }

    // The reference: stat, filtered the same way, over the same workload.
    let stat = start_stat_for(&comm);
    let mut tally = None;
    for scenario in ["uffd-holes", "page-filled"] {
        let out = Command::new(BIN)
            .args(["provoke", scenario, "--json", "--comm", &comm])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        tally = Some(serde_json::from_slice::<Tally>(&out.stdout).unwrap());
    }
    let tally = tally.unwrap();
    std::thread::sleep(Duration::from_millis(500));
    // SAFETY: kill with a pid we own.
    unsafe { libc::kill(stat.id() as i32, libc::SIGINT) };
    let snap: Snapshot = serde_json::from_slice(&stat.wait_with_output().unwrap().stdout).unwrap();
    let want: Vec<[String; 3]> = snap
        .tracepoints
        .iter()
        .flat_map(|t| {
            t.results.iter().map(|r| {
                [
                    short(&t.name).to_string(),
                    r.result.clone(),
                    r.count.to_string(),
                ]
            })
        })
        .collect();
    for (tp, result) in [
        ("scan_file", "exceed_none_pte"),
        ("collapse_file", "page_filled"),
        ("madvise_collapse", "EBUSY"),
    ] {
        assert!(
            want.iter().any(|w| w[0] == tp && w[1] == result),
            "the workload did not provoke {tp} {result}: {want:?}"
        );
    }

    // Events view: every (tracepoint, result, count) whole, and the drop count, at each size.
    for (s, (w, h)) in &sessions {
        let mut last = String::new();
        let start = Instant::now();
        let whole = |scr: &str| want.iter().all(|r| has_row(scr, &[&r[0], &r[1], &r[2]]));
        while !whole(&last) && start.elapsed() < Duration::from_secs(15) {
            std::thread::sleep(Duration::from_millis(250));
            last = screen(s);
        }
        eprintln!("top at {w}x{h}, events view:\n{last}");
        for r in &want {
            assert!(
                has_row(&last, &[&r[0], &r[1], &r[2]]),
                "{w}x{h}: row {r:?} not whole:\n{last}"
            );
        }
        let first = last.lines().next().unwrap_or("");
        assert!(
            first.split("  ").any(|x| x
                .strip_prefix("drops ")
                .is_some_and(|n| n.trim().parse::<u64>().is_ok())),
            "{w}x{h}: no whole drop count in the header: {first:?}"
        );
        assert!(last.contains("madvise_collapse"), "{w}x{h}:\n{last}");
    }

    // `?`: the help lists every key with what it does.
    for (s, (w, h)) in &sessions {
        s.send_keys("?");
        let mut last = String::new();
        wait_for("the help overlay", Duration::from_secs(5), || {
            last = screen(s);
            last.contains("any key closes this help")
        });
        eprintln!("top at {w}x{h}, help:\n{last}");
        for (k, what) in KEYS {
            assert!(
                last.lines().any(|l| l.contains(k) && l.contains(what)),
                "{w}x{h}: the help lacks {k:?} {what:?}:\n{last}"
            );
        }
        s.send_keys("x");
        wait_for("the help to close", Duration::from_secs(5), || {
            !screen(s).contains("any key closes this help")
        });
    }

    // `v`: the attempts view, every (origin, outcome, result, count) of stat's attempts.
    let attempts: Vec<[String; 4]> = snap
        .attempts
        .rows
        .iter()
        .map(|r| {
            [
                r.origin.clone(),
                r.outcome.name().to_string(),
                r.result.clone(),
                r.count.to_string(),
            ]
        })
        .collect();
    assert!(
        attempts
            .iter()
            .any(|a| a[2] == "page_filled" && a[1] == "transient"),
        "{attempts:?}"
    );
    for (s, (w, h)) in &sessions {
        s.send_keys("v");
        let mut last = String::new();
        let all = |scr: &str| {
            attempts
                .iter()
                .all(|a| has_row(scr, &[&a[0], &a[1], &a[2], &a[3]]))
        };
        let start = Instant::now();
        while !(last.contains("Outcomes") && all(&last)) && start.elapsed() < Duration::from_secs(5)
        {
            std::thread::sleep(Duration::from_millis(200));
            last = screen(s);
        }
        eprintln!("top at {w}x{h}, attempts view:\n{last}");
        assert!(last.contains("Outcomes"), "{w}x{h}:\n{last}");
        for a in &attempts {
            assert!(
                has_row(&last, &[&a[0], &a[1], &a[2], &a[3]]),
                "{w}x{h}: attempt row {a:?} not whole:\n{last}"
            );
        }
        assert!(
            !last.contains("TRACEPOINT"),
            "{w}x{h}: still the events view:\n{last}"
        );
    }

    // `v` again: the owners view names the workload as the memory's owner.
    let owner = format!("{comm} ({})", tally.pid);
    for (s, (w, h)) in &sessions {
        s.send_keys("v");
        let mut last = String::new();
        let start = Instant::now();
        while !(last.contains("Owners of the memory") && last.contains(&owner))
            && start.elapsed() < Duration::from_secs(5)
        {
            std::thread::sleep(Duration::from_millis(200));
            last = screen(s);
        }
        eprintln!("top at {w}x{h}, owners view:\n{last}");
        assert!(last.contains("Owners of the memory"), "{w}x{h}:\n{last}");
        assert!(last.contains(&owner), "{w}x{h}: no {owner}:\n{last}");
        assert!(
            !last.contains("Outcomes"),
            "{w}x{h}: still the attempts view:\n{last}"
        );
        s.send_keys("q");
    }
    for (s, (w, h)) in &sessions {
        wait_for("top to quit", Duration::from_secs(15), || {
            s.display("#{alternate_on}") == "0"
        });
        let _ = (w, h);
    }
}
