//! Types shared by collapse-trace's kernel programs and its userspace.
//!
//! Everything here is `#[repr(C)]` and `no_std`: the eBPF programs write these bytes, userspace
//! reads them back. Changing a layout means changing both sides in the same commit.
#![no_std]

/// The tracepoints collapse-trace knows. The discriminant is the index used in every map.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Tracepoint {
    /// `huge_memory:mm_khugepaged_scan_file`: a file/shmem range was scanned.
    ScanFile = 0,
    /// `huge_memory:mm_khugepaged_collapse_file`: collapse_file() finished (or rolled back).
    CollapseFile = 1,
}

impl Tracepoint {
    /// Every tracepoint, in index order.
    pub const ALL: [Tracepoint; NUM_TRACEPOINTS] = [Tracepoint::ScanFile, Tracepoint::CollapseFile];

    /// The tracepoint for a map index, if it is one.
    pub const fn from_index(i: u8) -> Option<Tracepoint> {
        match i {
            0 => Some(Tracepoint::ScanFile),
            1 => Some(Tracepoint::CollapseFile),
            _ => None,
        }
    }

    /// The tracefs event group.
    pub const fn group(self) -> &'static str {
        "huge_memory"
    }

    /// The tracefs event name.
    pub const fn name(self) -> &'static str {
        match self {
            Tracepoint::ScanFile => "mm_khugepaged_scan_file",
            Tracepoint::CollapseFile => "mm_khugepaged_collapse_file",
        }
    }

    /// The eBPF program attached to this tracepoint (its symbol in the object).
    pub const fn program(self) -> &'static str {
        match self {
            Tracepoint::ScanFile => "scan_file",
            Tracepoint::CollapseFile => "collapse_file",
        }
    }
}

/// How many tracepoints the maps are sized for.
pub const NUM_TRACEPOINTS: usize = 2;

/// Result slots per tracepoint in the counter map. `scan_result` has about 32 values; the rest is
/// headroom for newer kernels. A result outside `0..RESULT_SLOTS - 1` lands in the last slot.
pub const RESULT_SLOTS: usize = 64;

/// The counter slot for results that do not fit (negative or too large).
pub const RESULT_OVERFLOW_SLOT: u32 = RESULT_SLOTS as u32 - 1;

/// Bytes of file name carried per event (NAME_MAX + NUL).
pub const FILENAME_LEN: usize = 256;

/// Bytes of comm (TASK_COMM_LEN).
pub const COMM_LEN: usize = 16;

/// A field that the running kernel's tracepoint does not have.
pub const FIELD_ABSENT: u16 = u16::MAX;

/// Who caused the event.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Origin {
    /// The kernel could not tell (BTF offset of `task_struct.flags` unknown).
    Unknown = 0,
    /// The khugepaged kernel thread.
    Khugepaged = 1,
    /// A user task, i.e. a MADV_COLLAPSE (or process_madvise) caller.
    Madvise = 2,
}

impl Origin {
    /// Decode the byte written by the kernel side.
    pub const fn from_u8(v: u8) -> Origin {
        match v {
            1 => Origin::Khugepaged,
            2 => Origin::Madvise,
            _ => Origin::Unknown,
        }
    }
}

/// Offsets (from the record start) of the fields of one tracepoint, read from its tracefs
/// `format` file. [`FIELD_ABSENT`] marks a field this kernel does not have.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TpLayout {
    /// `int result`.
    pub result: u16,
    /// `__data_loc char[] filename`.
    pub filename: u16,
    /// `unsigned long pfn` (scan_file) or `hpfn` (collapse_file).
    pub pfn: u16,
    /// `int present` (scan_file).
    pub present: u16,
    /// `int swap` (scan_file).
    pub swap: u16,
    /// `unsigned long index` (collapse_file).
    pub index: u16,
    /// `unsigned long addr` (collapse_file).
    pub addr: u16,
    /// `bool is_shmem` (collapse_file).
    pub is_shmem: u16,
    /// `int nr` (collapse_file).
    pub nr: u16,
    /// Non-zero when this layout equals the one compiled into the program
    /// ([`SCAN_FILE_LAYOUT`] / [`COLLAPSE_FILE_LAYOUT`]): the program then loads fields straight
    /// from the context at constant offsets (the verifier rejects loads at offsets it cannot see
    /// as constants); otherwise it reads them with `bpf_probe_read_kernel` at these offsets.
    pub compiled: u16,
}

impl TpLayout {
    /// A layout where no field is present.
    pub const ABSENT: TpLayout = TpLayout {
        result: FIELD_ABSENT,
        filename: FIELD_ABSENT,
        pfn: FIELD_ABSENT,
        present: FIELD_ABSENT,
        swap: FIELD_ABSENT,
        index: FIELD_ABSENT,
        addr: FIELD_ABSENT,
        is_shmem: FIELD_ABSENT,
        nr: FIELD_ABSENT,
        compiled: 0,
    };
}

