//! The record file format (`collapse-trace record`): NDJSON, optionally zstd-compressed.
//!
//! Line 1 is a [`Header`] (`{"format":"collapse-trace.record","version":4,...}`), then one
//! [`RecordEvent`] per line, then a [`TrailerLine`] (`{"trailer":{...}}`) once the recorder
//! stopped cleanly. Each line is written whole, the writer is flushed after every drain batch
//! and synced to disk at least once a second, so a killed recorder leaves a file that is
//! complete up to its last full line; only the trailer is missing, which is how a reader knows
//! the capture was cut short.
//!
//! The jobs are split: the schema of the header and the trailer (here), the event line
//! (`line`), the writer (`writer`), and the reader (`read`, with its threaded `pipeline`).

mod line;
pub(super) mod pipeline;
pub(super) mod read;
mod writer;

use std::collections::BTreeMap;

use collapse_trace_common::{NUM_KINDS, RESULT_SLOTS, RecordKind};
use serde::{Deserialize, Serialize};

#[cfg(test)]
pub(crate) use line::append_event_line;
pub(crate) use line::{EventLines, RecordEvent};
pub use writer::RecordWriter;
pub(crate) use writer::now_ns;

use crate::model::{aggregate::KernelCounters, filters::Filters, results::ResultTable};

/// The `format` of line 1.
pub const FORMAT: &str = "collapse-trace.record";
/// The major version this build writes. Version 2 leaves zero fields out of event lines;
/// version 3 adds the owner of the memory (`owner_tgid`, `owner_comm`, `owner_cgroup_id`),
/// which a version 1 or 2 file reads as absent (0, empty).
///
/// Version 4 leaves out each owner field that repeats the caller's (a MADV_COLLAPSE call on
/// its own memory: a quarter of such a line) and writes a differing one even when zero.
pub const VERSION: u32 = 4;
/// The first version whose absent owner fields are the caller's.
pub(crate) const OWNER_AS_CALLER: u32 = 4;
/// The oldest version this build reads (version 1 event lines hold every field, which
/// version 2's reader takes as it is).
pub(crate) const OLDEST_VERSION: u32 = 1;

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

/// The last line: `{"trailer":{...}}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct TrailerLine {
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

/// Whether a line is the trailer (the writer always puts that key first).
pub(crate) fn is_trailer(line: &[u8]) -> bool {
    line.starts_with(b"{\"trailer\"")
}

/// Parses line 1.
pub(crate) fn parse_header(line: &[u8]) -> Result<Header, String> {
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
    use collapse_trace_common::Origin;

    use super::*;
    use crate::model::event::{Event, event_fields, tests::record};

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
            // The owner as the caller (left out of a line), in part, or another.
            match i % 4 {
                0 => {
                    e.owner_tgid = e.tgid;
                    e.owner_comm.clone_from(&e.comm);
                    e.owner_cgroup_id = e.cgroup_id;
                }
                1 => e.owner_comm.clone_from(&e.comm),
                2 => e.owner_cgroup_id = e.cgroup_id,
                _ => {}
            }
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
        for v in [1, 2, 3, 4] {
            let h = format!(r#"{{"format":"collapse-trace.record","version":{v}}}"#);
            // Known versions pass the version check (and then miss fields).
            assert!(
                parse_header(h.as_bytes())
                    .unwrap_err()
                    .contains("bad record header")
            );
        }
        assert!(
            parse_header(b"{\"format\":\"collapse-trace.record\",\"version\":5}")
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
