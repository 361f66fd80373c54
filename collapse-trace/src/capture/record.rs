//! The record file format (`collapse-trace record`): NDJSON, optionally zstd-compressed.
//!
//! Line 1 is a [`Header`] (`{"format":"collapse-trace.record","version":2,...}`), then one
//! [`RecordEvent`] per line, then a [`TrailerLine`] (`{"trailer":{...}}`) once the recorder
//! stopped cleanly. Each line is written whole, the writer is flushed after every drain batch
//! and synced to disk at least once a second, so a killed recorder leaves a file that is
//! complete up to its last full line; only the trailer is missing, which is how a reader knows
//! the capture was cut short.

use std::{
    borrow::Cow,
    collections::BTreeMap,
    fmt::{self, Write as _},
    fs::File,
    io::{self, BufWriter, Write},
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};
use collapse_trace_common::{NUM_KINDS, Origin, RESULT_SLOTS, RecordKind};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::{
    model::event::event_fields,
    model::filters::Filters,
    model::{
        aggregate::KernelCounters,
        event::{Escaped, Event, UnescapeError, origin_name, unescape_into},
        results::ResultTable,
    },
};

/// The `format` of line 1.
pub const FORMAT: &str = "collapse-trace.record";
/// The major version this build writes. Version 2 leaves zero fields out of event lines;
/// version 3 adds the owner of the memory (`owner_tgid`, `owner_comm`, `owner_cgroup_id`),
/// which a version 1 or 2 file reads as absent (0, empty).
pub const VERSION: u32 = 3;
/// The oldest version this build reads (version 1 event lines hold every field, which
/// version 2's reader takes as it is).
pub const OLDEST_VERSION: u32 = 1;

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

/// `comm` or `file` of an event line: raw bytes on the way out (escaped straight into the
/// output, no `String` built), the [`escape`](crate::model::event::escape)d text on the way
/// in (borrowed from the line unless JSON escapes made a copy necessary).
#[derive(Debug, Clone, PartialEq)]
pub enum Text<'a> {
    /// Raw bytes of an [`Event`], to write.
    Raw(&'a [u8]),
    /// Escaped text, as read.
    Escaped(Cow<'a, str>),
}

impl Text<'_> {
    fn is_empty(&self) -> bool {
        match self {
            Text::Raw(b) => b.is_empty(),
            Text::Escaped(s) => s.is_empty(),
        }
    }

    /// The raw bytes into `out` (cleared first).
    fn bytes_into(&self, out: &mut Vec<u8>) -> Result<(), UnescapeError> {
        match self {
            Text::Raw(b) => {
                out.clear();
                out.extend_from_slice(b);
                Ok(())
            }
            Text::Escaped(s) => unescape_into(s, out),
        }
    }
}

impl Default for Text<'_> {
    fn default() -> Self {
        Text::Escaped(Cow::Borrowed(""))
    }
}

impl Serialize for Text<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Text::Raw(b) => s.collect_str(&Escaped(b)),
            Text::Escaped(t) => s.serialize_str(t),
        }
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Through a newtype so that `borrow` applies: no copy unless JSON escapes need one.
        #[derive(Deserialize)]
        struct Borrowed<'a>(#[serde(borrow)] Cow<'a, str>);
        Ok(Text::Escaped(Borrowed::deserialize(d)?.0))
    }
}

