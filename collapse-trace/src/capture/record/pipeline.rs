//! The threaded reader of a record's event lines: blocks of whole lines go to parser threads
//! and back, in order, to one aggregating thread. Parsing JSON is most of the cost of `report`
//! on a record, so it runs on more than one core.

use std::io::{self, BufRead, Read};

use crate::{
    capture::{
        Progress,
        lines::{MAX_LINE, memchr},
        record,
    },
    model::{aggregate::Aggregate, event::Event, results::ResultTable},
};

/// Bytes read at once and handed to a parser thread (as whole lines): cache-sized.
pub(crate) const BLOCK: usize = 256 * 1024;
/// Parser threads: parsing JSON is most of the work of reading a record.
const PARSERS: usize = 2;

/// Why reading the event lines stopped before the end of the input.
#[derive(Debug)]
pub(crate) enum Stop {
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
pub(crate) struct RecordRead {
    pub(crate) agg: Aggregate,
    pub(crate) trailer: Option<record::Trailer>,
    pub(crate) events: u64,
    pub(crate) last_ts: u64,
    /// Lines read (the header included); with a [`Stop`], the number of the line it names
    /// (for [`Stop::Read`], of the last whole line).
    pub(crate) lines: u64,
    pub(crate) stop: Option<Stop>,
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

/// One event line of a file of format `version` into `e`.
fn parse_event(line: &[u8], e: &mut Event, version: u32) -> Result<(), String> {
    // serde_json checks the UTF-8 of each string of a byte slice: one check of the whole
    // line is cheaper. Invalid UTF-8 goes the slow way, for serde_json's message.
    let rec = match std::str::from_utf8(line) {
        Ok(s) => serde_json::from_str::<record::RecordEvent>(s),
        Err(_) => serde_json::from_slice::<record::RecordEvent>(line),
    };
    rec.map_err(|err| err.to_string())?.fill(e, version)
}

fn parse_block(b: &Block, mut events: Vec<Event>, version: u32) -> Parsed {
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
            match parse_event(line, &mut events[p.n], version) {
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
pub(crate) fn read_record_events<R: BufRead>(
    mut reader: R,
    block_size: usize,
    bytes_read: &mut dyn FnMut() -> u64,
    progress: Progress<'_>,
    table: ResultTable,
    start_mono_ns: u64,
    version: u32,
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
                    let parsed = parse_block(&b, events, version);
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
