//! Readers of captures: collapse-trace's own record files ([`record`]), and text made without
//! collapse-trace ([`text`]: tracefs `trace`/`trace_pipe`, `trace-cmd report`, `perf
//! script`). Every input becomes [`Event`](crate::model::event::Event)s fed to one
//! [`Aggregate`], as live collection does.
//!
//! Error policy: a record file is strict (a bad line is an error naming its line number),
//! except that its last line may be cut (a killed recorder): then the capture is marked cut
//! short. Text captures are line-tolerant (they hold headers, other events, lost-event
//! markers): lines that are not understood are skipped and counted, and the first one is
//! named; a text input where no event is understood is an error.

pub mod record;
pub mod text;

use std::{
    cell::Cell,
    fs::File,
    io::{self, BufRead, BufReader, Read},
    path::Path,
    rc::Rc,
};

use anyhow::{Context as _, Result, bail};
use collapse_trace_common::RecordKind;

use crate::{
    model::capture::{CaptureInfo, Format, Loaded, Skipped},
    model::filters::Filters,
    model::kernel_info::KernelInfo,
    model::{
        aggregate::Aggregate,
        event::Event,
        results::{ResultSource, ResultTable},
    },
};

/// The longest line read; longer lines are an error (record) or skipped (text).
pub const MAX_LINE: usize = 1 << 20;

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
pub fn load(
    path: &Path,
    format: Option<Format>,
    names: &ResultTable,
    progress: Progress<'_>,
) -> Result<Loaded> {
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
        names,
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
    names: &ResultTable,
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
    // Captures are text: NUL bytes in the first line mean binary data (or /dev/zero, whose
    // one endless line would otherwise be read forever). Later junk lines are the readers'
    // business (skipped in text, an error naming the line in a record).
    let first_line = &head[..memchr(head).unwrap_or(head.len())];
    if first_line.contains(&0) {
        bail!(
            "{what}: holds NUL bytes, so it is binary data, not a capture; give a `record` file \
             or ftrace, trace-cmd or perf script text"
        );
    }
    let format = format.unwrap_or_else(|| sniff(head));
    let lines = LineReader::new(reader);
    match format {
        Format::Record => load_record(lines, compressed, bytes_read, progress, what, BLOCK),
        f => load_text(lines, f, compressed, bytes_read, progress, what, names),
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
        text::parse_perf_line(l).is_some()
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
    let header = record::parse_header(&buf).map_err(|e| anyhow::anyhow!("{what}:1: {e}"))?;
    let read = read_record_events(
        lines.inner,
        block,
        bytes_read,
        progress,
        header.results.clone(),
        header.start_mono_ns,
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

/// Bytes read at once and handed to a parser thread (as whole lines): cache-sized.
const BLOCK: usize = 256 * 1024;
/// Parser threads: parsing JSON is most of the work of reading a record.
const PARSERS: usize = 2;

/// Why reading the event lines stopped before the end of the input.
#[derive(Debug)]
enum Stop {
    /// A line that is not an event (at [`RecordRead::lines`]).
    Bad(String),
    /// The last line, cut (a killed recorder): the capture is cut short, no error.
    CutEvent,
    /// A trailer line that does not parse.
    BadTrailer(String),
    /// The trailer as the last line, cut.
    CutTrailer,
    /// A line longer than [`MAX_LINE`].
    TooLong,
    /// A line with data after the trailer.
    AfterTrailer,
    /// A read error after line [`RecordRead::lines`].
    Read(io::Error),
}

/// What reading the event lines found.
struct RecordRead {
    agg: Aggregate,
    trailer: Option<record::Trailer>,
    events: u64,
    last_ts: u64,
    /// Lines read (the header included); with a [`Stop`], the number of the line it names
    /// (for [`Stop::Read`], of the last whole line).
    lines: u64,
    stop: Option<Stop>,
}

/// Whole lines of a record, for a parser thread.
struct Block {
    data: Vec<u8>,
    /// `data` ends in the input's last line, which has no newline (a cut recording).
    last_partial: bool,
}

/// A parser thread's answer for one [`Block`].
struct Parsed {
    /// The events; only the first `n` are this block's (the rest are buffers to reuse).
    events: Vec<Event>,
    n: usize,
    /// Lines in the block.
    lines: u64,
    /// The first line (index in the block) that is not an event, and why.
    stop: Option<(u64, Stop)>,
    /// The trailer, if the block holds it (then `stop` names the first line after it with
    /// data).
    trailer: Option<record::Trailer>,
    /// The first line with data (index in the block): for blocks after the trailer.
    first_data: Option<(u64, Stop)>,
}

/// Why a line with data is not allowed after the trailer.
fn after_trailer(line: &[u8]) -> Option<Stop> {
    if line.len() > MAX_LINE {
        Some(Stop::TooLong)
    } else if line.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        Some(Stop::AfterTrailer)
    }
}

/// One event line into `e`.
fn parse_event(line: &[u8], e: &mut Event) -> Result<(), String> {
    // serde_json checks the UTF-8 of each string of a byte slice: one check of the whole
    // line is cheaper. Invalid UTF-8 goes the slow way, for serde_json's message.
    let rec = match std::str::from_utf8(line) {
        Ok(s) => serde_json::from_str::<record::RecordEvent>(s),
        Err(_) => serde_json::from_slice::<record::RecordEvent>(line),
    };
    rec.map_err(|err| err.to_string())?.fill(e)
}

fn parse_block(b: &Block, mut events: Vec<Event>) -> Parsed {
    let mut p = Parsed {
        events: Vec::new(),
        n: 0,
        lines: 0,
        stop: None,
        trailer: None,
        first_data: None,
    };
    let mut data = &b.data[..];
    while !data.is_empty() {
        let (line, rest) = match memchr(data) {
            Some(i) => (&data[..i], &data[i + 1..]),
            None => (data, &data[data.len()..]),
        };
        data = rest;
        let i = p.lines;
        p.lines += 1;
        let partial = b.last_partial && data.is_empty();
        if p.first_data.is_none() {
            p.first_data = after_trailer(line).map(|s| (i, s));
        }
        if p.stop.is_some() {
            continue;
        }
        if p.trailer.is_some() {
            p.stop = after_trailer(line).map(|s| (i, s));
            continue;
        }
        if line.len() > MAX_LINE {
            p.stop = Some((i, Stop::TooLong));
        } else if record::is_trailer(line) {
            match serde_json::from_slice::<record::TrailerLine>(line) {
                Ok(t) => p.trailer = Some(t.trailer),
                Err(_) if partial => p.stop = Some((i, Stop::CutTrailer)),
                Err(e) => p.stop = Some((i, Stop::BadTrailer(e.to_string()))),
            }
        } else {
            if p.n == events.len() {
                events.push(Event::empty());
            }
            match parse_event(line, &mut events[p.n]) {
                Ok(()) => p.n += 1,
                Err(_) if partial => p.stop = Some((i, Stop::CutEvent)),
                Err(e) => p.stop = Some((i, Stop::Bad(e))),
            }
        }
        // Past a stop only the first line with data matters (for blocks after a trailer).
        if p.stop.is_some() && p.first_data.is_some() {
            break;
        }
    }
    p.events = events;
    p
}

/// Reads up to `want` more bytes into `block`; false at the end of the input.
fn fill(reader: &mut impl Read, block: &mut Vec<u8>, want: usize) -> io::Result<bool> {
    let before = block.len();
    // read_to_end fills spare capacity without zeroing it first (and retries EINTR).
    reader.take(want as u64).read_to_end(block)?;
    Ok(block.len() - before == want)
}

/// Reads the event lines up to the trailer: this thread reads blocks of whole lines,
/// [`PARSERS`] threads parse them, one more feeds the aggregation core in the file's order
/// (the errno join needs a call's events before its exit record). Buffers go back to where
/// they came from, so that the steady state allocates nothing.
fn read_record_events<R: BufRead>(
    mut reader: R,
    block_size: usize,
    bytes_read: &mut dyn FnMut() -> u64,
    progress: Progress<'_>,
    table: ResultTable,
    start_mono_ns: u64,
) -> RecordRead {
    use std::sync::mpsc::{Receiver, Sender, channel, sync_channel};
    std::thread::scope(|scope| {
        let (free_blocks_tx, free_blocks) = channel::<Vec<u8>>();
        let mut to_parsers = Vec::new();
        let mut from_parsers: Vec<Receiver<Parsed>> = Vec::new();
        let mut free_events: Vec<Sender<Vec<Event>>> = Vec::new();
        for _ in 0..PARSERS {
            let (tx, rx) = sync_channel::<Block>(2);
            let (rtx, rrx) = sync_channel::<Parsed>(2);
            let (etx, erx) = channel::<Vec<Event>>();
            let free_blocks_tx = free_blocks_tx.clone();
            scope.spawn(move || {
                for b in rx {
                    let events = erx.try_recv().unwrap_or_default();
                    let parsed = parse_block(&b, events);
                    let _ = free_blocks_tx.send(b.data);
                    if rtx.send(parsed).is_err() {
                        break;
                    }
                }
            });
            to_parsers.push(tx);
            from_parsers.push(rrx);
            free_events.push(etx);
        }
        drop(free_blocks_tx);

        // The aggregator takes answers round-robin: the order blocks were sent in.
        let aggregator = scope.spawn(move || {
            let mut r = RecordRead {
                agg: Aggregate::new(table),
                trailer: None,
                events: 0,
                last_ts: start_mono_ns,
                lines: 1,
                stop: None,
            };
            'outer: loop {
                for (rx, back) in from_parsers.iter().zip(&free_events) {
                    let Ok(p) = rx.recv() else {
                        break 'outer;
                    };
                    if r.trailer.is_some() {
                        // Only blank lines may follow the trailer.
                        if let Some((i, s)) = p.first_data {
                            r.lines += i + 1;
                            r.stop = Some(s);
                            break 'outer;
                        }
                    } else {
                        for e in &p.events[..p.n] {
                            r.last_ts = r.last_ts.max(e.ts_ns);
                            r.agg.add(e);
                        }
                        r.events += p.n as u64;
                        r.trailer = p.trailer;
                        if let Some((i, s)) = p.stop {
                            r.lines += i + 1;
                            r.stop = Some(s);
                            break 'outer;
                        }
                    }
                    r.lines += p.lines;
                    let _ = back.send(p.events);
                }
            }
            // Dropping the receivers stops the parsers, and then the reader.
            r
        });

        let mut sent = 0usize;
        let mut carry: Vec<u8> = Vec::new();
        let mut read_error = None;
        loop {
            let mut block = free_blocks.try_recv().unwrap_or_default();
            block.clear();
            block.reserve(block_size + carry.len());
            block.extend_from_slice(&carry);
            carry.clear();
            let more = match fill(&mut reader, &mut block, block_size) {
                Ok(more) => more,
                Err(e) => {
                    // Only whole lines before the error count.
                    read_error = Some(e);
                    false
                }
            };
            // Whole lines go now; the start of the next line waits for the next block.
            let cut_at = match memchr::memrchr(b'\n', &block) {
                Some(i) => i + 1,
                None => 0,
            };
            carry.extend_from_slice(&block[cut_at..]);
            block.truncate(cut_at);
            let mut last_partial = false;
            let too_long = carry.len() > MAX_LINE;
            if too_long {
                // Sent as a line of its own: the parser names it.
                if !block.is_empty() {
                    let _ = to_parsers[sent % PARSERS].send(Block {
                        data: std::mem::take(&mut block),
                        last_partial: false,
                    });
                    sent += 1;
                }
                block = std::mem::take(&mut carry);
            } else if !more && read_error.is_none() && !carry.is_empty() {
                block.append(&mut carry);
                last_partial = true;
            }
            let end = !more || too_long;
            if !block.is_empty() {
                if to_parsers[sent % PARSERS]
                    .send(Block {
                        data: block,
                        last_partial,
                    })
                    .is_err()
                {
                    break;
                }
                sent += 1;
                if sent.is_multiple_of(64) {
                    progress(bytes_read());
                }
            }
            if end {
                break;
            }
        }
        drop(to_parsers);
        progress(bytes_read());
        let mut r = aggregator
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p));
        if r.stop.is_none()
            && let Some(e) = read_error
        {
            r.stop = Some(Stop::Read(e));
        }
        r
    })
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