/// A field's type as a record line holds it: serde's view for reading and for the test that
/// pins the writer, and the hand-tuned writer's.
pub trait LineValue {
    /// The value in a line: the event's own on the way out (borrowed), the line's on the way
    /// in.
    type Line<'a>
    where
        Self: 'a;
    /// The line's value for an event's.
    fn to_line(&self) -> Self::Line<'_>;
    /// The event's value for a line's, into `out` (reusing its buffer); `key` names the
    /// field in an error.
    fn from_line(line: &Self::Line<'_>, out: &mut Self, key: &str) -> Result<(), String>;
    /// Appends `key` (`,"name":`) and the value, unless it is left out (zero, false, empty).
    fn append(&self, key: &[u8], out: &mut Vec<u8>);
}

macro_rules! int_line_value {
    ($($t:ty),*) => {$(
        impl LineValue for $t {
            type Line<'a> = $t;
            fn to_line(&self) -> $t {
                *self
            }
            fn from_line(line: &$t, out: &mut $t, _: &str) -> Result<(), String> {
                *out = *line;
                Ok(())
            }
            fn append(&self, key: &[u8], out: &mut Vec<u8>) {
                if *self != 0 {
                    num(out, key, *self);
                }
            }
        }
    )*};
}
int_line_value!(u32, i32, u64, i64);

impl LineValue for bool {
    type Line<'a> = bool;
    fn to_line(&self) -> bool {
        *self
    }
    fn from_line(line: &bool, out: &mut bool, _: &str) -> Result<(), String> {
        *out = *line;
        Ok(())
    }
    fn append(&self, key: &[u8], out: &mut Vec<u8>) {
        if *self {
            out.extend_from_slice(key);
            out.extend_from_slice(b"true");
        }
    }
}

impl LineValue for Vec<u8> {
    type Line<'a> = Text<'a>;
    fn to_line(&self) -> Text<'_> {
        Text::Raw(self)
    }
    fn from_line(line: &Text<'_>, out: &mut Vec<u8>, key: &str) -> Result<(), String> {
        line.bytes_into(out).map_err(|e| format!("{key}: {e}"))
    }
    fn append(&self, key: &[u8], out: &mut Vec<u8>) {
        if !self.is_empty() {
            out.extend_from_slice(key);
            escaped_string(out, self);
        }
    }
}

impl LineValue for Origin {
    type Line<'a> = Cow<'a, str>;
    fn to_line(&self) -> Cow<'_, str> {
        Cow::Borrowed(origin_name(*self))
    }
    fn from_line(line: &Cow<'_, str>, out: &mut Origin, key: &str) -> Result<(), String> {
        *out = match &**line {
            "khugepaged" => Origin::Khugepaged,
            "madvise" => Origin::Madvise,
            "unknown" => Origin::Unknown,
            o => return Err(format!("unknown {key} {o:?}")),
        };
        Ok(())
    }
    fn append(&self, key: &[u8], out: &mut Vec<u8>) {
        // Always written: a plain ASCII word, nothing to escape.
        out.extend_from_slice(key);
        out.push(b'"');
        out.extend_from_slice(origin_name(*self).as_bytes());
        out.push(b'"');
    }
}

/// Whether serde leaves a line value out (the writer's rule, for serde's side).
pub trait Omit {
    /// Left out of a line.
    fn omit(&self) -> bool;
}

macro_rules! omit_zero {
    ($($t:ty),*) => {$(
        impl Omit for $t {
            fn omit(&self) -> bool {
                *self == <$t>::default()
            }
        }
    )*};
}
omit_zero!(u32, i32, u64, i64, bool);

impl Omit for Text<'_> {
    fn omit(&self) -> bool {
        self.is_empty()
    }
}

impl Omit for Cow<'_, str> {
    fn omit(&self) -> bool {
        false
    }
}

