//! Reading a record file: the header, the event lines through the [`pipeline`](super::pipeline),
//! then the trailer's counters; the error policy of a record (strict, but a cut last line
//! marks the capture cut short) is here.

use std::io::BufRead;

use anyhow::{Context as _, Result, bail};
use collapse_trace_common::RecordKind;

use super::{
    Header, Trailer,
    pipeline::{Stop, read_record_events},
};
use crate::{
    capture::{
        Progress,
        lines::{Line, LineReader},
    },
    model::{
        aggregate::Aggregate,
        capture::{CaptureInfo, Format, Loaded},
        kernel_info::KernelInfo,
    },
};

/// Reads a record file from its first line; `block` is the pipeline's block size (tests vary
/// it to cut lines across blocks).
pub(crate) fn load_record<R: BufRead>(
    mut lines: LineReader<R>,
    compressed: bool,
    bytes_read: &mut dyn FnMut() -> u64,
    progress: Progress<'_>,
    what: &str,
    block: usize,
) -> Result<Loaded> {
    let mut buf = Vec::with_capacity(4096);
    let mut cut: Option<String> = None;
    // A compressed stream cut by a crash ends in an error (or early): what was read stands.
    let next = |lines: &mut LineReader<R>, buf: &mut Vec<u8>, cut: &mut Option<String>| match lines
        .next(buf)
    {
        Ok(l) => Ok(l),
        Err(e) if compressed => {
            *cut = Some(format!(
                "the compressed stream ends early after line {} ({e})",
                lines.number
            ));
            Ok(Line::Eof)
        }
        Err(e) => Err(e),
    };
    let first = next(&mut lines, &mut buf, &mut cut).with_context(|| format!("reading {what}"))?;
    if first != Line::Complete {
        bail!(
            "{what}:1: {}",
            match first {
                Line::Eof => "empty file: not a collapse-trace record".to_string(),
                Line::TooLong => "the header line is longer than 1 MiB".to_string(),
                _ => "the header line is incomplete (the recorder was killed at once)".to_string(),
            }
        );
    }
    let header = super::parse_header(&buf).map_err(|e| anyhow::anyhow!("{what}:1: {e}"))?;
    let read = read_record_events(
        lines.into_inner(),
        block,
        bytes_read,
        progress,
        header.results.clone(),
        header.start_mono_ns,
        header.version,
    );
    let n = read.lines;
    match read.stop {
        Some(Stop::Bad(why)) => bail!("{what}:{n}: bad event line: {why}"),
        Some(Stop::BadTrailer(why)) => bail!("{what}:{n}: bad trailer: {why}"),
        Some(Stop::TooLong) => bail!("{what}:{n}: line longer than 1 MiB: not an event"),
        Some(Stop::AfterTrailer) => bail!("{what}:{n}: data after the trailer"),
        Some(Stop::Read(e)) if compressed => {
            // A compressed stream cut by a crash ends in an error: what was read stands.
            cut = Some(format!(
                "the compressed stream ends early after line {n} ({e})"
            ));
        }
        Some(Stop::Read(e)) => return Err(anyhow::Error::new(e).context(format!("reading {what}"))),
        Some(Stop::CutEvent) => cut = Some(format!("line {n} is incomplete")),
        Some(Stop::CutTrailer) => cut = Some(format!("line {n}, the trailer, is incomplete")),
        None => {}
    }
    finish_record(
        read.agg,
        header,
        read.trailer,
        read.events,
        read.last_ts,
        cut,
        read.lines,
        compressed,
        what,
    )
}

