//! The record file format (`collapse-trace record`): NDJSON, optionally zstd-compressed.
//!
//! Line 1 is a [`Header`] (`{"format":"collapse-trace.record","version":1,...}`), then one
//! [`RecordEvent`] per line, then a [`TrailerLine`] (`{"trailer":{...}}`) once the recorder
//! stopped cleanly. Each line is written whole, the writer is flushed after every drain batch
//! and synced to disk at least once a second, so a killed recorder leaves a file that is
//! complete up to its last full line; only the trailer is missing, which is how a reader knows
//! the capture was cut short.

use std::{
    borrow::Cow,
    collections::BTreeMap,
    fs::File,
    io::{self, BufWriter, Write},
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};
use collapse_trace_common::{NUM_TRACEPOINTS, Origin, RESULT_SLOTS, Tracepoint};
use serde::{Deserialize, Serialize};

use crate::{
    export::json::Filters,
    model::{
        aggregate::KernelCounters,
        event::{Event, escape, origin_name, unescape},
        results::ResultTable,
    },
};

/// The `format` of line 1.
pub const FORMAT: &str = "collapse-trace.record";
/// The major version this build writes and reads.
pub const VERSION: u32 = 1;

/// Line 1: what the capture is and where it comes from.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Header {
    /// Always [`FORMAT`].
    pub format: String,
    /// [`VERSION`]; a reader refuses a newer major version.
    pub version: u32,
    /// collapse-trace's version.
    pub tool_version: String,
    /// `uname -r` of the traced machine.
    pub kernel_release: String,
    /// The result names read from that kernel (numbers in event lines refer to it).
    pub results: ResultTable,
    /// Which record kinds were attached.
    pub tracepoints: Vec<KindLine>,
    /// The field layout of each attach point, from its tracefs `format` file.
    pub probes: Vec<ProbeLine>,
    /// Start, wall clock (ns since the Unix epoch).
    pub start_wall_ns: u64,
    /// Start, CLOCK_MONOTONIC ns (the clock of `ts_ns`).
    pub start_mono_ns: u64,
    /// Filters applied in the kernel.
    pub filters: Filters,
}

/// One record kind.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct KindLine {
    /// e.g. `mm_khugepaged_scan_file`, `madvise_collapse`.
    pub name: String,
    /// Collected in this capture.
    pub attached: bool,
}

/// One attach point's layout.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ProbeLine {
    /// `group:name`.
    pub tracepoint: String,
    /// Whether the kernel had it.
    pub present: bool,
    /// Whether it was attached.
    pub attached: bool,
    /// Its fields.
    pub fields: Vec<FieldLine>,
}

/// One field of a tracepoint record.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FieldLine {
    /// Name.
    pub name: String,
    /// C type.
    pub ctype: String,
    /// Offset in the record.
    pub offset: u32,
    /// Size in bytes.
    pub size: u32,
    /// Signed.
    pub signed: bool,
}

/// One event: every field of [`Event`], losslessly (`comm` and `file` are [`escape`]d, which
/// [`unescape`] reverses).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RecordEvent<'a> {
    /// CLOCK_MONOTONIC ns.
    pub ts_ns: u64,
    /// Record kind name.
    #[serde(borrow)]
    pub tracepoint: Cow<'a, str>,
    /// Result number (the header's table; an errno for `madvise_collapse`).
    pub result: i64,
    /// Thread id.
    pub pid: u32,
    /// Process id.
    pub tgid: u32,
    /// Escaped comm.
    #[serde(borrow)]
    pub comm: Cow<'a, str>,
    /// `khugepaged`, `madvise`, `unknown`.
    #[serde(borrow)]
    pub origin: Cow<'a, str>,
    /// cgroup v2 id.
    pub cgroup_id: u64,
    /// Escaped file name.
    #[serde(borrow)]
    pub file: Cow<'a, str>,
    /// pfn / hpfn.
    pub pfn: u64,
    /// scan_file.
    pub present: i32,
    /// scan_file.
    pub swap: i32,
    /// collapse_file.
    pub is_shmem: bool,
    /// collapse_file.
    pub nr: i32,
    /// collapse_file index; a call's `len`.
    pub index: u64,
    /// collapse_file address; a call's `start`.
    pub addr: u64,
    /// Entry time of the MADV_COLLAPSE call (0: none).
    pub call_ns: u64,
    /// scan_pmd.
    pub referenced: i32,
    /// scan_pmd.
    pub none_or_zero: i32,
    /// scan_pmd.
    pub unmapped: i32,
    /// collapse_huge_page.
    pub isolated: i32,
    /// A process_madvise call.
    pub process_madvise: bool,
}

