//! The decoded event that every view uses, and its decoder from ring-buffer bytes.

use std::fmt;

use collapse_trace_common::{
    CALL_PROCESS_MADVISE, EventRecord, FILE_DIR_CUT, FILE_REAL_NAME, Field, Origin, RecordKind,
};
use serde::Serializer;
use thiserror::Error;

/// The one list of an event's fields, in record-line order, that every path is generated
/// from: the decoded [`Event`], its decoder from the kernel's [`EventRecord`], the record
/// file's line (`capture::record`: serde struct, reader and the hand-tuned writer), and the
/// round-trip test that holds every path to it. Adding a field is one entry here plus the
/// kernel's store (collapse-trace-common's `EventRecord` and the eBPF program).
///
/// Each entry: docs, `name "key": type = |record, kind| value from the ring`. `key` is the
/// name in record lines. Four groups: `pre` (before the task), `who` (the task and its
/// cgroup: a thread's events repeat them, so the record writer caches their text), `owner`
/// (the owner of the memory: cached with `who`, and left out of a line where it repeats the
/// caller's field, see [`owner_caller`]) and `what` (the rest). `ts_ns` and the kind are not
/// listed: every line starts with them.
macro_rules! event_fields {
    ($generate:ident) => {
        $generate! {
            pre {
                /// `scan_result` number, or for a MADV_COLLAPSE call record its errno (0:
                /// success).
                result "result": i64 = |r, _| r.result as i64,
            }
            who {
                /// Thread id.
                pid "pid": u32 = |r, _| r.pid,
                /// Process id.
                tgid "tgid": u32 = |r, _| r.tgid,
                /// Task comm, raw bytes (untrusted: escape before display).
                comm "comm": Vec<u8> = |r, _| until_nul(&r.comm),
                /// khugepaged thread or MADV_COLLAPSE caller.
                origin "origin": Origin = |r, _| Origin::from_u8(r.origin),
                /// cgroup v2 id.
                cgroup_id "cgroup_id": u64 = |r, _| r.cgroup_id,
            }
            // Each owner field has its caller's counterpart in `owner_caller`.
            owner {
                /// Process id of the owner of the memory (`mm->owner`): the workload behind
                /// khugepaged's work, normally the caller itself for MADV_COLLAPSE; 0 when
                /// the kernel gave none.
                owner_tgid "owner_tgid": u32 = |r, _| r.owner_tgid,
                /// The owner's comm, raw bytes (untrusted).
                owner_comm "owner_comm": Vec<u8> = |r, _| until_nul(&r.owner_comm),
                /// The owner's default-hierarchy (cgroup v2) id, 0 when unknown.
                owner_cgroup_id "owner_cgroup_id": u64 = |r, _| r.owner_cgroup_id,
            }
            what {
                /// File name, raw bytes (untrusted): the dentry's own name when `real_name`,
                /// else the tracepoint record's copy (stale for names over ~40 bytes).
                filename "file": Vec<u8> = |r, k| filename_of(r, k),
                /// The directories between the file and its mount's root, outermost first,
                /// `/`-joined, raw bytes (BTF-typed path; empty for a file at the root).
                dir "dir": Vec<u8> = |r, k| UpPath(dir_of(r, k)),
                /// `dir` is only the part nearest the file (the walk stopped early or a
                /// directory name was cut).
                dir_cut "dir_cut": bool =
                    |r, k| k.carries(Field::Filename) && r.file_flags & FILE_DIR_CUT != 0,
                /// `file` is the dentry's own name (the BTF-typed path), not the record's
                /// copy.
                real_name "real_name": bool =
                    |r, k| k.carries(Field::Filename) && r.file_flags & FILE_REAL_NAME != 0,
                /// The file's inode number (BTF-typed path; 0 otherwise).
                inode "inode": u64 = |r, k| carried(k, Field::Filename, r.inode),
                /// The file's device, the kernel's `MKDEV(major, minor)` (20-bit minor).
                dev "dev": u32 = |r, k| carried(k, Field::Filename, r.dev),
                /// pfn (scan_file, scan_pmd) or hpfn (collapse_file).
                pfn "pfn": u64 = |r, k| carried(k, Field::Pfn, r.pfn),
                /// Present pages (scan_file).
                present "present": i32 = |r, k| carried(k, Field::Present, r.present),
                /// Swap entries (scan_file).
                swap "swap": i32 = |r, k| carried(k, Field::Swap, r.swap),
                /// Whether the file is shmem (collapse_file).
                is_shmem "is_shmem": bool = |r, k| k.carries(Field::IsShmem) && r.is_shmem != 0,
                /// Pages handled (collapse_file).
                nr "nr": i32 = |r, k| carried(k, Field::Nr, r.nr),
                /// Page-cache index (collapse_file); `len` of a MADV_COLLAPSE call.
                index "index": u64 = |r, k| carried(k, Field::Index, r.index),
                /// Virtual address (collapse_file); `start` of a MADV_COLLAPSE call.
                addr "addr": u64 = |r, k| carried(k, Field::Addr, r.addr),
                /// Entry time of the MADV_COLLAPSE call this event happened in (same clock as
                /// `ts_ns`), or 0 (khugepaged, or no call tracked). For a call record: its
                /// own entry time.
                call_ns "call_ns": u64 = |r, _| r.call_ns,
                /// Referenced pages (scan_pmd).
                referenced "referenced": i32 = |r, k| carried(k, Field::Referenced, r.referenced),
                /// Empty or zero-page PTEs (scan_pmd).
                none_or_zero "none_or_zero": i32 =
                    |r, k| carried(k, Field::NoneOrZero, r.none_or_zero),
                /// Swapped-out PTEs (scan_pmd).
                unmapped "unmapped": i32 = |r, k| carried(k, Field::Unmapped, r.unmapped),
                /// Pages isolated (collapse_huge_page).
                isolated "isolated": i32 = |r, k| carried(k, Field::Isolated, r.isolated),
                /// A call record of process_madvise(2) rather than madvise(2).
                process_madvise "process_madvise": bool = |r, k| {
                    k == RecordKind::MadviseCall && r.call_flags & CALL_PROCESS_MADVISE != 0
                },
            }
        }
    };
}
pub(crate) use event_fields;

