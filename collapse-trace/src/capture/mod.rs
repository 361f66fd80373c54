//! Readers of captures: collapse-trace's own record files ([`record`]), and text made without
//! collapse-trace ([`ftrace`]: tracefs `trace`/`trace_pipe`, `trace-cmd report`, `perf
//! script`). Every input becomes [`Event`](crate::model::event::Event)s fed to one
//! [`Aggregate`], as live collection does.
//!
//! Error policy: a record file is strict (a bad line is an error naming its line number),
//! except that its last line may be cut (a killed recorder): then the capture is marked cut
//! short. Text captures are line-tolerant (they hold headers, other events, lost-event
//! markers): lines that are not understood are skipped and counted, and the first one is
//! named; a text input where no event is understood is an error.

pub mod ftrace;
pub mod record;

use std::{
    cell::Cell,
    fs::File,
    io::{self, BufRead, BufReader, Read},
    path::Path,
    rc::Rc,
};

use anyhow::{Context as _, Result, bail};
use collapse_trace_common::Tracepoint;
use serde::{Deserialize, Serialize};

use crate::{
    export::json::Filters,
    kernel::{probes::KernelInfo, tracefs::Tracefs},
    model::{
        aggregate::Aggregate,
        results::{ResultSource, ResultTable},
    },
};

/// The longest line read; longer lines are an error (record) or skipped (text).
pub const MAX_LINE: usize = 1 << 20;

/// What kind of capture.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// `collapse-trace record` NDJSON (plain or zstd).
    Record,
    /// tracefs `trace` / `trace_pipe` text.
    Ftrace,
    /// `trace-cmd report` text.
    TraceCmd,
    /// `perf script` text.
    Perf,
}

impl Format {
    /// The name used in outputs.
    pub fn name(self) -> &'static str {
        match self {
            Format::Record => "record",
            Format::Ftrace => "ftrace",
            Format::TraceCmd => "trace-cmd",
            Format::Perf => "perf",
        }
    }
}

/// A skipped line.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Skipped {
    /// 1-based line number.
    pub line: u64,
    /// Why.
    pub why: String,
}

/// What reading the capture found, besides the events.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CaptureInfo {
    /// The format read.
    pub format: Format,
    /// zstd-compressed.
    pub compressed: bool,
    /// The capture ends before its recorder stopped cleanly (a record without trailer, or
    /// a compressed stream that ends early).
    pub cut_short: bool,
    /// Why it counts as cut short.
    pub cut_reason: Option<String>,
    /// Lines read.
    pub lines: u64,
    /// Events (and MADV_COLLAPSE calls) read.
    pub events: u64,
    /// Whether the per-kind counts are the kernel's own counters (a complete record) or
    /// counts of the events read (text captures, cut records: drops unknown).
    pub kernel_counts: bool,
    /// Text captures: lines not understood, skipped.
    pub skipped_lines: u64,
    /// The first of them.
    pub first_skipped: Option<Skipped>,
    /// Text captures: events of other tracepoints, syscalls other than MADV_COLLAPSE.
    pub other_events: u64,
    /// Start of the capture, wall clock ns (records only).
    pub start_wall_ns: Option<u64>,
}

/// A capture, read.
pub struct Loaded {
    /// The aggregation core, fed with every event.
    pub agg: Aggregate,
    /// The kernel it was taken on, as far as the capture says.
    pub info: KernelInfo,
    /// Filters of the recorder (records only).
    pub filters: Filters,
    /// Seconds covered.
    pub duration_s: f64,
    /// What reading found.
    pub capture: CaptureInfo,
}

/// One line out of a [`LineReader`].
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    /// End of input.
    Eof,
    /// A line that ended with a newline (not included).
    Complete,
    /// The last line, without a newline.
    Partial,
    /// A line longer than [`MAX_LINE`] (skipped up to its newline).
    TooLong,
}

/// Reads lines of at most [`MAX_LINE`] bytes into a reused buffer.
pub struct LineReader<R> {
    inner: R,
    /// Lines returned so far (the number of the last one).
    pub number: u64,
}

impl<R: BufRead> LineReader<R> {
    /// Wraps a reader.
    pub fn new(inner: R) -> Self {
        LineReader { inner, number: 0 }
    }

