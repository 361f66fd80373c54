//! Types shared by collapse-trace's kernel programs and its userspace.
//!
//! Everything here is `#[repr(C)]` and `no_std`: the eBPF programs write these bytes, userspace
//! reads them back. Changing a layout means changing both sides in the same commit.
#![no_std]

/// What an event record or a counter row is about. The discriminant is the index used in
/// every map.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RecordKind {
    /// `huge_memory:mm_khugepaged_scan_file`: a file/shmem range was scanned; carries the
    /// attempt's final result.
    ScanFile = 0,
    /// `huge_memory:mm_khugepaged_collapse_file`: collapse_file() finished (or rolled back).
    CollapseFile = 1,
    /// `huge_memory:mm_khugepaged_scan_pmd`: an anonymous range was scanned.
    ScanPmd = 2,
    /// `huge_memory:mm_collapse_huge_page`: collapse of an anonymous range finished.
    CollapseHugePage = 3,
    /// A MADV_COLLAPSE call returned (`syscalls:sys_exit_madvise` or
    /// `sys_exit_process_madvise`); its "result" is the errno (0 for success).
    MadviseCall = 4,
}

/// How many record kinds the maps are sized for.
pub const NUM_KINDS: usize = 5;

impl RecordKind {
    /// Every kind, in index order.
    pub const ALL: [RecordKind; NUM_KINDS] = [
        RecordKind::ScanFile,
        RecordKind::CollapseFile,
        RecordKind::ScanPmd,
        RecordKind::CollapseHugePage,
        RecordKind::MadviseCall,
    ];

    /// The kind for a map index, if it is one.
    pub const fn from_index(i: u8) -> Option<RecordKind> {
        match i {
            0 => Some(RecordKind::ScanFile),
            1 => Some(RecordKind::CollapseFile),
            2 => Some(RecordKind::ScanPmd),
            3 => Some(RecordKind::CollapseHugePage),
            4 => Some(RecordKind::MadviseCall),
            _ => None,
        }
    }

    /// The name used in every output: the tracefs event name, or `madvise_collapse` for
    /// MADV_COLLAPSE calls.
    pub const fn name(self) -> &'static str {
        match self {
            RecordKind::ScanFile => "mm_khugepaged_scan_file",
            RecordKind::CollapseFile => "mm_khugepaged_collapse_file",
            RecordKind::ScanPmd => "mm_khugepaged_scan_pmd",
            RecordKind::CollapseHugePage => "mm_collapse_huge_page",
            RecordKind::MadviseCall => "madvise_collapse",
        }
    }

    /// The kind of a name from [`RecordKind::name`].
    pub fn from_name(name: &str) -> Option<RecordKind> {
        RecordKind::ALL.into_iter().find(|t| t.name() == name)
    }

    /// The kind of a huge_memory tracepoint's name (not of `madvise_collapse`, which no
    /// tracepoint is called).
    pub fn from_tracepoint(name: &str) -> Option<RecordKind> {
        RecordKind::from_name(name).filter(|k| *k != RecordKind::MadviseCall)
    }

    /// Every kind that is a huge_memory tracepoint.
    pub const TRACEPOINTS: [RecordKind; 4] = [
        RecordKind::ScanFile,
        RecordKind::CollapseFile,
        RecordKind::ScanPmd,
        RecordKind::CollapseHugePage,
    ];

    /// A huge_memory tracepoint's event (not a MADV_COLLAPSE call record).
    pub const fn is_huge_memory(self) -> bool {
        !matches!(self, RecordKind::MadviseCall)
    }

    /// Anonymous-memory side.
    pub const fn is_anon(self) -> bool {
        matches!(self, RecordKind::ScanPmd | RecordKind::CollapseHugePage)
    }

    /// The scan tracepoints: one event per attempt, carrying its final result.
    pub const fn is_scan(self) -> bool {
        matches!(self, RecordKind::ScanFile | RecordKind::ScanPmd)
    }

    /// Whether records of this kind carry field `f` ([`Field::Index`] and [`Field::Addr`]
    /// are a call's `len` and `start`). The programs leave the other fields of a record
    /// unwritten (the slot holds an older record's bytes there) and the reader takes them as
    /// 0: fewer stores per record.
    pub const fn carries(self, f: Field) -> bool {
        use Field::*;
        match self {
            RecordKind::ScanFile => matches!(f, Pfn | Present | Swap | Filename),
            RecordKind::CollapseFile => matches!(f, Pfn | Index | Addr | IsShmem | Nr | Filename),
            RecordKind::ScanPmd => matches!(f, Pfn | Referenced | NoneOrZero | Unmapped),
            RecordKind::CollapseHugePage => matches!(f, Isolated),
            RecordKind::MadviseCall => matches!(f, Index | Addr),
        }
    }
}