#[allow(clippy::too_many_arguments)]
fn finish_record(
    mut agg: Aggregate,
    header: Header,
    trailer: Option<Trailer>,
    events: u64,
    last_ts: u64,
    mut cut: Option<String>,
    line_count: u64,
    compressed: bool,
    what: &str,
) -> Result<Loaded> {
    let attached: Vec<(RecordKind, bool)> = header
        .tracepoints
        .iter()
        .filter_map(|k| RecordKind::from_name(&k.name).map(|t| (t, k.attached)))
        .collect();
    // The recorder named the cgroups it saw, on the machine it ran on.
    for (id, path) in trailer.iter().flat_map(|t| &t.cgroups) {
        agg.set_cgroup_path(*id, path.clone());
    }
    let (kernel_counts, duration_s) = match &trailer {
        Some(t) => {
            let k = t.counters().map_err(|e| anyhow::anyhow!("{what}: {e}"))?;
            agg.set_kernel(k);
            if t.delivered != events {
                bail!(
                    "{what}: the trailer says {} events were written, {events} were read",
                    t.delivered
                );
            }
            (
                true,
                t.end_mono_ns.saturating_sub(header.start_mono_ns) as f64 / 1e9,
            )
        }
        None => {
            if cut.is_none() {
                cut = Some(format!(
                    "no trailer after line {}: the recorder did not stop cleanly",
                    line_count
                ));
            }
            agg.set_kernel(agg.counters_from_delivered());
            (
                false,
                last_ts.saturating_sub(header.start_mono_ns) as f64 / 1e9,
            )
        }
    };
    let info = KernelInfo::offline(header.kernel_release.clone(), agg.table.clone(), &attached);
    Ok(Loaded {
        agg,
        info,
        filters: header.filters.clone(),
        duration_s,
        capture: CaptureInfo {
            format: Format::Record,
            compressed,
            cut_short: cut.is_some(),
            cut_reason: cut,
            lines: line_count,
            events,
            kernel_counts,
            skipped_lines: 0,
            first_skipped: None,
            other_events: 0,
            start_wall_ns: Some(header.start_wall_ns),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        capture::{
            lines::{MAX_LINE, memchr},
            record::{self, pipeline::BLOCK},
        },
        model::event::Event,
    };

    /// A record of `events` in memory, with or without its trailer.
    fn record_bytes(events: &[Event], trailer: bool) -> Vec<u8> {
        use record::*;
        let table = ResultTable::builtin();
        let header = Header {
            format: FORMAT.into(),
            version: VERSION,
            tool_version: "test".into(),
            kernel_release: "test".into(),
            results: table.clone(),
            tracepoints: RecordKind::ALL
                .iter()
                .map(|t| KindLine {
                    name: t.name().into(),
                    attached: true,
                })
                .collect(),
            probes: Vec::new(),
            start_wall_ns: 0,
            start_mono_ns: 0,
            filters: Filters::default(),
        };
        let mut out = serde_json::to_vec(&header).unwrap();
        out.push(b'\n');
        let mut agg = Aggregate::new(table);
        for e in events {
            agg.add(e);
            append_event_line(&mut out, e);
            out.push(b'\n');
        }
        if trailer {
            let t = TrailerLine {
                trailer: Trailer {
                    end_wall_ns: 1,
                    end_mono_ns: 2,
                    kernel: Trailer::kernel_lines(&agg.counters_from_delivered()),
                    delivered: events.len() as u64,
                    decode_errors: 0,
                    cgroups: Default::default(),
                },
            };
            serde_json::to_writer(&mut out, &t).unwrap();
            out.push(b'\n');
        }
        out
    }

    fn load_bytes(data: &[u8], block: usize) -> Result<Loaded> {
        load_record(
            LineReader::new(data),
            false,
            &mut || 0,
            &mut |_| {},
            "mem",
            block,
        )
    }

    /// The report of a capture, as JSON text (what `report --json` prints).
    fn report_of(l: &Loaded) -> String {
        serde_json::to_string(&crate::export::report::build(l)).unwrap()
    }

    #[test]
    fn records_read_the_same_at_any_block_size() {
        let events = record::tests::sample_events();
        let data = record_bytes(&events, true);
        let want = load_bytes(&data, BLOCK).unwrap();
        assert_eq!(want.capture.events, events.len() as u64);
        assert_eq!(want.capture.lines, events.len() as u64 + 2);
        assert!(!want.capture.cut_short && want.capture.kernel_counts);
        // Blocks from a byte (every line spans blocks) to a few lines.
        for block in [1, 2, 3, 7, 64, 1000, 4096] {
            let got = load_bytes(&data, block).unwrap();
            assert_eq!(got.capture, want.capture, "block {block}");
            assert_eq!(report_of(&got), report_of(&want), "block {block}");
        }
        // Blank lines after the trailer are fine; data is not.
        let mut blank = data.clone();
        blank.extend_from_slice(b"\n  \n\t\n");
        let mut junk = blank.clone();
        junk.extend_from_slice(b"{}\n");
        for block in [1, 5, BLOCK] {
            assert!(!load_bytes(&blank, block).unwrap().capture.cut_short);
            let err = format!("{:#}", load_bytes(&junk, block).err().unwrap());
            let n = events.len() + 6;
            assert!(
                err.contains(&format!("mem:{n}: data after the trailer")),
                "{err}"
            );
        }
    }

    #[test]
    fn version_1_records_read_as_current_ones() {
        /// An event line as version 1 wrote it: every field, zero or not.
        #[derive(serde::Serialize)]
        struct V1<'a> {
            ts_ns: u64,
            tracepoint: &'a str,
            result: i64,
            pid: u32,
            tgid: u32,
            comm: String,
            origin: &'a str,
            cgroup_id: u64,
            file: String,
            pfn: u64,
            present: i32,
            swap: i32,
            is_shmem: bool,
            nr: i32,
            index: u64,
            addr: u64,
            call_ns: u64,
            referenced: i32,
            none_or_zero: i32,
            unmapped: i32,
            isolated: i32,
            process_madvise: bool,
        }
        use crate::model::event::{escape, origin_name};
        // Version 1 and 2 lines have no owner and no file identity: they read as absent.
        let events: Vec<Event> = record::tests::sample_events()
            .into_iter()
            .map(|mut e| {
                e.owner_tgid = 0;
                e.owner_comm.clear();
                e.owner_cgroup_id = 0;
                e.dir.clear();
                e.dir_cut = false;
                e.real_name = false;
                e.inode = 0;
                e.dev = 0;
                e
            })
            .collect();
        let v2 = record_bytes(&events, true);
        let mut lines = v2.split(|&b| b == b'\n');
        let header = lines.next().unwrap();
        let mut v1 = String::from_utf8(header.to_vec())
            .unwrap()
            .replace(
                &format!("\"version\":{},", record::VERSION),
                "\"version\":1,",
            )
            .into_bytes();
        assert_ne!(v1, header);
        v1.push(b'\n');
        for e in &events {
            let line = V1 {
                ts_ns: e.ts_ns,
                tracepoint: e.tracepoint.name(),
                result: e.result,
                pid: e.pid,
                tgid: e.tgid,
                comm: escape(&e.comm),
                origin: origin_name(e.origin),
                cgroup_id: e.cgroup_id,
                file: escape(&e.filename),
                pfn: e.pfn,
                present: e.present,
                swap: e.swap,
                is_shmem: e.is_shmem,
                nr: e.nr,
                index: e.index,
                addr: e.addr,
                call_ns: e.call_ns,
                referenced: e.referenced,
                none_or_zero: e.none_or_zero,
                unmapped: e.unmapped,
                isolated: e.isolated,
                process_madvise: e.process_madvise,
            };
            serde_json::to_writer(&mut v1, &line).unwrap();
            v1.push(b'\n');
        }
        v1.extend_from_slice(lines.nth(events.len()).unwrap());
        v1.push(b'\n');
        assert!(v1.len() > v2.len());
        let (a, b) = (
            load_bytes(&v1, BLOCK).unwrap(),
            load_bytes(&v2, BLOCK).unwrap(),
        );
        assert!(!a.capture.cut_short && a.capture.kernel_counts);
        assert_eq!(a.capture, b.capture);
        assert_eq!(report_of(&a), report_of(&b));
    }

    #[test]
    fn a_cut_record_reads_up_to_the_last_whole_line() {
        let events = &record::tests::sample_events()[..12];
        let data = record_bytes(events, true);
        let header_len = memchr(&data).unwrap() + 1;
        for cut in header_len..=data.len() {
            let part = &data[..cut];
            // The events whose lines are whole (a last line without its newline counts
            // when it parses, as a recorder never writes half of one that would).
            let body = &part[header_len..];
            let whole = body.iter().filter(|&&b| b == b'\n').count();
            let tail = &body[body.len() - body.iter().rev().take_while(|&&b| b != b'\n').count()..];
            let tail_event =
                !tail.is_empty() && serde_json::from_slice::<record::RecordEvent>(tail).is_ok();
            let want_events = whole.min(events.len()) + usize::from(tail_event);
            let trailer_whole = cut >= data.len() - 1;
            for block in [3, 100, BLOCK] {
                let l = load_bytes(part, block)
                    .unwrap_or_else(|e| panic!("cut at {cut}, block {block}: {e:#}"));
                assert_eq!(
                    l.capture.events, want_events as u64,
                    "cut at {cut}, block {block}"
                );
                assert_eq!(
                    l.capture.cut_short, !trailer_whole,
                    "cut at {cut}, block {block}"
                );
            }
        }
    }

    #[test]
    fn bad_lines_are_named_at_any_block_size() {
        let events = &record::tests::sample_events()[..6];
        let data = record_bytes(events, true);
        let lines: Vec<&[u8]> = data.split(|&b| b == b'\n').collect();
        let with_line = |n: usize, line: &[u8]| {
            let mut out = Vec::new();
            for (i, l) in lines.iter().enumerate().take(lines.len() - 1) {
                out.extend_from_slice(if i + 1 == n { line } else { l });
                out.push(b'\n');
            }
            out
        };
        let long = vec![b' '; MAX_LINE + 1];
        let cases: [(usize, &[u8], &str); 6] = [
            (3, b"{\"ts_ns\":1,", ":3: bad event line: EOF while parsing"),
            (4, b"\xff\xfe", ":4: bad event line"),
            (2, b"", ":2: bad event line"),
            (5, &long, ":5: line longer than 1 MiB"),
            (8, b"{\"trailer\":7}", ":8: bad trailer"),
            (
                5,
                br#"{"ts_ns":1,"tracepoint":"mm_khugepaged_scan_file","origin":"x"}"#,
                ":5: bad event line: unknown origin",
            ),
        ];
        for (n, line, words) in cases {
            let bad = with_line(n, line);
            for block in [1, 7, 4096, BLOCK] {
                if line.len() > MAX_LINE && block < 4096 {
                    continue; // slow, and no different
                }
                let err = format!("{:#}", load_bytes(&bad, block).err().unwrap());
                assert!(err.contains(words), "line {n}, block {block}: {err}");
            }
        }
    }
}