    /// The next line into `buf` (cleared first).
    pub fn next(&mut self, buf: &mut Vec<u8>) -> io::Result<Line> {
        buf.clear();
        let mut too_long = false;
        loop {
            let chunk = match self.inner.fill_buf() {
                Ok(c) => c,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if chunk.is_empty() {
                if buf.is_empty() && !too_long {
                    return Ok(Line::Eof);
                }
                self.number += 1;
                return Ok(if too_long {
                    Line::TooLong
                } else {
                    Line::Partial
                });
            }
            let (take, done) = match memchr(chunk) {
                Some(i) => (i, true),
                None => (chunk.len(), false),
            };
            if !too_long {
                if buf.len() + take > MAX_LINE {
                    too_long = true;
                    buf.clear();
                } else {
                    buf.extend_from_slice(&chunk[..take]);
                }
            }
            self.inner.consume(if done { take + 1 } else { take });
            if done {
                self.number += 1;
                return Ok(if too_long {
                    Line::TooLong
                } else {
                    Line::Complete
                });
            }
        }
    }
}

fn memchr(b: &[u8]) -> Option<usize> {
    memchr::memchr(b'\n', b)
}

/// Counts the bytes read from the file (for a progress bar).
struct Counting<R> {
    inner: R,
    count: Rc<Cell<u64>>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.set(self.count.get() + n as u64);
        Ok(n)
    }
}

const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// Progress callbacks: called with the bytes of the file read so far, now and then.
pub type Progress<'a> = &'a mut dyn FnMut(u64);

/// Reads the capture at `path`: sniffs the format (unless `format` is given) and whether it
/// is zstd-compressed, and feeds every event to an aggregation core.
pub fn load(path: &Path, format: Option<Format>, progress: Progress<'_>) -> Result<Loaded> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let count = Rc::new(Cell::new(0));
    let mut raw = BufReader::with_capacity(
        256 * 1024,
        Counting {
            inner: file,
            count: count.clone(),
        },
    );
    let compressed = raw
        .fill_buf()
        .with_context(|| format!("reading {}", path.display()))?
        .starts_with(&ZSTD_MAGIC);
    let reader: Box<dyn BufRead> = if compressed {
        let d = zstd::stream::read::Decoder::with_buffer(raw).context("starting zstd")?;
        Box::new(BufReader::with_capacity(256 * 1024, d))
    } else {
        Box::new(raw)
    };
    load_from(
        reader,
        compressed,
        format,
        &mut || count.get(),
        progress,
        &path.display().to_string(),
    )
}

/// [`load`] from any reader (`what` names it in errors); used by the fuzz targets too.
pub fn load_from(
    mut reader: Box<dyn BufRead + '_>,
    compressed: bool,
    format: Option<Format>,
    bytes_read: &mut dyn FnMut() -> u64,
    progress: Progress<'_>,
    what: &str,
) -> Result<Loaded> {
    let head = reader
        .fill_buf()
        .with_context(|| format!("reading {what}"))?;
    if head.is_empty() {
        bail!("{what}: empty file: no capture in it");
    }
    let format = format.unwrap_or_else(|| sniff(head));
    let lines = LineReader::new(reader);
    match format {
        Format::Record => load_record(lines, compressed, bytes_read, progress, what),
        f => load_text(lines, f, compressed, bytes_read, progress, what),
    }
}

/// Guesses the format from the first bytes.
pub fn sniff(head: &[u8]) -> Format {
    let text = String::from_utf8_lossy(&head[..head.len().min(64 * 1024)]);
    let first = text.trim_start();
    if first.starts_with('{') {
        return Format::Record;
    }
    let mut lines = text.lines().take(200);
    if lines.clone().any(|l| {
        let l = l.trim_start();
        l.starts_with("cpus=") || l.starts_with("version = ")
    }) {
        return Format::TraceCmd;
    }
    if lines.clone().any(|l| l.starts_with("# tracer:")) {
        return Format::Ftrace;
    }
    if lines.any(|l| {
        ftrace::parse_perf_line(l).is_some()
            && (l.contains(" huge_memory:") || l.contains(" syscalls:"))
    }) {
        return Format::Perf;
    }
    Format::Ftrace
}

fn load_record<R: BufRead>(
    mut lines: LineReader<R>,
    compressed: bool,
    bytes_read: &mut dyn FnMut() -> u64,
    progress: Progress<'_>,
    what: &str,
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
    let header = record::parse_header(&buf).map_err(|e| anyhow::anyhow!("{what}:1: {e}"))?;
    let (trailer, events, last_ts, agg) = read_record_events(
        &mut lines,
        &mut buf,
        &mut cut,
        &next,
        bytes_read,
        progress,
        what,
        header.results.clone(),
        header.start_mono_ns,
    )?;
    finish_record(
        agg,
        header,
        trailer,
        events,
        last_ts,
        cut,
        lines.number,
        compressed,
        what,
    )
}