/// A kernel attach point: a tracepoint collapse-trace's programs attach to.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Probe {
    /// `huge_memory:mm_khugepaged_scan_file`.
    ScanFile = 0,
    /// `huge_memory:mm_khugepaged_collapse_file`.
    CollapseFile = 1,
    /// `huge_memory:mm_khugepaged_scan_pmd`.
    ScanPmd = 2,
    /// `huge_memory:mm_collapse_huge_page`.
    CollapseHugePage = 3,
    /// `syscalls:sys_enter_madvise`.
    EnterMadvise = 4,
    /// `syscalls:sys_exit_madvise`.
    ExitMadvise = 5,
    /// `syscalls:sys_enter_process_madvise`.
    EnterProcessMadvise = 6,
    /// `syscalls:sys_exit_process_madvise`.
    ExitProcessMadvise = 7,
}

/// How many attach points there are.
pub const NUM_PROBES: usize = 8;

impl Probe {
    /// Every probe, in index order.
    pub const ALL: [Probe; NUM_PROBES] = [
        Probe::ScanFile,
        Probe::CollapseFile,
        Probe::ScanPmd,
        Probe::CollapseHugePage,
        Probe::EnterMadvise,
        Probe::ExitMadvise,
        Probe::EnterProcessMadvise,
        Probe::ExitProcessMadvise,
    ];

    /// The tracefs event group.
    pub const fn group(self) -> &'static str {
        match self {
            Probe::ScanFile | Probe::CollapseFile | Probe::ScanPmd | Probe::CollapseHugePage => {
                "huge_memory"
            }
            _ => "syscalls",
        }
    }

    /// The tracefs event name.
    pub const fn name(self) -> &'static str {
        match self {
            // The huge_memory probes are named by their record kind: one spelling.
            Probe::ScanFile | Probe::CollapseFile | Probe::ScanPmd | Probe::CollapseHugePage => {
                self.kind().name()
            }
            Probe::EnterMadvise => "sys_enter_madvise",
            Probe::ExitMadvise => "sys_exit_madvise",
            Probe::EnterProcessMadvise => "sys_enter_process_madvise",
            Probe::ExitProcessMadvise => "sys_exit_process_madvise",
        }
    }

    /// The eBPF program attached here (its symbol in the object).
    pub const fn program(self) -> &'static str {
        match self {
            Probe::ScanFile => "scan_file",
            Probe::CollapseFile => "collapse_file",
            Probe::ScanPmd => "scan_pmd",
            Probe::CollapseHugePage => "collapse_huge_page",
            Probe::EnterMadvise => "enter_madvise",
            Probe::ExitMadvise => "exit_madvise",
            Probe::EnterProcessMadvise => "enter_process_madvise",
            Probe::ExitProcessMadvise => "exit_process_madvise",
        }
    }

    /// The record kind this probe produces or completes.
    pub const fn kind(self) -> RecordKind {
        match self {
            Probe::ScanFile => RecordKind::ScanFile,
            Probe::CollapseFile => RecordKind::CollapseFile,
            Probe::ScanPmd => RecordKind::ScanPmd,
            Probe::CollapseHugePage => RecordKind::CollapseHugePage,
            _ => RecordKind::MadviseCall,
        }
    }
}

/// Fields the programs read, as indices into [`Layout::offsets`].
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    /// `int result` (file) or `int status` (anon).
    Result = 0,
    /// `__data_loc char[] filename`.
    Filename = 1,
    /// `unsigned long pfn` / `hpfn`.
    Pfn = 2,
    /// `int present` (scan_file).
    Present = 3,
    /// `int swap` (scan_file).
    Swap = 4,
    /// `unsigned long index` (collapse_file).
    Index = 5,
    /// `unsigned long addr` (collapse_file).
    Addr = 6,
    /// `bool is_shmem` (collapse_file).
    IsShmem = 7,
    /// `int nr` (collapse_file).
    Nr = 8,
    /// `int referenced` (scan_pmd).
    Referenced = 9,
    /// `int none_or_zero` (scan_pmd).
    NoneOrZero = 10,
    /// `int unmapped` (scan_pmd).
    Unmapped = 11,
    /// `int isolated` (collapse_huge_page).
    Isolated = 12,
    /// `behavior` (sys_enter_madvise / process_madvise; 8 bytes like every syscall arg).
    Behavior = 13,
    /// `start` (sys_enter_madvise).
    Start = 14,
    /// `len_in` (sys_enter_madvise).
    Len = 15,
    /// `long ret` (sys_exit_*).
    Ret = 16,
    /// `struct mm_struct *mm` (the huge_memory tracepoints): the memory worked on, whose
    /// owner the event is attributed to.
    Mm = 17,
}