/// The caller's field that each `owner` field of [`event_fields`] repeats when the owner of
/// the memory is the caller itself (a MADV_COLLAPSE call on its own memory, the usual case):
/// `owner_caller!(e.owner_comm)` is `e.comm`. A record line leaves such fields out.
macro_rules! owner_caller {
    ($e:ident . owner_tgid) => {
        $e.tgid
    };
    ($e:ident . owner_comm) => {
        $e.comm
    };
    ($e:ident . owner_cgroup_id) => {
        $e.cgroup_id
    };
}
pub(crate) use owner_caller;

/// Generates [`Event`], its empty value and its decoder from the field list.
macro_rules! event_struct {
    ($( $group:ident { $(
        $(#[doc = $doc:literal])*
        $name:ident $key:literal : $ty:ty = $dec:expr,
    )* } )*) => {
        /// One tracepoint hit (or MADV_COLLAPSE call), decoded. Fields are listed once, in
        /// [`event_fields`].
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub struct Event {
            /// CLOCK_MONOTONIC nanoseconds.
            pub ts_ns: u64,
            /// Which tracepoint (or a MADV_COLLAPSE call record).
            pub tracepoint: RecordKind,
            $($( $(#[doc = $doc])* pub $name: $ty, )*)*
        }

        impl Event {
            /// An event with every field zero or empty (a buffer for
            /// [`Event::decode_into`]).
            pub fn empty() -> Event {
                Event {
                    ts_ns: 0,
                    tracepoint: RecordKind::ScanFile,
                    $($( $name: Default::default(), )*)*
                }
            }

            /// Every field from the kernel's record `r` of kind `k` (fields the kind does
            /// not carry read as zero: the programs leave them unwritten).
            fn fill_from(&mut self, r: &EventRecord, k: RecordKind) {
                self.ts_ns = r.ts_ns;
                self.tracepoint = k;
                $($( FromRing::set(&mut self.$name, ring_value(r, k, $dec)); )*)*
            }
        }
    };
}

event_fields!(event_struct);

/// Applies one field's decoder (a function, so that the closure's argument types are known).
fn ring_value<'r, T>(
    r: &'r EventRecord,
    k: RecordKind,
    decode: impl FnOnce(&'r EventRecord, RecordKind) -> T,
) -> T {
    decode(r, k)
}

/// Takes a decoded value into a field, reusing a byte buffer's allocation.
trait FromRing<T> {
    fn set(&mut self, v: T);
}

impl<T: Copy> FromRing<T> for T {
    fn set(&mut self, v: T) {
        *self = v;
    }
}

impl FromRing<&[u8]> for Vec<u8> {
    fn set(&mut self, v: &[u8]) {
        self.clear();
        self.extend_from_slice(v);
    }
}

/// The kernel's directory list, nearest first, each name followed by `/`: taken into a
/// field outermost first, `/`-joined.
struct UpPath<'r>(&'r [u8]);

impl FromRing<UpPath<'_>> for Vec<u8> {
    fn set(&mut self, v: UpPath<'_>) {
        self.clear();
        // From the end (the outermost name) back, a name at a time (every record of a file
        // event passes here).
        let mut rest = v.0;
        loop {
            while let [head @ .., b'/'] = rest {
                rest = head;
            }
            if rest.is_empty() {
                break;
            }
            // Directory names are short: a plain loop beats memrchr's set-up.
            let start = rest.iter().rposition(|&b| b == b'/').map_or(0, |i| i + 1);
            if !self.is_empty() {
                self.push(b'/');
            }
            self.extend_from_slice(&rest[start..]);
            rest = &rest[..start];
        }
    }
}

/// The directory bytes of a record (empty when its kind carries no file).
fn dir_of(r: &EventRecord, k: RecordKind) -> &[u8] {
    if !k.carries(Field::Filename) {
        return &[];
    }
    let len = (r.dir_len as usize).min(r.dir.len());
    &r.dir[..len]
}

/// `v` when kind `k` carries field `f`, else zero (the slot holds an older record's bytes).
fn carried<T: Default>(k: RecordKind, f: Field, v: T) -> T {
    if k.carries(f) { v } else { T::default() }
}

/// The file name bytes of a record (empty when its kind carries none).
fn filename_of(r: &EventRecord, k: RecordKind) -> &[u8] {
    if !k.carries(Field::Filename) {
        return &[];
    }
    let len = (r.filename_len as usize).min(r.filename.len());
    until_nul(&r.filename[..len])
}

/// A ring-buffer record that is not an [`EventRecord`].
#[derive(Debug, Error, PartialEq, Eq)]
pub enum DecodeError {
    /// Wrong size: kernel and userspace disagree on the layout.
    #[error("ring record of {got} bytes, expected {want}: kernel object and binary disagree")]
    Size {
        /// Bytes received.
        got: usize,
        /// Bytes expected.
        want: usize,
    },
    /// An unknown tracepoint index.
    #[error("ring record names tracepoint index {0}, which this build does not know")]
    Kind(u8),
}

fn until_nul(b: &[u8]) -> &[u8] {
    // A comm (16 bytes, two of them per record) in one 128-bit word: the lowest byte that
    // is zero sets the lowest high bit of `z` (a borrow only ever marks bytes above it).
    if let Ok(w) = <&[u8; 16]>::try_from(b) {
        const ONES: u128 = u128::MAX / 255;
        let x = u128::from_le_bytes(*w);
        let z = x.wrapping_sub(ONES) & !x & (ONES << 7);
        return &b[..(z.trailing_zeros() / 8).min(16) as usize];
    }
    &b[..memchr::memchr(0, b).unwrap_or(b.len())]
}

impl Event {
    /// Decodes one ring-buffer record.
    pub fn decode(bytes: &[u8]) -> Result<Event, DecodeError> {
        let mut e = Event::empty();
        e.decode_into(bytes)?;
        Ok(e)
    }

    /// Decodes one ring-buffer record into `self`, reusing its `comm` and `filename`
    /// buffers (a recorder decodes hundreds of thousands a second). On error `self` is
    /// unchanged.
    pub fn decode_into(&mut self, bytes: &[u8]) -> Result<(), DecodeError> {
        let want = size_of::<EventRecord>();
        if bytes.len() != want {
            return Err(DecodeError::Size {
                got: bytes.len(),
                want,
            });
        }
        let copy: EventRecord;
        let r: &EventRecord = if bytes.as_ptr().cast::<EventRecord>().is_aligned() {
            // Ring records are 8-byte aligned: read in place, without copying ~380 bytes.
            // SAFETY: length and alignment checked; EventRecord is repr(C) plain data valid
            // for any bits; the borrow of `bytes` outlives `r`.
            unsafe { &*bytes.as_ptr().cast::<EventRecord>() }
        } else {
            // SAFETY: the length matches, EventRecord is repr(C) plain data valid for any
            // bits, and read_unaligned makes no alignment assumption.
            copy = unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) };
            &copy
        };
        let kind = RecordKind::from_index(r.tracepoint).ok_or(DecodeError::Kind(r.tracepoint))?;
        self.fill_from(r, kind);
        Ok(())
    }
}