/// Generates [`RecordEvent`], its conversions and [`EventLines::append`] from the field list
/// ([`event_fields`]).
macro_rules! record_line {
    ($( $group:ident { $(
        $(#[doc = $doc:literal])*
        $name:ident $key:literal : $ty:ty = $dec:expr,
    )* } )*) => {
        /// One event: every field of [`Event`], losslessly (`comm` and `file` are
        /// [`escape`](crate::model::event::escape)d, which
        /// [`unescape`](crate::model::event::unescape) reverses). Version 2 leaves out every
        /// field that is zero, false or empty, except `ts_ns`, `tracepoint` and `origin`; a
        /// reader takes an absent field as that zero (version 1 wrote every field).
        #[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
        #[serde(bound(deserialize = "'de: 'a"))]
        pub struct RecordEvent<'a> {
            /// CLOCK_MONOTONIC ns.
            pub ts_ns: u64,
            /// Record kind name.
            #[serde(borrow)]
            pub tracepoint: Cow<'a, str>,
            $($(
                $(#[doc = $doc])*
                #[serde(rename = $key, default, skip_serializing_if = "Omit::omit")]
                pub $name: <$ty as LineValue>::Line<'a>,
            )*)*
        }

        impl<'a> RecordEvent<'a> {
            /// The line for an event (borrows it: nothing is copied or allocated).
            pub fn new(e: &'a Event) -> RecordEvent<'a> {
                RecordEvent {
                    ts_ns: e.ts_ns,
                    tracepoint: Cow::Borrowed(e.tracepoint.name()),
                    $($( $name: LineValue::to_line(&e.$name), )*)*
                }
            }

            /// Back to an [`Event`], into `e`, reusing its byte buffers.
            pub fn fill(&self, e: &mut Event) -> Result<(), String> {
                e.tracepoint = RecordKind::from_name(&self.tracepoint)
                    .ok_or_else(|| format!("unknown tracepoint {:?}", self.tracepoint))?;
                e.ts_ns = self.ts_ns;
                $($(
                    LineValue::from_line(&self.$name, &mut e.$name, $key)?;
                )*)*
                Ok(())
            }
        }

        record_line!(@writer $( $group { $( $name $key : $ty, )* } )*);
    };
    (@writer pre { $( $pn:ident $pk:literal : $pt:ty, )* }
             who { $( $wn:ident $wk:literal : $wt:ty, )* }
             what { $( $xn:ident $xk:literal : $xt:ty, )* }) => {
        /// The `who` fields of the last line written (see [`EventLines`]).
        #[derive(Debug, Clone, PartialEq)]
        struct Who {
            $( $wn: $wt, )*
        }

        impl EventLines {
            /// Appends the line of `e`, without its newline.
            pub fn append(&mut self, out: &mut Vec<u8>, e: &Event) {
                num(out, b"{\"ts_ns\":", e.ts_ns);
                // Kind names are plain ASCII words: nothing to escape.
                out.extend_from_slice(b",\"tracepoint\":\"");
                out.extend_from_slice(e.tracepoint.name().as_bytes());
                out.push(b'"');
                $( e.$pn.append(concat!(",\"", $pk, "\":").as_bytes(), out); )*
                let same = self.who.as_ref().is_some_and(|w| true $( && w.$wn == e.$wn )*);
                if !same {
                    let t = &mut self.who_text;
                    t.clear();
                    $( e.$wn.append(concat!(",\"", $wk, "\":").as_bytes(), t); )*
                    self.who = Some(Who { $( $wn: e.$wn.clone(), )* });
                }
                out.extend_from_slice(&self.who_text);
                $( e.$xn.append(concat!(",\"", $xk, "\":").as_bytes(), out); )*
                out.push(b'}');
            }
        }
    };
}

event_fields!(record_line);

#[cfg(test)]
impl RecordEvent<'_> {
    /// Back to a new [`Event`].
    pub fn to_event(&self) -> Result<Event, String> {
        let mut e = Event::empty();
        self.fill(&mut e)?;
        Ok(e)
    }
}

/// Writes event lines: exactly the bytes serde_json writes for `RecordEvent::new(e)` (a test
/// holds them equal for every kind of field value), written straight. `record` writes
/// 400,000 lines a second under a storm; through serde_json a line costs ~220 ns (a per-byte
/// escape scan of every key, a write call per fragment), this way ~60 ns.
#[derive(Debug, Default)]
pub struct EventLines {
    /// The `who` fields of the last line and their text: events of one thread repeat it, and
    /// copying it is cheaper than writing it again.
    who: Option<Who>,
    who_text: Vec<u8>,
}

fn num(out: &mut Vec<u8>, key: &[u8], v: impl itoa::Integer) {
    out.extend_from_slice(key);
    out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
}

/// Appends the line of `e` without its newline (see [`EventLines`], which is faster for a
/// stream of events).
pub fn append_event_line(out: &mut Vec<u8>, e: &Event) {
    EventLines::default().append(out, e);
}

/// `bytes` [`escape`](crate::model::event::escape)d, as a JSON string.
fn escaped_string(out: &mut Vec<u8>, bytes: &[u8]) {
    out.push(b'"');
    // Printable ASCII but `"` and `\`: the same in both escapings (the usual comm or name).
    if bytes
        .iter()
        .all(|&b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
    {
        out.extend_from_slice(bytes);
    } else {
        // escape() writes no control character: of JSON's escapes only `\"` and `\\` occur.
        struct Json<'a>(&'a mut Vec<u8>);
        impl fmt::Write for Json<'_> {
            fn write_str(&mut self, s: &str) -> fmt::Result {
                for &b in s.as_bytes() {
                    debug_assert!(b >= 0x20, "escape() wrote a control character");
                    if b == b'"' || b == b'\\' {
                        self.0.push(b'\\');
                    }
                    self.0.push(b);
                }
                Ok(())
            }
        }
        // Writing into a Vec cannot fail.
        let _ = write!(Json(out), "{}", Escaped(bytes));
    }
    out.push(b'"');
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
    /// Paths (from the cgroup2 root, or `(gone)`) of the cgroup ids in the events, read on the
    /// recording machine when the recorder stopped (version 3; absent before).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub cgroups: BTreeMap<u64, String>,
}