/// How many fields a layout has room for.
pub const NUM_FIELDS: usize = 18;

/// A field that the running kernel's tracepoint does not have.
pub const FIELD_ABSENT: u16 = u16::MAX;

/// Offsets (from the record start) of one probe's fields, read from its tracefs `format`
/// file; [`FIELD_ABSENT`] marks a field the kernel does not have (or the probe does not use).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// By [`Field`].
    pub offsets: [u16; NUM_FIELDS],
    /// Non-zero when the offsets equal the compiled ones ([`COMPILED`]): the program then
    /// loads fields straight from the context at constant offsets (the verifier rejects loads
    /// at offsets it cannot see as constants); otherwise it reads them with
    /// `bpf_probe_read_kernel` at these offsets.
    pub compiled: u16,
}

impl Layout {
    /// A layout where no field is present.
    pub const ABSENT: Layout = Layout {
        offsets: [FIELD_ABSENT; NUM_FIELDS],
        compiled: 0,
    };

    /// The offset of `f`.
    pub const fn get(&self, f: Field) -> u16 {
        self.offsets[f as usize]
    }

    const fn with(mut self, f: Field, off: u16) -> Layout {
        self.offsets[f as usize] = off;
        self
    }
}

/// The layouts compiled into the programs: kernels 6.x (read off 6.18), by [`Probe`].
pub const COMPILED: [Layout; NUM_PROBES] = {
    let a = Layout {
        offsets: [FIELD_ABSENT; NUM_FIELDS],
        compiled: 1,
    };
    [
        a.with(Field::Result, 36)
            .with(Field::Mm, 8)
            .with(Field::Filename, 24)
            .with(Field::Pfn, 16)
            .with(Field::Present, 28)
            .with(Field::Swap, 32),
        a.with(Field::Result, 52)
            .with(Field::Mm, 8)
            .with(Field::Filename, 44)
            .with(Field::Pfn, 16)
            .with(Field::Index, 24)
            .with(Field::Addr, 32)
            .with(Field::IsShmem, 40)
            .with(Field::Nr, 48),
        a.with(Field::Result, 32)
            .with(Field::Mm, 8)
            .with(Field::Pfn, 16)
            .with(Field::Referenced, 24)
            .with(Field::NoneOrZero, 28)
            .with(Field::Unmapped, 36),
        a.with(Field::Result, 20)
            .with(Field::Mm, 8)
            .with(Field::Isolated, 16),
        a.with(Field::Start, 16)
            .with(Field::Len, 24)
            .with(Field::Behavior, 32),
        a.with(Field::Ret, 16),
        a.with(Field::Behavior, 40),
        a.with(Field::Ret, 16),
    ]
};

/// Result slots per kind in the counter map. `scan_result` has about 32 values, errnos used
/// by MADV_COLLAPSE are below 64; the rest is headroom. A result outside
/// `0..RESULT_SLOTS - 1` lands in the last slot.
pub const RESULT_SLOTS: usize = 64;

/// The counter slot for results that do not fit (negative or too large).
pub const RESULT_OVERFLOW_SLOT: u32 = RESULT_SLOTS as u32 - 1;

/// Bytes of file name carried per event (NAME_MAX + NUL).
pub const FILENAME_LEN: usize = 256;

/// Bytes of comm (TASK_COMM_LEN).
pub const COMM_LEN: usize = 16;

/// `madvise(..., MADV_COLLAPSE)`.
pub const MADV_COLLAPSE: u64 = 25;

/// Who caused the event.
#[repr(u8)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Origin {
    /// The kernel could not tell (BTF offset of `task_struct.flags` unknown).
    #[default]
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

