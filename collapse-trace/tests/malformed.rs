//! Regression corpus of malformed captures (tests/data/malformed/): every file gets either a
//! clear error naming the line, or (line-tolerant text formats, a record cut short) a report
//! of what could be read. Nothing panics.

use std::path::Path;

use collapse_trace::{capture, model::capture::Loaded};

enum Expect {
    /// An error whose message holds these words.
    Err(&'static str),
    /// Read: (events, skipped lines, cut short). The cut zstd file is one frame per line
    /// (as a recorder's per-batch flushes make blocks), cut inside its fifth line.
    Ok(u64, u64, bool),
}

fn load(name: &str) -> anyhow::Result<Loaded> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/malformed")
        .join(name);
    capture::load(
        &path,
        None,
        &collapse_trace::kernel::probes::local_result_table(),
        &mut |_| {},
    )
}

#[test]
fn every_malformed_input_gets_a_clear_outcome() {
    use Expect::*;
    let cases = [
        ("record-empty.ndjson", Err("empty file")),
        (
            "record-header-cut.ndjson",
            Err(":1: the header line is incomplete"),
        ),
        (
            "record-wrong-version.ndjson",
            Err(":1: record format version 7 is newer"),
        ),
        (
            "record-wrong-format.ndjson",
            Err(":1: not a collapse-trace record"),
        ),
        (
            "record-bad-event-in-the-middle.ndjson",
            Err(":3: bad event line"),
        ),
        ("record-binary-junk.ndjson", Err(":2: bad event line")),
        (
            "record-bad-escape.ndjson",
            Err(":2: bad event line: comm: bad escape"),
        ),
        (
            "record-unknown-tracepoint.ndjson",
            Err(":2: bad event line: unknown tracepoint"),
        ),
        (
            "record-huge-line.ndjson.zst",
            Err(":2: line longer than 1 MiB"),
        ),
        (
            "record-data-after-trailer.ndjson",
            Err(":4: data after the trailer"),
        ),
        (
            "record-trailer-count-mismatch.ndjson",
            Err("the trailer says 6 events were written, 1 were read"),
        ),
        (
            "record-trailer-overflow.ndjson",
            Err("add up to more than 2^64: the file is corrupt"),
        ),
        (
            "nul-bytes.bin",
            Err("holds NUL bytes, so it is binary data"),
        ),
        ("record-last-line-cut.ndjson", Ok(1, 0, true)),
        ("record-no-trailer.ndjson", Ok(2, 0, true)),
        ("record-zstd-cut.ndjson.zst", Ok(3, 0, true)),
        ("ftrace-mixed-junk.txt", Ok(1, 2, false)),
        ("ftrace-only-junk.txt", Err("no collapse event understood")),
        ("ftrace-huge-line.txt.zst", Ok(1, 1, false)),
        ("perf-truncated-lines.txt", Ok(1, 3, false)),
        ("trace-cmd-wrong-numbers.txt", Ok(1, 3, false)),
    ];
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/malformed");
    let on_disk = std::fs::read_dir(&dir).unwrap().count();
    assert_eq!(on_disk, cases.len(), "every corpus file has an expectation");
    let mut wrong = Vec::new();
    for (name, expect) in cases {
        let got = load(name);
        let ok = match (&expect, &got) {
            (Err(words), Result::Err(e)) => format!("{e:#}").contains(words),
            (Ok(ev, sk, cut), Result::Ok(l)) => {
                // A cut zstd stream keeps what was decoded before the cut: at least 0.
                l.capture.events == *ev
                    && l.capture.skipped_lines == *sk
                    && l.capture.cut_short == *cut
            }
            _ => false,
        };
        if !ok {
            wrong.push(format!(
                "{name}: got {}",
                match &got {
                    Result::Ok(l) => format!("{:?}", l.capture),
                    Result::Err(e) => format!("error {e:#}"),
                }
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn checked_in_text_captures_read_the_same_run() {
    // Three captures of `provoke all -n 3` (one each), from tracefs, trace-cmd and perf.
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/capture");
    for (file, format) in [
        ("ftrace-trace.txt", "ftrace"),
        ("trace-cmd-report.txt", "trace-cmd"),
        ("perf-script.txt", "perf"),
    ] {
        let l = capture::load(
            &dir.join(file),
            None,
            &collapse_trace::kernel::probes::local_result_table(),
            &mut |_| {},
        )
        .unwrap();
        assert_eq!(l.capture.format.name(), format);
        assert_eq!(
            l.capture.skipped_lines, 0,
            "{file}: {:?}",
            l.capture.first_skipped
        );
        let r = collapse_trace::export::report::build(&l);
        let s = &r.snapshot;
        // 4 scenarios x 3 calls; the anon scenario adds scan_pmd + collapse_huge_page.
        assert_eq!((s.totals.calls, s.totals.events), (12, 24), "{file}");
        let c = &s.callers[0];
        assert_eq!(c.calls, 12, "{file}");
        // Every call was joined with the final result behind it: one scan event per call.
        for e in &c.errnos {
            let scans: u64 = e
                .results
                .iter()
                .filter(|r| r.tracepoint.contains("scan"))
                .map(|r| r.count)
                .sum();
            assert_eq!(scans, e.calls, "{file}: {}", e.errno);
        }
        assert!(
            r.findings.iter().any(|f| f.kind == "uffd_missing_pages"),
            "{file}"
        );
    }
}

/// /dev/zero is one endless line of NUL bytes: refused at once, in every format, never read
/// forever.
#[test]
fn dev_zero_is_refused_at_once() {
    use collapse_trace::model::capture::Format;
    for format in [None, Some(Format::Record), Some(Format::Ftrace)] {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let r = capture::load(
                Path::new("/dev/zero"),
                format,
                &collapse_trace::model::results::ResultTable::builtin(),
                &mut |_| {},
            );
            let _ = tx.send(r.err().map(|e| format!("{e:#}")));
        });
        let err = rx
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("reading /dev/zero did not end")
            .expect("/dev/zero was read as a capture");
        assert!(err.contains("NUL bytes"), "{err}");
    }
}

/// A record cut short has no kernel counters: its report says drops are unknown, never 0.
#[test]
fn a_cut_record_does_not_claim_zero_drops() {
    let l = load("record-no-trailer.ndjson").unwrap();
    let text = collapse_trace::export::report::render(
        &collapse_trace::export::report::build(&l),
        Path::new("record-no-trailer.ndjson"),
        10,
    );
    assert!(text.contains("unknown dropped"), "{text}");
    assert!(!text.contains(" 0 dropped"), "{text}");
}