/// Escapes untrusted bytes (file names, comms) for any output: printable UTF-8 stays,
/// backslash becomes `\\`, control characters and invalid UTF-8 become `\xNN`. The result
/// never holds a control character, so it is safe in a terminal, a table or a label, and it
/// is reversible.
pub fn escape(bytes: &[u8]) -> String {
    Escaped(bytes).to_string()
}

/// [`escape`] as a [`fmt::Display`]: writes the escaped text piece by piece, so a serializer
/// (`collect_str`) can stream it into its output without building a `String`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Escaped<'a>(pub &'a [u8]);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The common case, printable ASCII without a backslash, is written as it is.
        if self
            .0
            .iter()
            .all(|&b| (0x20..0x7f).contains(&b) && b != b'\\')
            && let Ok(s) = std::str::from_utf8(self.0)
        {
            return f.write_str(s);
        }
        for chunk in self.0.utf8_chunks() {
            let valid = chunk.valid();
            let mut start = 0;
            for (i, c) in valid.char_indices() {
                if c != '\\' && !c.is_control() {
                    continue;
                }
                f.write_str(&valid[start..i])?;
                start = i + c.len_utf8();
                if c == '\\' {
                    f.write_str("\\\\")?;
                } else {
                    let mut buf = [0; 4];
                    for b in c.encode_utf8(&mut buf).bytes() {
                        hex_escape(f, b)?;
                    }
                }
            }
            f.write_str(&valid[start..])?;
            for &b in chunk.invalid() {
                hex_escape(f, b)?;
            }
        }
        Ok(())
    }
}