/// Read-only configuration, set by userspace before load (a `.rodata` global, so the verifier
/// sees every value as a constant and prunes what is switched off).
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// One layout per [`Probe`].
    pub layouts: [Layout; NUM_PROBES],
    /// Offset of `task_struct.flags` from BTF, or `u32::MAX` when unknown (origin then reads
    /// [`Origin::Unknown`]).
    pub task_flags_offset: u32,
    /// Offset of `task_struct.comm` from BTF, or `u32::MAX` when unknown (the comm helper is
    /// used then).
    pub task_comm_offset: u32,
    /// Offset of `task_struct.pid` from BTF, or `u32::MAX` when unknown (the pid helper is
    /// used then, and for `task_tgid_offset` too).
    pub task_pid_offset: u32,
    /// Offset of `task_struct.tgid` from BTF, or `u32::MAX`.
    pub task_tgid_offset: u32,
    /// Non-zero: the MADV_COLLAPSE call hooks are attached, so events look up their call.
    pub calls: u32,
    /// Non-zero: send one ring-buffer record per event. Zero: count only.
    pub events: u32,
    /// Records per CPU in the event rings (`RING` holds `ring_slots` records per CPU).
    pub ring_slots: u32,
    /// Every this many records a CPU compares its head with the reader's tail, and wakes the
    /// reader (a tiny record into `WAKEUPS`) if [`Config::wake_unread`] or more are still
    /// unread. The reader paces its own drains by the event rate, so this fires only when it
    /// fell behind. 0: look at every record; `u32::MAX`: never wake.
    pub wake_records: u32,
    /// Only this thread group (process), or 0 for all. Filtered events are neither counted
    /// nor sent, so the kernel counters stay exact for the filter.
    pub filter_tgid: u32,
    /// Non-zero: only tasks whose comm equals [`Config::filter_comm`].
    pub filter_comm_on: u32,
    /// The comm to match, NUL-padded.
    pub filter_comm: [u8; COMM_LEN],
    /// Non-zero: read the clock (`bpf_ktime_get_ns`) for every record. Zero: read it once per
    /// jiffy, by the jiffy's first record on any CPU, and reuse it on every CPU (a clock read
    /// costs 15-90 ns in a KVM guest); times then lag by at most one tick (4 ms at HZ=250).
    pub precise_time: u32,
    /// Non-zero: only the syscall exits are hooked; they read the call's arguments from the
    /// registers saved at entry ([`Config::syscall_args`]), and a call's first event opens its
    /// slot. Zero: the entry hooks remember each call.
    pub exit_only: u32,
    /// Offsets in `struct pt_regs` of the first four syscall arguments (x86-64: `di`, `si`,
    /// `dx`, `r10`), from BTF; `u32::MAX` when unknown.
    pub syscall_args: [u32; 4],
    /// Unread records at which a CPU wakes the reader (see [`Config::wake_records`]).
    pub wake_unread: u32,
    /// Where the owner of an event's memory is found (from BTF).
    pub owner: OwnerConfig,
    /// Only events whose task's or owner's default-hierarchy cgroup id is this, or 0 for
    /// all.
    pub filter_cgroup: u64,
    /// What the BTF-typed programs follow from their arguments (from BTF).
    pub file: FileConfig,
}

/// Byte offsets (from BTF) that lead from an `mm_struct` to its owner task (`mm->owner`,
/// CONFIG_MEMCG) and from a task to its tgid, comm and default-hierarchy cgroup id
/// (`task->cgroups->dfl_cgrp->kn->id`); `mm_owner == u32::MAX`: owners are not read (the
/// records' owner fields are 0).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OwnerConfig {
    /// `mm_struct.owner`.
    pub mm_owner: u32,
    /// `task_struct.mm` (a MADV_COLLAPSE call record's memory is its caller's).
    pub task_mm: u32,
    /// `task_struct.tgid`.
    pub task_tgid: u32,
    /// `task_struct.comm`.
    pub task_comm: u32,
    /// `task_struct.cgroups`.
    pub task_cgroups: u32,
    /// `css_set.dfl_cgrp`.
    pub css_set_dfl_cgrp: u32,
    /// `cgroup.kn`.
    pub cgroup_kn: u32,
    /// `kernfs_node.id`.
    pub kn_id: u32,
}

impl OwnerConfig {
    /// Owners not read.
    pub const OFF: OwnerConfig = OwnerConfig {
        mm_owner: u32::MAX,
        task_mm: u32::MAX,
        task_tgid: u32::MAX,
        task_comm: u32::MAX,
        task_cgroups: u32::MAX,
        css_set_dfl_cgrp: u32::MAX,
        cgroup_kn: u32::MAX,
        kn_id: u32::MAX,
    };
}