/// `mm_khugepaged_scan_file` as laid out by kernels 6.x (read off 6.18).
pub const SCAN_FILE_LAYOUT: TpLayout = TpLayout {
    result: 36,
    filename: 24,
    pfn: 16,
    present: 28,
    swap: 32,
    index: FIELD_ABSENT,
    addr: FIELD_ABSENT,
    is_shmem: FIELD_ABSENT,
    nr: FIELD_ABSENT,
    compiled: 1,
};

/// `mm_khugepaged_collapse_file` as laid out by kernels 6.x (read off 6.18).
pub const COLLAPSE_FILE_LAYOUT: TpLayout = TpLayout {
    result: 52,
    filename: 44,
    pfn: 16,
    present: FIELD_ABSENT,
    swap: FIELD_ABSENT,
    index: 24,
    addr: 32,
    is_shmem: 40,
    nr: 48,
    compiled: 1,
};

/// Read-only configuration, set by userspace before load (a `.rodata` global, so the verifier
/// sees every value as a constant and prunes what is switched off).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// One layout per [`Tracepoint`].
    pub layouts: [TpLayout; NUM_TRACEPOINTS],
    /// Offset of `task_struct.flags` from BTF, or `u32::MAX` when unknown (origin then reads
    /// [`Origin::Unknown`]).
    pub task_flags_offset: u32,
    /// Non-zero: send one ring-buffer record per event. Zero: count only.
    pub events: u32,
    /// Ask for a reader wakeup only once this many bytes wait in the ring buffer; below it
    /// records are submitted with `BPF_RB_NO_WAKEUP` and the reader drains on a timer.
    /// Zero: wake on every record.
    pub wakeup_bytes: u64,
    /// Only this thread group (process), or 0 for all. Filtered events are neither counted
    /// nor sent, so the kernel counters stay exact for the filter.
    pub filter_tgid: u32,
    /// Non-zero: only tasks whose comm equals [`Config::filter_comm`].
    pub filter_comm_on: u32,
    /// The comm to match, NUL-padded.
    pub filter_comm: [u8; COMM_LEN],
}

impl Config {
    /// The configuration compiled into the object: the 6.18 layouts, events on, no filter.
    pub const DEFAULT: Config = Config {
        layouts: [SCAN_FILE_LAYOUT, COLLAPSE_FILE_LAYOUT],
        task_flags_offset: u32::MAX,
        events: 1,
        wakeup_bytes: 0,
        filter_tgid: 0,
        filter_comm_on: 0,
        filter_comm: [0; COMM_LEN],
    };
}

/// One event, as written to the ring buffer.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct EventRecord {
    /// `bpf_ktime_get_ns()` (CLOCK_MONOTONIC).
    pub ts_ns: u64,
    /// `bpf_get_current_cgroup_id()`.
    pub cgroup_id: u64,
    /// `pfn` (scan_file) or `hpfn` (collapse_file).
    pub pfn: u64,
    /// Page-cache index (collapse_file).
    pub index: u64,
    /// Virtual address (collapse_file).
    pub addr: u64,
    /// Thread id.
    pub pid: u32,
    /// Process id.
    pub tgid: u32,
    /// The `scan_result` number.
    pub result: i32,
    /// Present pages (scan_file).
    pub present: i32,
    /// Swap entries (scan_file).
    pub swap: i32,
    /// Pages handled (collapse_file).
    pub nr: i32,
    /// [`Tracepoint`] index.
    pub tracepoint: u8,
    /// [`Origin`].
    pub origin: u8,
    /// `is_shmem` (collapse_file).
    pub is_shmem: u8,
    /// Reserved, zero.
    pub _pad: u8,
    /// Bytes of `filename` used (without the NUL).
    pub filename_len: u32,
    /// Task comm, NUL-padded.
    pub comm: [u8; COMM_LEN],
    /// File name from the tracepoint's `__data_loc` field, NUL-terminated.
    pub filename: [u8; FILENAME_LEN],
}

/// Map names, shared so neither side can misspell them.
pub mod maps {
    /// Per-CPU `u64` counters, index `tracepoint * RESULT_SLOTS + result`.
    pub const COUNTS: &str = "COUNTS";
    /// Per-CPU `u64` records that could not be reserved, index `tracepoint`.
    pub const DROPS: &str = "DROPS";
    /// The ring buffer of [`crate::EventRecord`].
    pub const EVENTS: &str = "EVENTS";
    /// The `.rodata` global holding [`crate::Config`].
    pub const CONFIG: &str = "CONFIG";
}

/// Default ring buffer size in bytes (a power of two, a multiple of the page size).
pub const DEFAULT_RING_BYTES: u32 = 4 << 20;

#[cfg(feature = "user")]
mod user {
    // SAFETY: plain-old-data, repr(C), every bit pattern valid.
    unsafe impl aya::Pod for super::Config {}
}
