//! `collapse-trace explain` on real processes: each `provoke` scenario held alive with the
//! hidden `--hold`, a long page-filled run watched live, and `sleep`, which has no eligible
//! mapping at all.

mod common;

use std::{
    process::{Child, Command, Stdio},
    time::Duration,
};

use common::{BIN, require_root, serial, spawn_watching};
use serde_json::Value;

/// Starts `provoke ARGS`, waits for its "holding" line (or, with `wait_hold` false, for it
/// to run a moment) and returns the child and its pid.
fn start_provoke(args: &[&str], wait_hold: bool) -> Child {
    let mut cmd = Command::new(BIN);
    cmd.arg("provoke").args(args).stdout(Stdio::null());
    let (child, rx) = spawn_watching(cmd, "provoke", "holding the last");
    if wait_hold {
        rx.recv_timeout(Duration::from_secs(60))
            .expect("provoke did not reach its hold");
    } else {
        std::thread::sleep(Duration::from_millis(500));
    }
    child
}

fn stop(mut child: Child) {
    // SAFETY: kill with a pid we own.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let _ = child.wait();
}

fn explain(pid: u32, extra: &[&str]) -> (Value, String) {
    let pid = pid.to_string();
    let run = |json: bool| {
        let mut c = Command::new(BIN);
        c.args(["explain", "--pid", &pid]).args(extra);
        if json {
            c.arg("--json");
        }
        let out = c.output().expect("run explain");
        assert!(
            out.status.success(),
            "explain failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let json: Value = serde_json::from_str(&run(true)).expect("explain --json");
    assert_eq!(json["schema"], "collapse-trace.explain/1");
    (json, run(false))
}

fn verdict(v: &Value) -> String {
    v["verdict"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The mapping of a provoke file named `name` (the tmpfs is detached, so the path is
/// `/NAME`).
fn mapping<'v>(v: &'v Value, name: &str) -> &'v Value {
    v["mappings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["path"].as_str().unwrap().ends_with(name))
        .unwrap_or_else(|| panic!("no mapping {name} in {v:#}"))
}

#[test]
fn uffd_holes_names_the_userfaultfd_and_ebusy() {
    require_root();
    let _g = serial();
    let p = start_provoke(&["uffd-holes", "-n", "1", "--hold", "60s"], true);
    let (v, text) = explain(p.id(), &[]);
    stop(p);
    let m = mapping(&v, "uffd-holes-0");
    assert_eq!(m["userfaultfd"], "missing", "{m:#}");
    assert_eq!(m["kind"], "shmem");
    let words = verdict(&v);
    assert!(
        words.contains("userfaultfd") && words.contains("EBUSY"),
        "{words}"
    );
    assert!(
        v["changes"][0].as_str().unwrap().contains("populate"),
        "{v:#}"
    );
    assert!(
        text.contains("userfaultfd missing") && text.contains("EBUSY"),
        "{text}"
    );
}

#[test]
fn a_collapsed_range_shows_huge() {
    require_root();
    let _g = serial();
    for (args, name) in [
        (
            &["collapse", "-n", "1", "--hold", "60s"][..],
            Some("collapse-0"),
        ),
        (&["anon", "-n", "1", "--hold", "60s"][..], None),
    ] {
        let p = start_provoke(args, true);
        let (v, text) = explain(p.id(), &[]);
        stop(p);
        let huge: Vec<&Value> = v["mappings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["huge_kb"].as_u64().unwrap() >= 2048)
            .collect();
        assert_eq!(huge.len(), 1, "{args:?}: {v:#}");
        match name {
            Some(n) => assert!(huge[0]["path"].as_str().unwrap().ends_with(n)),
            None => assert_eq!(huge[0]["kind"], "anon"),
        }
        assert!(verdict(&v).contains("is huge now"), "{v:#}");
        assert!(text.contains("is huge now"), "{text}");
    }
}

#[test]
fn page_filled_watched_live_says_a_retry_helps() {
    require_root();
    let _g = serial();
    // Long enough to outlast the watch; SIGINT ends it.
    let p = start_provoke(&["page-filled", "-n", "100000"], false);
    let pid = p.id();
    let out = Command::new(BIN)
        .args([
            "explain",
            "--pid",
            &pid.to_string(),
            "--duration",
            "4s",
            "--json",
        ])
        .output()
        .expect("run explain");
    stop(p);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["seen"]["source"], "live");
    let rows = v["seen"]["rows"].as_array().unwrap();
    assert!(v["seen"]["attempts"].as_u64().unwrap() > 0, "{v:#}");
    let transient: u64 = rows
        .iter()
        .filter(|r| r["outcome"] == "transient")
        .map(|r| r["count"].as_u64().unwrap())
        .sum();
    // page-filled's races end in page_filled, page_not_in_lru, page_locked or
    // could_not_delete_page_from_lru: all transient. In 4 s of tries some do.
    assert!(transient > 0, "no transient attempt seen: {v:#}");
    assert!(verdict(&v).contains("a retry helps"), "{v:#}");
    // Every attempt seen is this process's (filtered in the kernel by --pid).
    let sum: u64 = rows.iter().map(|r| r["count"].as_u64().unwrap()).sum();
    assert_eq!(sum, v["seen"]["attempts"].as_u64().unwrap());
}

#[test]
fn a_process_with_no_eligible_mapping_says_so() {
    require_root();
    let _g = serial();
    let mut sleep = Command::new("sleep").arg("60").spawn().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let (v, text) = explain(sleep.id(), &[]);
    let _ = sleep.kill();
    let _ = sleep.wait();
    let eligible = v["mappings"].as_array().unwrap().iter().any(|m| {
        m["khugepaged_eligible"].as_bool().unwrap()
            || m["madv_collapse_eligible"].as_bool().unwrap()
    });
    assert!(!eligible, "{v:#}");
    let words = verdict(&v);
    assert!(
        words.contains("no mapping of 2 MiB or more") || words.contains("can get huge pages"),
        "{words}"
    );
    assert!(text.contains("Verdict"), "{text}");
    // The settings are this machine's.
    let enabled = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled").unwrap();
    assert!(
        enabled.contains(&format!("[{}]", v["settings"]["enabled"].as_str().unwrap())),
        "{enabled} vs {v:#}"
    );
}