/// Byte offsets (from BTF) that the BTF-typed programs follow from a tracepoint's `struct
/// file *` to the file's name, inode, device and directories. `file_dentry == u32::MAX`: no
/// BTF-typed programs are loaded.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileConfig {
    /// `file.f_path.dentry`.
    pub file_dentry: u32,
    /// `file.f_path.mnt`.
    pub file_mnt: u32,
    /// `vfsmount.mnt_root`.
    pub mnt_root: u32,
    /// `dentry.d_name.name`.
    pub dentry_name: u32,
    /// `dentry.d_name.len`.
    pub dentry_name_len: u32,
    /// `dentry.d_parent`.
    pub dentry_parent: u32,
    /// `dentry.d_inode`.
    pub dentry_inode: u32,
    /// `inode.i_ino`.
    pub inode_ino: u32,
    /// `inode.i_sb`.
    pub inode_sb: u32,
    /// `super_block.s_dev`.
    pub sb_dev: u32,
    /// Per huge_memory [`Probe`]: non-zero when the page argument is a pointer (`struct page
    /// *` or `struct folio *`: the event's pfn is then 0), zero when the kernel passes the
    /// pfn itself.
    pub page_is_pointer: [u8; 4],
}

impl FileConfig {
    /// BTF-typed programs not loaded.
    pub const OFF: FileConfig = FileConfig {
        file_dentry: u32::MAX,
        file_mnt: u32::MAX,
        mnt_root: u32::MAX,
        dentry_name: u32::MAX,
        dentry_name_len: u32::MAX,
        dentry_parent: u32::MAX,
        dentry_inode: u32::MAX,
        inode_ino: u32::MAX,
        inode_sb: u32::MAX,
        sb_dev: u32::MAX,
        page_is_pointer: [0; 4],
    };
}

/// An argument a BTF-typed program does not read.
pub const ARG_ABSENT: u8 = u8::MAX;

/// One argument list of a huge_memory tracepoint that a BTF-typed program is compiled for:
/// the running kernel's prototype (from BTF) must have exactly these argument names, in this
/// order, for the program to be loaded (else the classic program is).
#[derive(Clone, Copy, Debug)]
pub struct BtfVariant {
    /// The probe it replaces.
    pub probe: Probe,
    /// The program's symbol in the object.
    pub program: &'static str,
    /// Argument names after `__data`; [`PAGE_ARG`] stands for the page argument, whatever
    /// the kernel calls it (`page`, `folio`, `hpage`, `pfn`, `new_pfn`, ...).
    pub params: &'static [&'static str],
    /// By [`Field`]: the argument's position (0 = the first after `__data`), or
    /// [`ARG_ABSENT`]. `Pfn` is the page argument, `Filename` the `struct file *`, `Mm` the
    /// `struct mm_struct *`.
    pub args: [u8; NUM_FIELDS],
}

/// Stands for the page argument in [`BtfVariant::params`].
pub const PAGE_ARG: &str = "<page>";

const fn arg_map(pairs: &[(Field, u8)]) -> [u8; NUM_FIELDS] {
    let mut a = [ARG_ABSENT; NUM_FIELDS];
    let mut i = 0;
    while i < pairs.len() {
        a[pairs[i].0 as usize] = pairs[i].1;
        i += 1;
    }
    a
}

/// Every argument list a BTF-typed program exists for: 6.1 to 6.18 (scan_pmd lost its
/// `writable` argument in 6.16 or so; the page argument changed type, not place).
pub const BTF_VARIANTS: [BtfVariant; 5] = [
    BtfVariant {
        probe: Probe::ScanFile,
        program: "scan_file_btf",
        params: &["mm", PAGE_ARG, "file", "present", "swap", "result"],
        args: arg_map(&[
            (Field::Mm, 0),
            (Field::Pfn, 1),
            (Field::Filename, 2),
            (Field::Present, 3),
            (Field::Swap, 4),
            (Field::Result, 5),
        ]),
    },
    BtfVariant {
        probe: Probe::CollapseFile,
        program: "collapse_file_btf",
        params: &[
            "mm", PAGE_ARG, "index", "addr", "is_shmem", "file", "nr", "result",
        ],
        args: arg_map(&[
            (Field::Mm, 0),
            (Field::Pfn, 1),
            (Field::Index, 2),
            (Field::Addr, 3),
            (Field::IsShmem, 4),
            (Field::Filename, 5),
            (Field::Nr, 6),
            (Field::Result, 7),
        ]),
    },
    BtfVariant {
        probe: Probe::ScanPmd,
        program: "scan_pmd_btf",
        params: &[
            "mm",
            PAGE_ARG,
            "referenced",
            "none_or_zero",
            "status",
            "unmapped",
        ],
        args: arg_map(&[
            (Field::Mm, 0),
            (Field::Pfn, 1),
            (Field::Referenced, 2),
            (Field::NoneOrZero, 3),
            (Field::Result, 4),
            (Field::Unmapped, 5),
        ]),
    },
    BtfVariant {
        probe: Probe::ScanPmd,
        program: "scan_pmd_writable_btf",
        params: &[
            "mm",
            PAGE_ARG,
            "writable",
            "referenced",
            "none_or_zero",
            "status",
            "unmapped",
        ],
        args: arg_map(&[
            (Field::Mm, 0),
            (Field::Pfn, 1),
            (Field::Referenced, 3),
            (Field::NoneOrZero, 4),
            (Field::Result, 5),
            (Field::Unmapped, 6),
        ]),
    },
    BtfVariant {
        probe: Probe::CollapseHugePage,
        program: "collapse_huge_page_btf",
        params: &["mm", "isolated", "status"],
        args: arg_map(&[(Field::Mm, 0), (Field::Isolated, 1), (Field::Result, 2)]),
    },
];

