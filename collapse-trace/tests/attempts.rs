//! Attempts on the real kernel: `stat --json` over `provoke all` joins each range's scan,
//! collapse and MADV_COLLAPSE return into one attempt whose outcome agrees with the errno
//! the workload saw (ok -> collapsed, EBUSY -> refused, EAGAIN -> transient), and the text
//! report shows the attempts block.

mod common;

use std::collections::BTreeMap;

use collapse_trace::export::json::Snapshot;
use common::{BIN, require_root, serial, sigint_and_wait, start_attached};

#[test]
fn each_call_is_one_attempt_with_the_outcome_of_its_errno() {
    require_root();
    let _g = serial();
    let comm = format!("ctatt{}", std::process::id() % 100_000);
    let dir = std::env::temp_dir().join(format!("ct-attempts-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let link = dir.join(&comm);
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(BIN, &link).unwrap();

    let child = start_attached(&["stat", "--json", "--comm", &comm]);
    let tally = common::provoke_with(&link, &["all", "-n", "5"]);
    std::thread::sleep(std::time::Duration::from_millis(300));
    let out = sigint_and_wait(child);
    let snap: Snapshot = serde_json::from_str(&out).expect("stat --json");

    // What the workload saw, by errno.
    let mut want: BTreeMap<&str, u64> = BTreeMap::new();
    for s in &tally.scenarios {
        *want.entry("collapsed").or_default() += s.ok;
        for (e, n) in &s.errnos {
            let o = match e.as_str() {
                "EAGAIN" => "transient",
                "EBUSY" => "refused",
                other => panic!("unexpected errno {other} in {tally:?}"),
            };
            *want.entry(o).or_default() += n;
        }
    }
    let calls: u64 = tally.scenarios.iter().map(|s| s.calls).sum();
    let a = &snap.attempts;
    // Every call covers one 2 MiB range: one attempt each, none left open or unjoined.
    assert_eq!(a.total, calls, "{a:#?}");
    assert_eq!(a.in_progress, 0);
    assert_eq!(a.unjoined_events, 0);
    for c in &a.by_outcome {
        let name = serde_json::to_value(c.outcome).unwrap();
        let name = name.as_str().unwrap();
        assert_eq!(
            c.count,
            want.get(name).copied().unwrap_or(0),
            "{name}: {a:#?} vs {tally:?}"
        );
    }
    // uffd-holes' refusals carry exceed_none_pte and the userfaultfd advice.
    let refused = a
        .rows
        .iter()
        .find(|r| r.result == "exceed_none_pte")
        .expect("exceed_none_pte attempts");
    assert_eq!(refused.origin, "madvise");
    assert!(
        refused
            .advice
            .as_deref()
            .unwrap()
            .contains("uffd owner must populate")
    );
    // Latency: one sample per madvise attempt and per call, on the tick clock.
    let samples: u64 = a.latency.iter().map(|l| l.count).sum();
    assert_eq!(samples, calls);
    let call_samples: u64 = a.call_latency.iter().map(|l| l.count).sum();
    assert_eq!(call_samples, calls);
    assert_eq!(serde_json::to_value(a.clock).unwrap(), "tick");
    // Anonymous results have a meaning and an outcome now.
    let anon = snap
        .tracepoints
        .iter()
        .find(|t| t.name == "mm_khugepaged_scan_pmd")
        .unwrap();
    assert!(anon.results.iter().all(|r| r.outcome.is_some()));

    // The same in text, with --precise-time.
    let child = start_attached(&["stat", "--comm", &comm, "--precise-time"]);
    let _ = common::provoke_with(&link, &["collapse", "-n", "2"]);
    std::thread::sleep(std::time::Duration::from_millis(300));
    let text = sigint_and_wait(child);
    assert!(text.contains("Attempts (one per range tried"), "{text}");
    assert!(text.contains("precise clock"), "{text}");
    assert!(
        text.contains("success ratio 2 of 2 tried (100.0%)"),
        "{text}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