/// One kind's kernel counters.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct KernelLine {
    /// Kind name.
    pub tracepoint: String,
    /// Events by result slot (result number; the last slot, 63, holds out-of-range numbers);
    /// zero entries left out.
    pub counts: BTreeMap<u32, u64>,
    /// Records the event rings could not take.
    pub drops: u64,
}

impl Trailer {
    /// The kernel lines for counters.
    pub fn kernel_lines(k: &KernelCounters) -> Vec<KernelLine> {
        RecordKind::ALL
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
            let tp = RecordKind::from_name(&l.tracepoint)
                .ok_or_else(|| format!("unknown tracepoint {:?} in the trailer", l.tracepoint))?;
            let i = tp as usize;
            debug_assert!(i < NUM_KINDS);
            for (s, n) in &l.counts {
                let s = *s as usize;
                if s >= RESULT_SLOTS {
                    return Err(format!("result slot {s} out of range in the trailer"));
                }
                k.counts[i][s] = *n;
            }
            k.drops[i] = l.drops;
        }
        // Every total a view prints must fit: a corrupt (or hand-edited) trailer must not
        // wrap into small, plausible numbers.
        let mut total: u64 = 0;
        for i in 0..NUM_KINDS {
            for n in k.counts[i].iter().chain([&k.drops[i]]) {
                total = total.checked_add(*n).ok_or_else(|| {
                    "the trailer's counts add up to more than 2^64: the file is corrupt".to_string()
                })?;
            }
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
    /// Plain: whole batches of lines go to the file in one `write`.
    Plain(File),
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
            Sink::Plain(w) => w,
            Sink::Zstd(w) => w.get_ref().get_ref(),
        }
    }
}

/// How often a recording is synced to disk.
pub const SYNC_EVERY: Duration = Duration::from_secs(1);

/// Lines are handed to the file (or the compressor) once this many bytes of them are
/// pending, and at the end of every drain batch. Fewer, larger writes cost less in the
/// kernel (64 KiB measured ~1% of a core more under a storm); still within the L2 cache.
const PENDING_BYTES: usize = 256 * 1024;

/// Writes a record file.
pub struct RecordWriter {
    sink: Sink,
    /// Whole lines not yet handed to the sink; events are serialized straight into it.
    pending: Vec<u8>,
    last_sync: Instant,
    lines: EventLines,
    /// Event lines written.
    pub written: u64,
}

impl RecordWriter {
    /// Creates `path` (zstd-compressed when it ends in `.zst`) and writes the header.
    pub fn create(path: &Path, header: &Header) -> Result<RecordWriter> {
        let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
        let sink = if path.extension().is_some_and(|e| e == "zst") {
            let buf = BufWriter::with_capacity(128 * 1024, file);
            Sink::Zstd(zstd::stream::write::Encoder::new(buf, 3).context("starting zstd")?)
        } else {
            Sink::Plain(file)
        };
        let mut w = RecordWriter {
            sink,
            pending: Vec::with_capacity(PENDING_BYTES + 4096),
            last_sync: Instant::now(),
            lines: EventLines::default(),
            written: 0,
        };
        w.write(header)?;
        w.batch_end()?;
        Ok(w)
    }