// The kernel side compares the comm filter as two aligned words.
const _: () = assert!(core::mem::offset_of!(Config, filter_comm) % 8 == 0);

impl Config {
    /// The configuration compiled into the object: the 6.18 layouts, events on, no filter.
    pub const DEFAULT: Config = Config {
        layouts: COMPILED,
        task_flags_offset: u32::MAX,
        task_comm_offset: u32::MAX,
        task_pid_offset: u32::MAX,
        task_tgid_offset: u32::MAX,
        calls: 1,
        exit_only: 0,
        syscall_args: [u32::MAX; 4],
        wake_unread: 0,
        events: 1,
        ring_slots: 1,
        wake_records: 0,
        filter_tgid: 0,
        filter_comm_on: 0,
        filter_comm: [0; COMM_LEN],
        precise_time: 0,
        owner: OwnerConfig::OFF,
        filter_cgroup: 0,
        file: FileConfig::OFF,
    };
}

/// One CPU's event ring header (`HEADS` map, index = CPU number), one cache line. Written
/// only by the programs on that CPU (tracepoint programs do not nest on a CPU); the reader
/// maps it read-only and reads [`RingHead::head`].
///
/// The event rings replace the BPF ring buffer: its reserve takes a lock and reads the
/// reader's position on every record, and its submit can wake the reader, which together
/// cost more than the rest of a record. Here a record is plain stores into this CPU's slots
/// of the mmap'd `RING` array, published by one store of `head` (ordered after the record's
/// stores: x86-64 keeps stores in order; see docs/how-it-works.md).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RingHead {
    /// Records published on this CPU since load. The reader owns records
    /// `tail..head` (`RingTail::tail`); the slot of record `n` is `n % ring_slots`.
    pub head: u64,
    /// `head % ring_slots`, kept so the program needs no division.
    pub pos: u64,
    /// The reader's tail as last read: the program reads `TAILS` (a line the reader writes)
    /// only when the ring looks full by this copy.
    pub cached_tail: u64,
    /// `head` when this CPU last looked at the reader's position.
    pub woken: u64,
    /// Pads the header to a cache line of its own.
    pub _pad: [u64; 4],
}

/// The tick-cached clock (`CLOCK` map, one entry shared by all CPUs): the time of the first
/// record in the current jiffy, system-wide. Shared rather than per CPU so that records of
/// one tick carry the same time on every CPU: the reader merges the CPUs' rings by time, and
/// a thread's MADV_COLLAPSE exit then never sorts before the events of its call, whichever
/// CPUs they ran on. Written once per tick, read by every record (a line that stays cached).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Clock {
    /// `bpf_jiffies64()` when [`Clock::ns`] was read; written after `ns`.
    pub jiffies: u64,
    /// `bpf_ktime_get_ns()` at that jiffy's first record.
    pub ns: u64,
}

/// One CPU's reader position (`TAILS` map, index = CPU number), one cache line: written by
/// the reader once per drain, read by the programs only when their ring looks full.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RingTail {
    /// Records of this CPU the reader has finished with.
    pub tail: u64,
    /// Pads the tail to a cache line of its own.
    pub _pad: [u64; 7],
}

/// A MADV_COLLAPSE call in progress: slot `tid % MAX_CALLS` of the `CALLS` array (an array
/// slot costs a fraction of a hash-map update; two threads in flight on the same slot are
/// rare, and the second one's call is counted in `UNTRACKED_CALLS` instead).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CallInfo {
    /// The thread in the call, or 0 for a free slot.
    pub tid: u64,
    /// Entry time (the records' clock, CLOCK_MONOTONIC ns), made strictly greater than the
    /// slot's previous entry so that it also serves as the call's id on this thread.
    pub enter_ns: u64,
    /// `start` argument (0 for process_madvise, whose ranges are in an iovec).
    pub start: u64,
    /// `len_in` argument (0 for process_madvise).
    pub len: u64,
    /// [`CALL_PROCESS_MADVISE`] or 0.
    pub flags: u64,
}