impl<'a> RecordEvent<'a> {
    /// The line for an event.
    pub fn new(e: &Event) -> RecordEvent<'static> {
        RecordEvent {
            ts_ns: e.ts_ns,
            tracepoint: Cow::Borrowed(e.tracepoint.name()),
            result: e.result,
            pid: e.pid,
            tgid: e.tgid,
            comm: Cow::Owned(escape(&e.comm)),
            origin: Cow::Borrowed(origin_name(e.origin)),
            cgroup_id: e.cgroup_id,
            file: Cow::Owned(escape(&e.filename)),
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
        }
    }

    /// Back to an [`Event`].
    pub fn to_event(&self) -> Result<Event, String> {
        let tracepoint = Tracepoint::from_name(&self.tracepoint)
            .ok_or_else(|| format!("unknown tracepoint {:?}", self.tracepoint))?;
        let origin = match &*self.origin {
            "khugepaged" => Origin::Khugepaged,
            "madvise" => Origin::Madvise,
            "unknown" => Origin::Unknown,
            o => return Err(format!("unknown origin {o:?}")),
        };
        Ok(Event {
            ts_ns: self.ts_ns,
            tracepoint,
            pid: self.pid,
            tgid: self.tgid,
            comm: unescape(&self.comm).map_err(|e| format!("comm: {e}"))?,
            cgroup_id: self.cgroup_id,
            origin,
            result: self.result,
            filename: unescape(&self.file).map_err(|e| format!("file: {e}"))?,
            pfn: self.pfn,
            present: self.present,
            swap: self.swap,
            is_shmem: self.is_shmem,
            nr: self.nr,
            index: self.index,
            addr: self.addr,
            call_ns: self.call_ns,
            referenced: self.referenced,
            none_or_zero: self.none_or_zero,
            unmapped: self.unmapped,
            isolated: self.isolated,
            process_madvise: self.process_madvise,
        })
    }
}

/// The last line: `{"trailer":{...}}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TrailerLine {
    /// The trailer.
    pub trailer: Trailer,
}

/// How the capture ended.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Trailer {
    /// End, wall clock ns.
    pub end_wall_ns: u64,
    /// End, CLOCK_MONOTONIC ns.
    pub end_mono_ns: u64,
    /// The kernel's counters over the capture, per kind: exact whatever the ring dropped.
    pub kernel: Vec<KernelLine>,
    /// Event lines written.
    pub delivered: u64,
    /// Ring records that did not decode (a build mismatch).
    pub decode_errors: u64,
}

/// One kind's kernel counters.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct KernelLine {
    /// Kind name.
    pub tracepoint: String,
    /// Events by result slot (result number; the last slot, 63, holds out-of-range numbers);
    /// zero entries left out.
    pub counts: BTreeMap<u32, u64>,
    /// Records the ring buffer could not take.
    pub drops: u64,
}

impl Trailer {
    /// The kernel lines for counters.
    pub fn kernel_lines(k: &KernelCounters) -> Vec<KernelLine> {
        Tracepoint::ALL
            .into_iter()
            .map(|tp| KernelLine {
                tracepoint: tp.name().to_string(),
                counts: k.counts[tp as usize]
                    .iter()
                    .enumerate()
                    .filter(|(_, n)| **n > 0)
                    .map(|(s, n)| (s as u32, *n))
                    .collect(),
                drops: k.drops[tp as usize],
            })
            .collect()
    }

    /// The counters back.
    pub fn counters(&self) -> Result<KernelCounters, String> {
        let mut k = KernelCounters::default();
        for l in &self.kernel {
            let tp = Tracepoint::from_name(&l.tracepoint)
                .ok_or_else(|| format!("unknown tracepoint {:?} in the trailer", l.tracepoint))?;
            let i = tp as usize;
            debug_assert!(i < NUM_TRACEPOINTS);
            for (s, n) in &l.counts {
                let s = *s as usize;
                if s >= RESULT_SLOTS {
                    return Err(format!("result slot {s} out of range in the trailer"));
                }
                k.counts[i][s] = *n;
            }
            k.drops[i] = l.drops;
        }
        Ok(k)
    }
}

/// Now, wall clock and CLOCK_MONOTONIC, in ns.
pub fn now_ns() -> (u64, u64) {
    let wall = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (wall, ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64)
}

enum Sink {
    Plain(BufWriter<File>),
    Zstd(zstd::stream::write::Encoder<'static, BufWriter<File>>),
}

impl Sink {
    fn out(&mut self) -> &mut dyn Write {
        match self {
            Sink::Plain(w) => w,
            Sink::Zstd(w) => w,
        }
    }