/// `rest` of `<name>:   rest` (a trace-cmd buffer prefix), if the line has one.
fn strip_buffer_prefix(line: &str) -> Option<&str> {
    let t = line.trim_start();
    let end = t.find(|c: char| c.is_whitespace())?;
    let (word, rest) = t.split_at(end);
    (word.len() > 1 && word.ends_with(':')).then_some(rest)
}

fn load_text<R: BufRead>(
    mut lines: LineReader<R>,
    format: Format,
    compressed: bool,
    bytes_read: &mut dyn FnMut() -> u64,
    progress: Progress<'_>,
    what: &str,
    names: &ResultTable,
) -> Result<Loaded> {
    let mut table = names.clone();
    table.source = ResultSource::Capture;
    let mut agg = Aggregate::new(table);
    let mut decoder = text::TextDecoder::new();
    let mut buf = Vec::with_capacity(4096);
    let (mut events, mut other, mut skipped) = (0u64, 0u64, 0u64);
    let mut first_skipped: Option<Skipped> = None;
    let mut cut = None;
    let mut seen = [false; collapse_trace_common::NUM_KINDS];
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
            Format::Perf => text::parse_perf_line(&text),
            // trace-cmd prefixes lines of an instance's buffer with `<instance>: `.
            Format::TraceCmd => strip_buffer_prefix(&text)
                .and_then(text::parse_line)
                .or_else(|| text::parse_line(&text)),
            _ => text::parse_line(&text),
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
            text::Decoded::Event(e) => {
                events += 1;
                seen[e.tracepoint as usize] = true;
                agg.add(&e);
                if events.is_multiple_of(65536) {
                    progress(bytes_read());
                }
            }
            text::Decoded::Other => other += 1,
            text::Decoded::Bad(why) => skip(n, why.to_string(), &mut skipped),
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
    let attached: Vec<(RecordKind, bool)> = RecordKind::ALL
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