/// Lines handed to a parser thread at once.
const CHUNK_LINES: usize = 2048;
/// Parser threads: parsing JSON is most of the work of reading a record.
const PARSERS: usize = 2;

/// Lines of a record, for a parser thread.
struct Chunk {
    first_line: u64,
    data: Vec<u8>,
    /// End offset of each line in `data`, and whether it is the cut last line.
    ends: Vec<(usize, bool)>,
}

/// A parser thread's answer for one chunk: the events, and the first bad line if any
/// (line number, message, whether it was the cut last line).
type Parsed = (Vec<crate::model::event::Event>, Option<(u64, String, bool)>);

fn parse_chunk(c: &Chunk) -> Parsed {
    let mut out = Vec::with_capacity(c.ends.len());
    let mut start = 0;
    for (i, (end, partial)) in c.ends.iter().enumerate() {
        let line = &c.data[start..*end];
        start = *end;
        let parsed = serde_json::from_slice::<record::RecordEvent>(line)
            .map_err(|e| e.to_string())
            .and_then(|r| r.to_event());
        match parsed {
            Ok(e) => out.push(e),
            Err(e) => return (out, Some((c.first_line + i as u64, e, *partial))),
        }
    }
    (out, None)
}

/// Reads event lines up to the trailer: this thread splits lines into chunks, [`PARSERS`]
/// threads parse them, one more feeds the aggregation core in the file's order (the errno
/// join needs a call's events before its exit record).
#[allow(clippy::too_many_arguments, clippy::type_complexity)]
fn read_record_events<R: BufRead>(
    lines: &mut LineReader<R>,
    buf: &mut Vec<u8>,
    cut: &mut Option<String>,
    next: &dyn Fn(&mut LineReader<R>, &mut Vec<u8>, &mut Option<String>) -> io::Result<Line>,
    bytes_read: &mut dyn FnMut() -> u64,
    progress: Progress<'_>,
    what: &str,
    table: ResultTable,
    start_mono_ns: u64,
) -> Result<(Option<record::Trailer>, u64, u64, Aggregate)> {
    use std::sync::mpsc::{Receiver, sync_channel};
    let mut to_parsers = Vec::new();
    let mut from_parsers: Vec<Receiver<Parsed>> = Vec::new();
    let mut parsers = Vec::new();
    for _ in 0..PARSERS {
        let (tx, rx) = sync_channel::<Chunk>(4);
        let (rtx, rrx) = sync_channel::<Parsed>(4);
        parsers.push(std::thread::spawn(move || {
            for c in rx {
                if rtx.send(parse_chunk(&c)).is_err() {
                    break;
                }
            }
        }));
        to_parsers.push(tx);
        from_parsers.push(rrx);
    }
    // The aggregator takes answers round-robin: the order chunks were sent in.
    let aggregator = std::thread::spawn(move || {
        let mut agg = Aggregate::new(table);
        let (mut events, mut last_ts) = (0u64, start_mono_ns);
        let mut bad: Option<(u64, String, bool)> = None;
        'outer: loop {
            for rx in &from_parsers {
                let Ok((evs, err)) = rx.recv() else {
                    break 'outer;
                };
                if bad.is_some() {
                    continue;
                }
                for e in &evs {
                    last_ts = last_ts.max(e.ts_ns);
                    agg.add(e);
                }
                events += evs.len() as u64;
                bad = err;
            }
        }
        (agg, events, last_ts, bad)
    });

    let mut trailer = None;
    let mut sent = 0usize;
    let mut chunk = Chunk {
        first_line: lines.number + 1,
        data: Vec::with_capacity(CHUNK_LINES * 400),
        ends: Vec::with_capacity(CHUNK_LINES),
    };
    let mut failure: Option<anyhow::Error> = None;
    loop {
        let kind = match next(lines, buf, cut) {
            Ok(k) => k,
            Err(e) => {
                failure = Some(anyhow::Error::new(e).context(format!("reading {what}")));
                break;
            }
        };
        let n = lines.number;
        match kind {
            Line::Eof => break,
            Line::TooLong => {
                failure = Some(anyhow::anyhow!(
                    "{what}:{n}: line longer than 1 MiB: not an event"
                ));
                break;
            }
            Line::Complete | Line::Partial => {}
        }
        if trailer.is_some() {
            if buf.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            failure = Some(anyhow::anyhow!("{what}:{n}: data after the trailer"));
            break;
        }
        if record::is_trailer(buf) {
            match serde_json::from_slice::<record::TrailerLine>(buf) {
                Ok(t) => {
                    trailer = Some(t.trailer);
                    continue;
                }
                Err(_) if kind == Line::Partial => {
                    *cut = Some(format!("line {n}, the trailer, is incomplete"));
                    break;
                }
                Err(e) => {
                    failure = Some(anyhow::anyhow!("{what}:{n}: bad trailer: {e}"));
                    break;
                }
            }
        }
        chunk.data.extend_from_slice(buf);
        chunk.ends.push((chunk.data.len(), kind == Line::Partial));
        if chunk.ends.len() == CHUNK_LINES {
            let full = std::mem::replace(
                &mut chunk,
                Chunk {
                    first_line: n + 1,
                    data: Vec::with_capacity(CHUNK_LINES * 400),
                    ends: Vec::with_capacity(CHUNK_LINES),
                },
            );
            if to_parsers[sent % PARSERS].send(full).is_err() {
                break;
            }
            sent += 1;
            if sent.is_multiple_of(32) {
                progress(bytes_read());
            }
        }
    }
    if !chunk.ends.is_empty() {
        let _ = to_parsers[sent % PARSERS].send(chunk);
    }
    drop(to_parsers);
    for p in parsers {
        p.join()
            .map_err(|_| anyhow::anyhow!("a parser thread panicked"))?;
    }
    let (agg, events, last_ts, bad) = aggregator
        .join()
        .map_err(|_| anyhow::anyhow!("the aggregation thread panicked"))?;
    progress(bytes_read());
    if let Some((n, e, partial)) = bad {
        if partial {
            *cut = Some(format!("line {n} is incomplete"));
            return Ok((None, events, last_ts, agg));
        }
        bail!("{what}:{n}: bad event line: {e}");
    }
    if let Some(f) = failure {
        return Err(f);
    }
    Ok((trailer, events, last_ts, agg))
}