    fn file(&self) -> &File {
        match self {
            Sink::Plain(w) => w.get_ref(),
            Sink::Zstd(w) => w.get_ref().get_ref(),
        }
    }
}

/// How often a recording is synced to disk.
pub const SYNC_EVERY: Duration = Duration::from_secs(1);

/// Writes a record file.
pub struct RecordWriter {
    sink: Sink,
    line: Vec<u8>,
    last_sync: Instant,
    /// Event lines written.
    pub written: u64,
}

impl RecordWriter {
    /// Creates `path` (zstd-compressed when it ends in `.zst`) and writes the header.
    pub fn create(path: &Path, header: &Header) -> Result<RecordWriter> {
        let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
        let buf = BufWriter::with_capacity(256 * 1024, file);
        let sink = if path.extension().is_some_and(|e| e == "zst") {
            Sink::Zstd(zstd::stream::write::Encoder::new(buf, 3).context("starting zstd")?)
        } else {
            Sink::Plain(buf)
        };
        let mut w = RecordWriter {
            sink,
            line: Vec::with_capacity(1024),
            last_sync: Instant::now(),
            written: 0,
        };
        w.write(header)?;
        w.batch_end()?;
        Ok(w)
    }

    fn write<T: Serialize>(&mut self, value: &T) -> io::Result<()> {
        // A whole line goes to the writer at once: a crash can cut only the last line.
        self.line.clear();
        serde_json::to_writer(&mut self.line, value)?;
        self.line.push(b'\n');
        self.sink.out().write_all(&self.line)
    }

    /// Writes one event.
    pub fn event(&mut self, e: &Event) -> io::Result<()> {
        self.written += 1;
        self.write(&RecordEvent::new(e))
    }

    /// Ends a drain batch: flushes (a zstd block boundary: everything so far decodes), and
    /// syncs to disk once a [`SYNC_EVERY`].
    pub fn batch_end(&mut self) -> io::Result<()> {
        self.sink.out().flush()?;
        if self.last_sync.elapsed() >= SYNC_EVERY {
            self.sink.file().sync_data()?;
            self.last_sync = Instant::now();
        }
        Ok(())
    }

    /// Writes the trailer, ends the zstd frame, flushes and syncs.
    pub fn finish(mut self, trailer: Trailer) -> io::Result<()> {
        self.write(&TrailerLine { trailer })?;
        let file = match self.sink {
            Sink::Plain(w) => w.into_inner().map_err(|e| e.into_error())?,
            Sink::Zstd(w) => w.finish()?.into_inner().map_err(|e| e.into_error())?,
        };
        file.sync_all()
    }
}

/// Whether a line is the trailer (the writer always puts that key first).
pub fn is_trailer(line: &[u8]) -> bool {
    line.starts_with(b"{\"trailer\"")
}

/// Parses line 1.
pub fn parse_header(line: &[u8]) -> Result<Header, String> {
    #[derive(Deserialize)]
    struct Peek {
        format: Option<String>,
        version: Option<u32>,
    }
    let peek: Peek = serde_json::from_slice(line)
        .map_err(|e| format!("not a collapse-trace record header: {e}"))?;
    if peek.format.as_deref() != Some(FORMAT) {
        return Err(format!(
            "not a collapse-trace record: format is {:?}, expected {FORMAT:?}",
            peek.format
        ));
    }
    match peek.version {
        Some(VERSION) => {}
        Some(v) if v > VERSION => {
            return Err(format!(
                "record format version {v} is newer than this collapse-trace reads ({VERSION}): \
                 upgrade collapse-trace"
            ));
        }
        v => return Err(format!("unsupported record format version {v:?}")),
    }
    serde_json::from_slice(line).map_err(|e| format!("bad record header: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::event::tests::record;

    #[test]
    fn an_event_round_trips_losslessly() {
        let mut e = Event::decode(&record(
            Tracepoint::CollapseFile,
            9,
            30,
            b"a\"b\\\n",
            b"f\nile\xff\\x41",
        ))
        .unwrap();
        e.call_ns = 77;
        e.process_madvise = true;
        let line = serde_json::to_vec(&RecordEvent::new(&e)).unwrap();
        let back: RecordEvent = serde_json::from_slice(&line).unwrap();
        assert_eq!(back.to_event().unwrap(), e);
    }

    #[test]
    fn counters_round_trip() {
        let mut k = KernelCounters::default();
        k.counts[1][30] = 5;
        k.counts[4][63] = 2;
        k.drops[0] = 3;
        let t = Trailer {
            end_wall_ns: 1,
            end_mono_ns: 2,
            kernel: Trailer::kernel_lines(&k),
            delivered: 0,
            decode_errors: 0,
        };
        let line = serde_json::to_vec(&TrailerLine { trailer: t }).unwrap();
        assert!(is_trailer(&line));
        let back: TrailerLine = serde_json::from_slice(&line).unwrap();
        assert_eq!(back.trailer.counters().unwrap(), k);
    }

    #[test]
    fn headers_are_checked() {
        assert!(
            parse_header(b"{}")
                .unwrap_err()
                .contains("not a collapse-trace")
        );
        assert!(
            parse_header(b"{\"format\":\"collapse-trace.record\",\"version\":9}")
                .unwrap_err()
                .contains("newer")
        );
        assert!(parse_header(b"\x00\x01junk").is_err());
    }
}