fn hex_escape(f: &mut fmt::Formatter<'_>, b: u8) -> fmt::Result {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let out = [
        b'\\',
        b'x',
        HEX[usize::from(b >> 4)],
        HEX[usize::from(b & 15)],
    ];
    // Four ASCII bytes.
    f.write_str(std::str::from_utf8(&out).map_err(|_| fmt::Error)?)
}

/// A string that is not the output of [`escape`].
#[derive(Debug, Error, PartialEq, Eq)]
#[error("bad escape at byte {at}: {why}")]
pub struct UnescapeError {
    /// Byte offset in the string.
    pub at: usize,
    /// What was wrong.
    pub why: &'static str,
}

/// The inverse of [`escape`]: `\\` becomes a backslash, `\xNN` the byte NN, every other
/// character its UTF-8 bytes. `unescape(&escape(b)) == b` for all bytes `b`.
pub fn unescape(s: &str) -> Result<Vec<u8>, UnescapeError> {
    let mut out = Vec::with_capacity(s.len());
    unescape_into(s, &mut out)?;
    Ok(out)
}

/// [`unescape`] into `out` (cleared first), reusing its allocation.
pub fn unescape_into(s: &str, out: &mut Vec<u8>) -> Result<(), UnescapeError> {
    out.clear();
    let b = s.as_bytes();
    if !b.contains(&b'\\') {
        out.extend_from_slice(b);
        return Ok(());
    }
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'\\' {
            out.push(b[i]);
            i += 1;
            continue;
        }
        match b.get(i + 1) {
            Some(b'\\') => {
                out.push(b'\\');
                i += 2;
            }
            Some(b'x') => {
                let hex = |c: Option<&u8>| match c {
                    Some(c) => (*c as char).to_digit(16),
                    None => None,
                };
                match (hex(b.get(i + 2)), hex(b.get(i + 3))) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 4;
                    }
                    _ => {
                        return Err(UnescapeError {
                            at: i,
                            why: "\\x is not followed by two hex digits",
                        });
                    }
                }
            }
            Some(_) => {
                return Err(UnescapeError {
                    at: i,
                    why: "a backslash is followed by neither \\ nor x",
                });
            }
            None => {
                return Err(UnescapeError {
                    at: i,
                    why: "a lone backslash at the end",
                });
            }
        }
    }
    Ok(())
}

/// Serializes untrusted bytes as their [`escape`]d string.
pub fn serialize_escaped<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&Escaped(bytes))
}

/// The numeric fields that matter for a kind, in words (`present=128 swap=0`).
pub fn detail(e: &Event) -> String {
    match e.tracepoint {
        RecordKind::ScanFile => format!("present={} swap={}", e.present, e.swap),
        RecordKind::CollapseFile => format!("nr={} shmem={}", e.nr, e.is_shmem as u8),
        RecordKind::ScanPmd => format!(
            "referenced={} none={} unmapped={}",
            e.referenced, e.none_or_zero, e.unmapped
        ),
        RecordKind::CollapseHugePage => format!("isolated={}", e.isolated),
        RecordKind::MadviseCall if e.process_madvise => "process_madvise".to_string(),
        RecordKind::MadviseCall => format!("start={:#x} len={:#x}", e.addr, e.index),
    }
}