/// The call was a process_madvise(2).
pub const CALL_PROCESS_MADVISE: u8 = 1;

/// One event, as written to the ring buffer.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct EventRecord {
    /// CLOCK_MONOTONIC ns: `bpf_ktime_get_ns()` with [`Config::precise_time`], else the
    /// time of the first record of the current tick on any CPU ([`Clock`]).
    pub ts_ns: u64,
    /// `bpf_get_current_cgroup_id()`.
    pub cgroup_id: u64,
    /// `pfn` (scan_file, scan_pmd) or `hpfn` (collapse_file).
    pub pfn: u64,
    /// Page-cache index (collapse_file); `len` of a MADV_COLLAPSE call.
    pub index: u64,
    /// Virtual address (collapse_file); `start` of a MADV_COLLAPSE call.
    pub addr: u64,
    /// [`CallInfo::enter_ns`] of the MADV_COLLAPSE call this event happened in (on this
    /// thread), or 0 (khugepaged, or no call tracked).
    pub call_ns: u64,
    /// Default-hierarchy cgroup id of the owner of the memory (`mm->owner`), or 0 when not
    /// read.
    pub owner_cgroup_id: u64,
    /// The file's inode number (BTF-typed path only; 0 otherwise).
    pub inode: u64,
    /// The file's device (`super_block.s_dev`, the kernel's `MKDEV(major, minor)` with a
    /// 20-bit minor; BTF-typed path only).
    pub dev: u32,
    /// Bytes of `dir` used.
    pub dir_len: u32,
    /// Thread id.
    pub pid: u32,
    /// Process id.
    pub tgid: u32,
    /// Process id of the owner of the memory the event is about (`mm->owner`; for a
    /// MADV_COLLAPSE call, the caller's memory), or 0 when not read.
    pub owner_tgid: u32,
    /// The `scan_result` number, or for [`RecordKind::MadviseCall`] the errno (0: success).
    pub result: i32,
    /// Present pages (scan_file).
    pub present: i32,
    /// Swap entries (scan_file).
    pub swap: i32,
    /// Pages handled (collapse_file).
    pub nr: i32,
    /// Referenced pages (scan_pmd).
    pub referenced: i32,
    /// Empty or zero-page PTEs (scan_pmd).
    pub none_or_zero: i32,
    /// Swapped-out PTEs (scan_pmd).
    pub unmapped: i32,
    /// Pages isolated (collapse_huge_page).
    pub isolated: i32,
    /// [`RecordKind`] index.
    pub tracepoint: u8,
    /// [`Origin`].
    pub origin: u8,
    /// `is_shmem` (collapse_file).
    pub is_shmem: u8,
    /// [`CALL_PROCESS_MADVISE`] for a process_madvise call record.
    pub call_flags: u8,
    /// [`FILE_REAL_NAME`], [`FILE_DIR_CUT`].
    pub file_flags: u8,
    /// Padding, zero.
    pub _pad: [u8; 3],
    /// Bytes of `filename` used (without the NUL).
    pub filename_len: u32,
    /// Task comm, NUL-padded.
    pub comm: [u8; COMM_LEN],
    /// The owner's comm, NUL-padded (all zero when not read).
    pub owner_comm: [u8; COMM_LEN],
    /// File name: the dentry's own name on the BTF-typed path ([`FILE_REAL_NAME`]), else the
    /// tracepoint record's `__data_loc` copy (the dentry's inline buffer, stale for long
    /// names).
    pub filename: [u8; FILENAME_LEN],
    /// The directories above the file up to its mount's root, nearest first, each followed
    /// by `/` (BTF-typed path only): at most [`DIR_LEVELS`] names of at most
    /// [`DIR_NAME_LEN`] - 1 bytes.
    pub dir: [u8; DIR_LEN],
}

/// [`EventRecord::file_flags`]: `filename` is the dentry's real name (not the record's copy).
pub const FILE_REAL_NAME: u8 = 1;
/// [`EventRecord::file_flags`]: the directory walk stopped before the mount's root, or a
/// directory name was cut: `dir` is the nearest part of the path only.
pub const FILE_DIR_CUT: u8 = 2;
/// Room for the directories above a file.
pub const DIR_LEN: usize = 128;
/// Room for one directory name (with its `/`): a name is copied into at most this much.
pub const DIR_NAME_LEN: usize = 64;
/// Directories walked up from a file.
pub const DIR_LEVELS: usize = 4;