#[allow(clippy::too_many_arguments)]
fn finish_record(
    mut agg: Aggregate,
    header: record::Header,
    trailer: Option<record::Trailer>,
    events: u64,
    last_ts: u64,
    mut cut: Option<String>,
    line_count: u64,
    compressed: bool,
    what: &str,
) -> Result<Loaded> {
    let attached: Vec<(Tracepoint, bool)> = header
        .tracepoints
        .iter()
        .filter_map(|k| Tracepoint::from_name(&k.name).map(|t| (t, k.attached)))
        .collect();
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

/// `rest` of `<name>:   rest` (a trace-cmd buffer prefix), if the line has one.
fn strip_buffer_prefix(line: &str) -> Option<&str> {
    let t = line.trim_start();
    let end = t.find(|c: char| c.is_whitespace())?;
    let (word, rest) = t.split_at(end);
    (word.len() > 1 && word.ends_with(':')).then_some(rest)
}

/// The result names of this machine's kernel, if tracefs is readable (never mounts it);
/// else the built-in table. Text captures carry names; this only numbers them.
pub fn local_table() -> ResultTable {
    let mut names = std::collections::BTreeMap::new();
    if let Some(root) = Tracefs::find()
        && let Ok(fs) = Tracefs::open(Some(&root))
    {
        for ev in [
            "mm_khugepaged_scan_file",
            "mm_khugepaged_collapse_file",
            "mm_khugepaged_scan_pmd",
            "mm_collapse_huge_page",
        ] {
            if let Ok(Some(f)) = fs.format("huge_memory", ev) {
                for field in ["result", "status"] {
                    for (n, s) in f.symbols.get(field).into_iter().flatten() {
                        names.entry(*n).or_insert_with(|| s.clone());
                    }
                }
            }
        }
    }
    if names.is_empty() {
        ResultTable::builtin()
    } else {
        ResultTable::new(ResultSource::Tracefs, names)
    }
}

fn load_text<R: BufRead>(
    mut lines: LineReader<R>,
    format: Format,
    compressed: bool,
    bytes_read: &mut dyn FnMut() -> u64,
    progress: Progress<'_>,
    what: &str,
) -> Result<Loaded> {
    let mut table = local_table();
    table.source = ResultSource::Capture;
    let mut agg = Aggregate::new(table);
    let mut decoder = ftrace::TextDecoder::new();
    let mut buf = Vec::with_capacity(4096);
    let (mut events, mut other, mut skipped) = (0u64, 0u64, 0u64);
    let mut first_skipped: Option<Skipped> = None;
    let mut cut = None;
    let mut seen = [false; collapse_trace_common::NUM_TRACEPOINTS];
    let mut skip = |n: u64, why: String, skipped: &mut u64| {
        *skipped += 1;
        if first_skipped.is_none() {
            first_skipped = Some(Skipped { line: n, why });
        }
    };
    loop {
        let kind = match lines.next(&mut buf) {
            Ok(k) => k,
            Err(e) if compressed => {
                cut = Some(format!(
                    "the compressed stream ends early after line {} ({e})",
                    lines.number
                ));
                break;
            }
            Err(e) => return Err(e).with_context(|| format!("reading {what}")),
        };
        let n = lines.number;
        match kind {
            Line::Eof => break,
            Line::TooLong => {
                skip(n, "longer than 1 MiB".into(), &mut skipped);
                continue;
            }
            Line::Complete | Line::Partial => {}
        }
        let text = String::from_utf8_lossy(&buf);
        let trimmed = text.trim();
        let header = format == Format::TraceCmd
            && ["cpus=", "version = ", "Buffer: ", "CPU "]
                .iter()
                .any(|h| trimmed.starts_with(h));
        if trimmed.is_empty() || trimmed.starts_with('#') || header {
            continue;
        }
        let parsed = match format {
            Format::Perf => ftrace::parse_perf_line(&text),
            // trace-cmd prefixes lines of an instance's buffer with `<instance>: `.
            Format::TraceCmd => strip_buffer_prefix(&text)
                .and_then(ftrace::parse_line)
                .or_else(|| ftrace::parse_line(&text)),
            _ => ftrace::parse_line(&text),
        };
        let Some(l) = parsed else {
            skip(
                n,
                format!("not a {} event line", format.name()),
                &mut skipped,
            );
            continue;
        };
        match decoder.decode(l, &mut agg.table) {
            ftrace::Decoded::Event(e) => {
                events += 1;
                seen[e.tracepoint as usize] = true;
                agg.add(&e);
                if events.is_multiple_of(65536) {
                    progress(bytes_read());
                }
            }
            ftrace::Decoded::Other => other += 1,
            ftrace::Decoded::Bad(why) => skip(n, why.to_string(), &mut skipped),
        }
    }
    progress(bytes_read());
    if events == 0 && skipped > 0 {
        let f = first_skipped
            .as_ref()
            .map_or(String::new(), |s| format!(": line {}: {}", s.line, s.why));
        bail!(
            "{what}: no collapse event understood as {} text ({skipped} lines skipped){f}",
            format.name()
        );
    }
    agg.set_kernel(agg.counters_from_delivered());
    let attached: Vec<(Tracepoint, bool)> = Tracepoint::ALL
        .into_iter()
        .map(|t| (t, seen[t as usize]))
        .collect();
    let duration_s = agg
        .span_ns
        .map_or(0.0, |(a, b)| b.saturating_sub(a) as f64 / 1e9);
    let info = KernelInfo::offline(
        "unknown (text capture)".to_string(),
        agg.table.clone(),
        &attached,
    );
    Ok(Loaded {
        agg,
        info,
        filters: Filters::default(),
        duration_s,
        capture: CaptureInfo {
            format,
            compressed,
            cut_short: cut.is_some(),
            cut_reason: cut,
            lines: lines.number,
            events,
            kernel_counts: false,
            skipped_lines: skipped,
            first_skipped,
            other_events: other,
            start_wall_ns: None,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_reader_caps_and_marks_the_last_line() {
        let mut data = b"one\n".to_vec();
        data.extend(std::iter::repeat_n(b'x', MAX_LINE + 5));
        data.extend(b"\nthree");
        let mut r = LineReader::new(&data[..]);
        let mut buf = Vec::new();
        assert_eq!(r.next(&mut buf).unwrap(), Line::Complete);
        assert_eq!(buf, b"one");
        assert_eq!(r.next(&mut buf).unwrap(), Line::TooLong);
        assert_eq!(r.next(&mut buf).unwrap(), Line::Partial);
        assert_eq!((buf.as_slice(), r.number), (&b"three"[..], 3));
        assert_eq!(r.next(&mut buf).unwrap(), Line::Eof);
    }

    #[test]
    fn sniffs_formats() {
        assert_eq!(sniff(b"{\"format\":1}"), Format::Record);
        assert_eq!(sniff(b"# tracer: nop\n#\n"), Format::Ftrace);
        assert_eq!(sniff(b"cpus=2\n  a-1 [000] 1.0: x: y\n"), Format::TraceCmd);
        assert_eq!(
            sniff(b"  a 1 [000] 1.000: huge_memory:mm_collapse_huge_page: mm=1, isolated=1, status=succeeded\n"),
            Format::Perf
        );
    }
}