    fn write<T: Serialize>(&mut self, value: &T) -> io::Result<()> {
        // Only whole lines reach the file: a crash can cut only the last line.
        let start = self.pending.len();
        if let Err(e) = serde_json::to_writer(&mut self.pending, value) {
            self.pending.truncate(start);
            return Err(e.into());
        }
        self.pending.push(b'\n');
        if self.pending.len() >= PENDING_BYTES {
            self.hand_over()?;
        }
        Ok(())
    }

    /// Pending lines to the sink.
    fn hand_over(&mut self) -> io::Result<()> {
        if !self.pending.is_empty() {
            self.sink.out().write_all(&self.pending)?;
            self.pending.clear();
        }
        Ok(())
    }

    /// Writes one event.
    pub fn event(&mut self, e: &Event) -> io::Result<()> {
        self.lines.append(&mut self.pending, e);
        self.pending.push(b'\n');
        self.written += 1;
        if self.pending.len() >= PENDING_BYTES {
            self.hand_over()?;
        }
        Ok(())
    }

    /// Ends a drain batch: writes and flushes (a zstd block boundary: everything so far
    /// decodes), and syncs to disk once a [`SYNC_EVERY`].
    pub fn batch_end(&mut self) -> io::Result<()> {
        self.hand_over()?;
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
        self.hand_over()?;
        let file = match self.sink {
            Sink::Plain(f) => f,
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
        Some(v) if (OLDEST_VERSION..=VERSION).contains(&v) => {}
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
pub(crate) mod tests {
    use super::*;
    use crate::model::event::tests::record;

    /// Events that cover every field zero and non-zero, every kind and origin, and hostile
    /// comm and file bytes (quotes, backslashes, newlines, invalid UTF-8, a literal `\x41`,
    /// a C1 control, non-ASCII text).
    pub(crate) fn sample_events() -> Vec<Event> {
        let names: [&[u8]; 9] = [
            b"",
            b"plain",
            b"a\"b\\\n",
            b"f\nile\xff\\x41",
            b"q\"uo\"te",
            b"\x00\x1f\x7f\xc2\x9b",
            "caf\u{e9} \u{1f600}".as_bytes(),
            b"tab\there\r",
            b"\\",
        ];
        let mut out = vec![Event::empty()];
        let mut full = Event::decode(&record(
            RecordKind::CollapseFile,
            9,
            30,
            b"a\"b\\\n",
            b"f\nile\xff\\x41",
        ))
        .unwrap();
        full.call_ns = 77;
        full.process_madvise = true;
        full.result = -11;
        full.pfn = u64::MAX;
        full.present = i32::MIN;
        out.push(full.clone());
        // A cheap pseudo-random sweep: each field zero or not, names from the list.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for i in 0..400 {
            let mut e = full.clone();
            let pick = |r: u64, v: u64| if r.is_multiple_of(3) { 0 } else { v };
            e.ts_ns = next();
            e.tracepoint = RecordKind::ALL[i % RecordKind::ALL.len()];
            e.origin = [Origin::Khugepaged, Origin::Madvise, Origin::Unknown][i % 3];
            e.result = pick(next(), next()) as i64;
            e.pid = pick(next(), next()) as u32;
            e.tgid = pick(next(), next()) as u32;
            e.comm = names[(next() % 9) as usize].to_vec();
            e.filename = names[(next() % 9) as usize].to_vec();
            e.cgroup_id = pick(next(), next());
            e.owner_tgid = pick(next(), next()) as u32;
            e.owner_comm = names[(next() % 9) as usize].to_vec();
            e.owner_cgroup_id = pick(next(), next());
            e.pfn = pick(next(), next());
            e.present = pick(next(), next()) as i32;
            e.swap = pick(next(), next()) as i32;
            e.is_shmem = next().is_multiple_of(2);
            e.nr = pick(next(), next()) as i32;
            e.index = pick(next(), next());
            e.addr = pick(next(), next());
            e.call_ns = pick(next(), next());
            e.referenced = pick(next(), next()) as i32;
            e.none_or_zero = pick(next(), next()) as i32;
            e.unmapped = pick(next(), next()) as i32;
            e.isolated = pick(next(), next()) as i32;
            e.process_madvise = next().is_multiple_of(2);
            out.push(e);
        }
        out
    }

    #[test]
    fn events_round_trip_losslessly() {
        let events = sample_events();
        let mut lines = EventLines::default();
        let full = &events[1];
        for (i, e) in events.iter().enumerate() {
            // Each event twice (the second line copies the pid..cgroup_id text of the first),
            // between others, and the same thread with another comm, origin or cgroup.
            let prev = &events[i.saturating_sub(1)];
            let mut other = e.clone();
            match i % 3 {
                0 => other.comm.push(b'x'),
                1 => other.origin = Origin::Khugepaged,
                _ => other.cgroup_id ^= 1,
            }
            for e in [e, e, prev, e, &other, e] {
                let mut line = Vec::new();
                lines.append(&mut line, e);
                // The direct writer writes what serde writes for the RecordEvent.
                assert_eq!(
                    String::from_utf8_lossy(&line),
                    serde_json::to_string(&RecordEvent::new(e)).unwrap(),
                    "{e:?}"
                );
                let back: RecordEvent = serde_json::from_slice(&line).unwrap();
                assert_eq!(
                    back.to_event().unwrap(),
                    *e,
                    "{}",
                    String::from_utf8_lossy(&line)
                );
                // Into a used event: nothing of the old one stays.
                let mut reused = full.clone();
                back.fill(&mut reused).unwrap();
                assert_eq!(reused, *e);
            }
        }
    }

    /// Each listed field of `e`: its record-line key, whether it is set, and its value as
    /// JSON. Generated from the one field list, so a new field is checked with no edit here.
    macro_rules! listed_fields {
        ($( $group:ident { $(
            $(#[doc = $doc:literal])*
            $name:ident $key:literal : $ty:ty = $dec:expr,
        )* } )*) => {
            fn listed(e: &Event) -> Vec<(&'static str, bool, serde_json::Value)> {
                let line = serde_json::to_value(RecordEvent::new(e)).unwrap();
                vec![$($({
                    let v = line.get($key).cloned().unwrap_or(serde_json::Value::Null);
                    ($key, !v.is_null(), v)
                },)*)*]
            }
        };
    }
    event_fields!(listed_fields);

    /// The guard of the single field list: every field goes kernel record -> Event -> record
    /// line (the hand-tuned writer, byte-equal to serde's) -> reader -> Event unchanged, and
    /// reaches an NDJSON event line, for every kind. A field missing from any path fails.
    #[test]
    fn every_listed_field_survives_every_path() {
        use crate::{export::ndjson::EventLine, model::results::ResultTable};
        let table = ResultTable::builtin();
        for kind in RecordKind::ALL {
            let mut bytes = record(kind, 9, 3, b"comm\"x", b"file\xff");
            // Set what `record` leaves zero, so that every field of the kind is non-zero.
            let rec = bytes
                .as_mut_ptr()
                .cast::<collapse_trace_common::EventRecord>();
            // SAFETY: `record` returns one whole EventRecord's bytes; read and written
            // unaligned.
            unsafe {
                let mut r = std::ptr::read_unaligned(rec);
                r.call_ns = 13;
                r.call_flags = collapse_trace_common::CALL_PROCESS_MADVISE;
                std::ptr::write_unaligned(rec, r);
            }
            let e = Event::decode(&bytes).unwrap();
            let fields = listed(&e);
            for (key, set, _) in &fields {
                use collapse_trace_common::Field as F;
                // What each kind carries, said independently of the decoder.
                let field = match *key {
                    "file" | "dir" | "dir_cut" | "real_name" | "inode" | "dev" => Some(F::Filename),
                    "pfn" => Some(F::Pfn),
                    "present" => Some(F::Present),
                    "swap" => Some(F::Swap),
                    "is_shmem" => Some(F::IsShmem),
                    "nr" => Some(F::Nr),
                    "index" => Some(F::Index),
                    "addr" => Some(F::Addr),
                    "referenced" => Some(F::Referenced),
                    "none_or_zero" => Some(F::NoneOrZero),
                    "unmapped" => Some(F::Unmapped),
                    "isolated" => Some(F::Isolated),
                    _ => None,
                };
                let want = match (*key, field) {
                    ("process_madvise", _) => kind == RecordKind::MadviseCall,
                    (_, Some(f)) => kind.carries(f),
                    (_, None) => true,
                };
                assert_eq!(
                    *set, want,
                    "{kind:?}: field {key} set={set}, expected {want}"
                );
            }
            // Kind-specific fields: set exactly when the kind carries them.
            let mut line = Vec::new();
            EventLines::default().append(&mut line, &e);
            assert_eq!(
                std::str::from_utf8(&line).unwrap(),
                serde_json::to_string(&RecordEvent::new(&e)).unwrap(),
                "{kind:?}: the writer and serde disagree"
            );
            let back: RecordEvent = serde_json::from_slice(&line).unwrap();
            assert_eq!(
                back.to_event().unwrap(),
                e,
                "{kind:?}: the reader lost a field"
            );
            let ndjson = serde_json::to_value(EventLine::new(&e, &table)).unwrap();
            for (key, set, value) in fields {
                if !set {
                    continue;
                }
                // NDJSON names a call's range `start`/`len`.
                let nd_key = match (kind, key) {
                    (RecordKind::MadviseCall, "addr") => "start",
                    (RecordKind::MadviseCall, "index") => "len",
                    (_, "result") => "number",
                    (_, k) => k,
                };
                // NDJSON writes the device as `major:minor`.
                let value = match key {
                    "dev" => serde_json::Value::String(crate::export::ndjson::dev_name(
                        value.as_u64().unwrap() as u32,
                    )),
                    _ => value,
                };
                assert_eq!(
                    ndjson.get(nd_key),
                    Some(&value),
                    "{kind:?}: field {key} is missing from the NDJSON event line"
                );
            }
        }
    }

    #[test]
    fn zero_fields_are_left_out() {
        let e = Event::empty();
        let mut line = Vec::new();
        append_event_line(&mut line, &e);
        assert_eq!(
            String::from_utf8_lossy(&line),
            r#"{"ts_ns":0,"tracepoint":"mm_khugepaged_scan_file","origin":"unknown"}"#
        );
    }

    #[test]
    fn version_1_lines_read() {
        // Version 1 wrote every field, zero or not.
        let v1 = br#"{"ts_ns":5,"tracepoint":"madvise_collapse","result":0,"pid":7,"tgid":7,"comm":"a\\x0ab\"","origin":"madvise","cgroup_id":1,"file":"","pfn":0,"present":0,"swap":0,"is_shmem":false,"nr":0,"index":2097152,"addr":4096,"call_ns":3,"referenced":0,"none_or_zero":0,"unmapped":0,"isolated":0,"process_madvise":false}"#;
        let e: RecordEvent = serde_json::from_slice(v1).unwrap();
        let e = e.to_event().unwrap();
        let mut want = Event::empty();
        want.ts_ns = 5;
        want.tracepoint = RecordKind::MadviseCall;
        want.pid = 7;
        want.tgid = 7;
        want.comm = b"a\nb\"".to_vec();
        want.origin = Origin::Madvise;
        want.cgroup_id = 1;
        want.index = 2 << 20;
        want.addr = 4096;
        want.call_ns = 3;
        assert_eq!(e, want);
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
            cgroups: Default::default(),
        };
        let line = serde_json::to_vec(&TrailerLine { trailer: t }).unwrap();
        assert!(is_trailer(&line));
        let back: TrailerLine = serde_json::from_slice(&line).unwrap();
        assert_eq!(back.trailer.counters().unwrap(), k);
    }

    #[test]
    fn headers_are_checked() {
        for v in [1, 2, 3] {
            let h = format!(r#"{{"format":"collapse-trace.record","version":{v}}}"#);
            // Known versions pass the version check (and then miss fields).
            assert!(
                parse_header(h.as_bytes())
                    .unwrap_err()
                    .contains("bad record header")
            );
        }
        assert!(
            parse_header(b"{\"format\":\"collapse-trace.record\",\"version\":4}")
                .unwrap_err()
                .contains("newer")
        );
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