/// The word used for an origin in every output.
pub fn origin_name(o: Origin) -> &'static str {
    match o {
        Origin::Khugepaged => "khugepaged",
        Origin::Madvise => "madvise",
        Origin::Unknown => "unknown",
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use collapse_trace_common::{COMM_LEN, DIR_LEN, FILENAME_LEN};

    #[test]
    fn a_comm_ends_at_its_first_nul_whatever_the_bytes_around_it() {
        // Every length 0..=16, with bytes that would trip a careless zero-byte trick (0x01
        // and 0x80-0xff after the NUL, a borrow from the byte below).
        for len in 0..=16 {
            for fill in [0x01u8, 0x80, 0xff, b'a'] {
                let mut comm = [fill; 16];
                for (i, b) in comm.iter_mut().enumerate().take(len) {
                    *b = [0x01, 0x80, 0xff, b'k'][i % 4];
                }
                if len < 16 {
                    comm[len] = 0;
                }
                assert_eq!(until_nul(&comm), &comm[..len], "len {len} fill {fill:#x}");
            }
        }
        assert_eq!(until_nul(b"abc\0def"), b"abc");
        assert_eq!(until_nul(b"abc"), b"abc");
    }

    /// A record as the kernel side would write it.
    pub fn record(tp: RecordKind, tgid: u32, result: i32, comm: &[u8], name: &[u8]) -> Vec<u8> {
        let mut r = EventRecord {
            ts_ns: 1,
            cgroup_id: 2,
            pfn: 3,
            index: 4,
            addr: 5,
            call_ns: 0,
            owner_cgroup_id: 14,
            inode: 16,
            dev: 17,
            dir_len: 8,
            pid: tgid,
            tgid,
            owner_tgid: 15,
            result,
            present: 6,
            swap: 7,
            nr: 8,
            referenced: 9,
            none_or_zero: 10,
            unmapped: 11,
            isolated: 12,
            tracepoint: tp as u8,
            origin: Origin::Madvise as u8,
            is_shmem: 1,
            call_flags: 0,
            file_flags: FILE_REAL_NAME | FILE_DIR_CUT,
            _pad: [0; 3],
            filename_len: name.len() as u32,
            comm: [0; COMM_LEN],
            owner_comm: [0; COMM_LEN],
            filename: [0; FILENAME_LEN],
            dir: [0; DIR_LEN],
        };
        r.dir[..8].copy_from_slice(b"sub/top/");
        r.comm[..comm.len()].copy_from_slice(comm);
        r.owner_comm[..5].copy_from_slice(b"owner");
        r.filename[..name.len()].copy_from_slice(name);
        // SAFETY: viewing a repr(C) value as bytes.
        unsafe { std::slice::from_raw_parts((&raw const r).cast::<u8>(), size_of::<EventRecord>()) }
            .to_vec()
    }

    #[test]
    fn decodes_a_record() {
        let e = Event::decode(&record(RecordKind::CollapseFile, 42, 30, b"prov", b"f")).unwrap();
        assert_eq!(e.tracepoint, RecordKind::CollapseFile);
        assert_eq!((e.tgid, e.result, e.nr, e.is_shmem), (42, 30, 8, true));
        assert_eq!(e.comm, b"prov");
        assert_eq!(e.filename, b"f");
        assert_eq!(e.origin, Origin::Madvise);
    }

    #[test]
    fn directories_come_outermost_first() {
        let mut d = b"stale".to_vec();
        for (up, want) in [
            (&b"sub/top/"[..], &b"top/sub"[..]),
            (b"one/", b"one"),
            (b"", b""),
            (b"c//b/a/", b"a/b/c"),
            (b"no-slash", b"no-slash"),
        ] {
            d.set(UpPath(up));
            assert_eq!(d, want, "{}", escape(up));
        }
    }

    #[test]
    fn decodes_aligned_and_unaligned_records_alike() {
        let r = record(RecordKind::ScanPmd, 7, 3, b"x\"y", b"name");
        let mut shifted = vec![0u8; r.len() + 1];
        shifted[1..].copy_from_slice(&r);
        let want = Event::decode(&r).unwrap();
        assert_eq!(Event::decode(&shifted[1..]).unwrap(), want);
        // Into a used event: nothing of the old one stays.
        let mut e =
            Event::decode(&record(RecordKind::CollapseFile, 1, 1, b"long comm", b"f")).unwrap();
        e.decode_into(&shifted[1..]).unwrap();
        assert_eq!(e, want);
    }

    #[test]
    fn fields_a_kind_does_not_carry_read_as_zero() {
        // A slot keeps an older record's bytes where the programs write nothing.
        let mut r = record(RecordKind::CollapseFile, 42, 30, b"prov", b"f");
        let full = Event::decode(&r).unwrap();
        assert_eq!(
            (full.nr, full.is_shmem, full.filename.as_slice()),
            (8, true, &b"f"[..])
        );
        r[std::mem::offset_of!(EventRecord, tracepoint)] = RecordKind::CollapseHugePage as u8;
        let e = Event::decode(&r).unwrap();
        assert_eq!(
            (e.nr, e.is_shmem, e.pfn, e.index, e.addr),
            (0, false, 0, 0, 0)
        );
        assert!(e.filename.is_empty());
        assert_eq!(
            (e.tgid, e.result, e.comm.as_slice()),
            (42, 30, &b"prov"[..])
        );
        r[std::mem::offset_of!(EventRecord, call_flags)] =
            collapse_trace_common::CALL_PROCESS_MADVISE;
        assert!(
            !Event::decode(&r).unwrap().process_madvise,
            "only call records say so"
        );
        r[std::mem::offset_of!(EventRecord, tracepoint)] = RecordKind::MadviseCall as u8;
        let call = Event::decode(&r).unwrap();
        assert!(call.process_madvise && call.filename.is_empty() && call.nr == 0);
        assert_eq!((call.index, call.addr), (full.index, full.addr));
    }

    #[test]
    fn rejects_wrong_sizes_and_tracepoints() {
        assert!(matches!(
            Event::decode(&[0; 8]),
            Err(DecodeError::Size { .. })
        ));
        let mut r = record(RecordKind::ScanFile, 1, 0, b"", b"");
        r[std::mem::offset_of!(EventRecord, tracepoint)] = 9;
        assert_eq!(Event::decode(&r), Err(DecodeError::Kind(9)));
    }

    #[test]
    fn unescape_inverts_escape() {
        let cases: [&[u8]; 9] = [
            b"",
            b"plain",
            b"a\nb\tc",
            b"back\\slash \\x41 literal",
            b"bad\xff\xfeutf8",
            "caf\u{e9} \u{9b}".as_bytes(),
            b"\\",
            b"\x00\x7f\x80",
            b"trailing\\",
        ];
        for c in cases {
            assert_eq!(unescape(&escape(c)).unwrap(), c, "{:?}", escape(c));
        }
        // Every byte, and every pair of bytes.
        for a in 0..=255u8 {
            assert_eq!(unescape(&escape(&[a])).unwrap(), [a]);
            for b in (0..=255u8).step_by(7) {
                assert_eq!(unescape(&escape(&[a, b, b'\\'])).unwrap(), [a, b, b'\\']);
            }
        }
        // A cheap pseudo-random sweep of longer strings.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..2000 {
            let len = (x % 40) as usize;
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            assert_eq!(unescape(&escape(&bytes)).unwrap(), bytes);
        }
    }

    #[test]
    fn unescape_rejects_what_escape_never_writes() {
        assert!(unescape("a\\").is_err());
        assert!(unescape("\\q").is_err());
        assert!(unescape("\\x4").is_err());
        assert!(unescape("\\xzz").is_err());
        assert_eq!(unescape("\\x41\\\\").unwrap(), b"A\\");
    }

    #[test]
    fn escapes_hostile_names() {
        assert_eq!(escape(b"plain name.txt"), "plain name.txt");
        assert_eq!(escape(b"a\nb\tc"), "a\\x0ab\\x09c");
        assert_eq!(escape(b"\x1b[31mred"), "\\x1b[31mred");
        assert_eq!(escape(b"back\\slash \"q\""), "back\\\\slash \"q\"");
        assert_eq!(escape(b"bad\xff\xfeutf8"), "bad\\xff\\xfeutf8");
        assert_eq!(escape("caf\u{e9}".as_bytes()), "caf\u{e9}");
        assert_eq!(escape("\u{9b}".as_bytes()), "\\xc2\\x9b"); // C1 control (CSI)
    }
}