// The size the docs and `--ring-size`'s help quote.
const _: () = assert!(core::mem::size_of::<EventRecord>() == 544);

/// Map names, shared so neither side can misspell them.
pub mod maps {
    /// Per-CPU `u64` counters, index `kind * RESULT_SLOTS + result`.
    pub const COUNTS: &str = "COUNTS";
    /// Per-CPU `u64` records that could not be reserved, index `kind`.
    pub const DROPS: &str = "DROPS";
    /// Per-CPU `u64` MADV_COLLAPSE calls that could not be tracked (their `CALLS` slot was
    /// taken by another thread's call in flight).
    pub const UNTRACKED_CALLS: &str = "UNTRACKED_CALLS";
    /// The event rings: `ring_slots` [`crate::EventRecord`] slots per CPU, mmap'd by the
    /// reader.
    pub const RING: &str = "RING";
    /// Per-CPU [`crate::RingHead`], mmap'd read-only by the reader.
    pub const HEADS: &str = "HEADS";
    /// Per-CPU [`crate::RingTail`], mmap'd read-write by the reader.
    pub const TAILS: &str = "TAILS";
    /// A small BPF ring buffer that only wakes the reader (its records carry the CPU).
    pub const WAKEUPS: &str = "WAKEUPS";
    /// The tick-cached [`crate::Clock`].
    pub const CLOCK: &str = "CLOCK";
    /// MADV_COLLAPSE calls in progress, slot `tid % MAX_CALLS`.
    pub const CALLS: &str = "CALLS";
    /// The counting window: one `u32`, non-zero while the programs count and send (set by
    /// userspace after attaching every program, cleared before detaching any).
    pub const WINDOW: &str = "WINDOW";
    /// The `.rodata` global holding [`crate::Config`].
    pub const CONFIG: &str = "CONFIG";
}

/// The least the default event rings take, all CPUs together: on a small machine each CPU
/// then gets more than [`RING_BYTES_PER_CPU`].
pub const DEFAULT_RING_BYTES: u32 = 8 << 20;

/// What each CPU's ring gets by default, where [`DEFAULT_RING_BYTES`] split over the CPUs
/// would give less: about 480 records, so a burst of a few hundred records on one CPU
/// between two drains neither drops nor wakes the reader (bpftrace's default per-CPU
/// buffer is the same 256 KiB).
pub const RING_BYTES_PER_CPU: u32 = 256 << 10;

/// The most the default event rings take, all CPUs together (reached at 256 CPUs; beyond,
/// each CPU gets less than [`RING_BYTES_PER_CPU`]). The rings are mapped whole, so this is
/// also what they add to the reader's resident memory.
pub const MAX_DEFAULT_RING_BYTES: u32 = 64 << 20;

/// Event ring bytes, all CPUs together, when `--ring-size` is not given: [`RING_BYTES_PER_CPU`]
/// for each of `cpus`, at least [`DEFAULT_RING_BYTES`] and at most
/// [`MAX_DEFAULT_RING_BYTES`].
pub const fn default_ring_bytes(cpus: u32) -> u32 {
    let want = (cpus as u64) * RING_BYTES_PER_CPU as u64;
    if want < DEFAULT_RING_BYTES as u64 {
        DEFAULT_RING_BYTES
    } else if want > MAX_DEFAULT_RING_BYTES as u64 {
        MAX_DEFAULT_RING_BYTES
    } else {
        want as u32
    }
}

/// The fewest records a CPU's ring holds, whatever `--ring-size` says.
pub const MIN_RING_SLOTS: u32 = 4;

/// Records per CPU for `ring_bytes` over `cpus` CPUs.
pub const fn ring_slots(ring_bytes: u32, cpus: u32) -> u32 {
    let cpus = if cpus == 0 { 1 } else { cpus };
    let n = ring_bytes / cpus / core::mem::size_of::<EventRecord>() as u32;
    if n < MIN_RING_SLOTS {
        MIN_RING_SLOTS
    } else {
        n
    }
}

/// Slots for MADV_COLLAPSE calls in flight (a power of two).
pub const MAX_CALLS: u32 = 16384;

/// A slot whose call entered longer ago than this is taken as stale (its thread died inside
/// the call, so no exit came) and reused.
pub const STALE_CALL_NS: u64 = 60_000_000_000;

#[cfg(feature = "user")]
mod user {
    // SAFETY: plain-old-data, repr(C), every bit pattern valid.
    unsafe impl aya::Pod for super::Config {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::RingHead {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::RingTail {}
}
