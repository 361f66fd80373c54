//! collapse-trace's kernel programs: one small function per attach point.
//!
//! A huge_memory event: apply the load-time filter, bump the per-CPU counter for
//! (kind, result), then (unless counting only) write a record into this CPU's event ring, or
//! count a drop when it is full. MADV_COLLAPSE calls: where BTF gives the saved syscall
//! registers (x86-64), only the syscall exit is hooked: it tells the call by its arguments,
//! counts the errno and sends a call record, and the call's first event opens the call's id
//! in the thread's slot. Elsewhere the syscall entry remembers the call per thread, so events
//! inside it carry the call's id, and the exit counts the errno and sends a call record.
//! Field offsets come from the running kernel's tracefs `format` files through the read-only
//! `CONFIG`, so the verifier sees them as constants.
#![no_std]
#![no_main]
// An empty asm statement is the compiler barrier that orders a record before its publication.
#![feature(asm_experimental_arch)]

use aya_ebpf::{
    EbpfContext,
    bindings::{BPF_F_MMAPABLE, BPF_RB_FORCE_WAKEUP},
    helpers::{
        bpf_get_current_cgroup_id, bpf_get_current_comm, bpf_get_current_pid_tgid,
        bpf_get_smp_processor_id, bpf_ktime_get_ns, bpf_probe_read_kernel, generated,
    },
    macros::{fexit, map, tracepoint},
    maps::{Array, PerCpuArray, RingBuf},
    programs::{FExitContext, TracePointContext},
};
use core::ptr::{read_volatile, write_volatile};

use aya_log_ebpf::debug;
use collapse_trace_common::{
    CALL_PROCESS_MADVISE, COMM_LEN, COMPILED, CallInfo, Clock, Config, EventRecord, FIELD_ABSENT,
    FILENAME_LEN, Field, MADV_COLLAPSE, MAX_CALLS, NUM_KINDS, Origin, Probe, RESULT_OVERFLOW_SLOT,
    RESULT_SLOTS, RecordKind, RingHead, RingTail, STALE_CALL_NS,
};

/// Reads one config value. Volatile so that LLVM cannot fold the compiled-in default: the
/// value is whatever userspace wrote before load.
macro_rules! conf {
    ($($field:tt)+) => {{
        // SAFETY: a read of our own frozen `.rodata` global, aligned and always valid (the
        // block may sit inside another unsafe block).
        #[allow(unused_unsafe)]
        let v = unsafe { core::ptr::read_volatile(&raw const $crate::CONFIG.$($field)+) };
        v
    }};
}

/// Stores one record field. Volatile, because LLVM turns plain stores of known zeros in a
/// row into a call to a memset subprogram, which costs more than the stores.
macro_rules! put {
    ($rec:ident.$field:ident = $v:expr) => {
        write_volatile(&raw mut (*$rec).$field, $v)
    };
}

mod btf_typed;

/// Set by userspace before load (`.rodata`: frozen, so the verifier knows every value).
#[unsafe(no_mangle)]
static CONFIG: Config = Config::DEFAULT;

#[map]
static COUNTS: PerCpuArray<u64> =
    PerCpuArray::with_max_entries((NUM_KINDS * RESULT_SLOTS) as u32, 0);

#[map]
static DROPS: PerCpuArray<u64> = PerCpuArray::with_max_entries(NUM_KINDS as u32, 0);

#[map]
static UNTRACKED_CALLS: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// The event rings: `ring_slots` records per CPU (CPU `c` owns slots `c * ring_slots ..`).
/// Sized by userspace before load; mmap'd by the reader.
#[map]
static RING: Array<EventRecord> = Array::with_max_entries(1, BPF_F_MMAPABLE);

/// Per-CPU ring headers, index = CPU. Sized by userspace; mmap'd read-only by the reader.
#[map]
static HEADS: Array<RingHead> = Array::with_max_entries(1, BPF_F_MMAPABLE);

/// Per-CPU reader positions, index = CPU. Sized by userspace; written by the reader.
#[map]
static TAILS: Array<RingTail> = Array::with_max_entries(1, BPF_F_MMAPABLE);

/// The tick-cached clock, one entry for all CPUs.
#[map]
static CLOCK: Array<Clock> = Array::with_max_entries(1, 0);

/// Only wakes the reader: one 8-byte record per wakeup (the page is the smallest size).
#[map]
static WAKEUPS: RingBuf = RingBuf::with_byte_size(4096, 0);

#[map]
static CALLS: Array<CallInfo> = Array::with_max_entries(MAX_CALLS, 0);

/// The counting window: non-zero while userspace collects. Every program tests it first, so
/// counters, records and calls all start and stop at the same two instants (userspace opens
/// it once every program is attached, and closes it before any is detached).
#[map]
static WINDOW: Array<u32> = Array::with_max_entries(1, 0);

/// Whether the counting window is open (an array lookup the JIT inlines).
#[inline(always)]
fn window_open() -> bool {
    WINDOW.get(0).is_some_and(|v| *v != 0)
}

/// This CPU's number and ring header.
#[derive(Clone, Copy)]
struct Cpu {
    id: u32,
    head: *mut RingHead,
}

/// This CPU (the processor id is an inlined load here, and so is the array lookup).
#[inline(always)]
fn this_cpu() -> Option<Cpu> {
    // SAFETY: no preconditions.
    let id = unsafe { bpf_get_smp_processor_id() };
    HEADS.get_ptr_mut(id).map(|head| Cpu { id, head })
}

/// The records' clock, CLOCK_MONOTONIC ns. Reading it costs ~90 ns in a KVM guest, more than
/// the rest of a record, so unless `precise_time` is set it is read once per jiffy, by the
/// first record of the jiffy on any CPU, and reused by all until the next tick
/// (`bpf_jiffies64` is a plain load). Written `ns` first, then `jiffies`, and read in the
/// other order (x86-64 keeps both in order): whoever sees the new jiffy sees its time.
#[inline(always)]
fn now_ns() -> u64 {
    if conf!(precise_time) != 0 {
        // SAFETY: no preconditions.
        return unsafe { bpf_ktime_get_ns() };
    }
    // SAFETY: no preconditions.
    let jiffies = unsafe { generated::bpf_jiffies64() };
    let Some(c) = CLOCK.get_ptr_mut(0) else {
        // SAFETY: no preconditions.
        return unsafe { bpf_ktime_get_ns() };
    };
    // SAFETY: our map value; other CPUs write it too, each store a whole word.
    unsafe {
        if read_volatile(&raw const (*c).jiffies) == jiffies {
            return read_volatile(&raw const (*c).ns);
        }
        let ns = bpf_ktime_get_ns();
        write_volatile(&raw mut (*c).ns, ns);
        write_volatile(&raw mut (*c).jiffies, jiffies);
        ns
    }
}

/// The next free slot of this CPU's ring, or `None` when the reader has not yet finished with
/// it (the record is dropped).
#[inline(always)]
fn reserve(cpu: Cpu) -> Option<*mut EventRecord> {
    let slots = conf!(ring_slots);
    let h = cpu.head;
    // SAFETY: this CPU's header; TAILS is read as the reader last wrote it (volatile: it
    // changes under us).
    unsafe {
        let head = (*h).head;
        if head.wrapping_sub((*h).cached_tail) >= slots as u64 {
            let t = TAILS.get_ptr(cpu.id)?;
            (*h).cached_tail = read_volatile(&raw const (*t).tail);
            if head.wrapping_sub((*h).cached_tail) >= slots as u64 {
                return None;
            }
        }
        RING.get_ptr_mut(cpu.id * slots + (*h).pos as u32)
    }
}

/// Publishes the record [`reserve`] gave: one store of `head`, after every store of the
/// record. Every `wake_records` records it looks at the reader's position, and wakes the
/// reader only if `wake_unread` records or more are still unread: a wakeup is an interrupt
/// that costs ~17 us here, so the reader paces its own drains and is woken only when it fell
/// behind.
#[inline(always)]
fn publish(cpu: Cpu) {
    let h = cpu.head;
    let slots = conf!(ring_slots) as u64;
    let wake = conf!(wake_records);
    let wake_unread = conf!(wake_unread) as u64;
    // SAFETY: this CPU's header; TAILS as the reader last wrote it.
    unsafe {
        let head = (*h).head + 1;
        let pos = (*h).pos + 1;
        (*h).pos = if pos >= slots { 0 } else { pos };
        // A compiler barrier (BPF has no fence instruction and this LLVM selects no atomic
        // release store for the generic CPU): the record's stores stay before the store that
        // publishes it, and x86-64 keeps stores in program order.
        core::arch::asm!("", options(nostack, preserves_flags));
        write_volatile(&raw mut (*h).head, head);
        if wake != u32::MAX && head.wrapping_sub((*h).woken) >= wake as u64 {
            (*h).woken = head;
            let Some(t) = TAILS.get_ptr(cpu.id) else {
                return;
            };
            let tail = read_volatile(&raw const (*t).tail);
            (*h).cached_tail = tail;
            if head.wrapping_sub(tail) >= wake_unread {
                // A full doorbell means the reader has wakeups pending anyway.
                let _ = WAKEUPS.output::<u64>(cpu.id as u64, BPF_RB_FORCE_WAKEUP as u64);
            }
        }
    }
}

/// The call slot of thread `tid`.
#[inline(always)]
fn call_slot(tid: u32) -> Option<*mut CallInfo> {
    CALLS.get_ptr_mut(tid & (MAX_CALLS - 1))
}

/// `PF_KTHREAD` from include/linux/sched.h: the task is a kernel thread (khugepaged).
const PF_KTHREAD: u32 = 0x0020_0000;

#[tracepoint]
pub fn scan_file(ctx: TracePointContext) -> u32 {
    if !window_open() {
        return 0;
    }
    collapse_event::<{ Probe::ScanFile as usize }>(&ctx);
    0
}

#[tracepoint]
pub fn collapse_file(ctx: TracePointContext) -> u32 {
    if !window_open() {
        return 0;
    }
    collapse_event::<{ Probe::CollapseFile as usize }>(&ctx);
    0
}

#[tracepoint]
pub fn scan_pmd(ctx: TracePointContext) -> u32 {
    if !window_open() {
        return 0;
    }
    collapse_event::<{ Probe::ScanPmd as usize }>(&ctx);
    0
}

#[tracepoint]
pub fn collapse_huge_page(ctx: TracePointContext) -> u32 {
    if !window_open() {
        return 0;
    }
    collapse_event::<{ Probe::CollapseHugePage as usize }>(&ctx);
    0
}

#[tracepoint]
pub fn enter_madvise(ctx: TracePointContext) -> u32 {
    if !window_open() {
        return 0;
    }
    call_enter::<{ Probe::EnterMadvise as usize }>(&ctx, 0);
    0
}

#[tracepoint]
pub fn enter_process_madvise(ctx: TracePointContext) -> u32 {
    if !window_open() {
        return 0;
    }
    call_enter::<{ Probe::EnterProcessMadvise as usize }>(&ctx, CALL_PROCESS_MADVISE);
    0
}

#[tracepoint]
pub fn exit_madvise(ctx: TracePointContext) -> u32 {
    if !window_open() {
        return 0;
    }
    call_exit::<{ Probe::ExitMadvise as usize }>(&ctx);
    0
}

#[tracepoint]
pub fn exit_process_madvise(ctx: TracePointContext) -> u32 {
    if !window_open() {
        return 0;
    }
    call_exit::<{ Probe::ExitProcessMadvise as usize }>(&ctx);
    0
}

/// Reads field `$field` of type `$ty` from probe `$p`'s record. With `C` (the running
/// kernel's layout equals the compiled one; a const generic, so each program body is
/// specialised once instead of testing per field), a direct context load at a constant
/// offset (the cheapest access; the verifier only allows constant offsets into the context);
/// otherwise a `bpf_probe_read_kernel` at the offset read from tracefs; 0 when the kernel
/// lacks the field.
macro_rules! field {
    ($ctx:expr, $p:expr, $field:expr, $ty:ty) => {{
        let compiled_off: u16 = COMPILED[$p].offsets[$field as usize];
        if C {
            if compiled_off == FIELD_ABSENT {
                0 as $ty
            } else {
                // SAFETY: a constant offset inside the record, checked by the verifier.
                unsafe {
                    *($ctx.as_ptr() as *const u8)
                        .add(compiled_off as usize)
                        .cast::<$ty>()
                }
            }
        } else {
            let off = conf!(layouts[$p].offsets[$field as usize]);
            if off == FIELD_ABSENT {
                0 as $ty
            } else {
                // SAFETY: the probe helper tolerates any address.
                unsafe { $ctx.read_at::<$ty>(off as usize) }.unwrap_or(0 as $ty)
            }
        }
    }};
}

/// The load-time filter: each filter matches the task that ran the code or the owner of the
/// memory it worked on (khugepaged's work on a process's memory is that process's). Returns
/// the task's pid_tgid when it passes.
#[inline(always)]
fn admit(task: Task, owner: &Owner) -> Option<u64> {
    let pid_tgid = task.pid_tgid();
    let tgid = (pid_tgid >> 32) as u32;
    let want_tgid = conf!(filter_tgid);
    if want_tgid != 0 && want_tgid != tgid && want_tgid != owner.tgid {
        return None;
    }
    if conf!(filter_comm_on) != 0
        && !task.comm_is(&CONFIG.filter_comm)
        && !owner.comm_is(&CONFIG.filter_comm)
    {
        return None;
    }
    let want_cgroup = conf!(filter_cgroup);
    if want_cgroup != 0
        && want_cgroup != owner.cgroup_id
        // SAFETY: no preconditions.
        && want_cgroup != unsafe { bpf_get_current_cgroup_id() }
    {
        return None;
    }
    Some(pid_tgid)
}

/// Counting only, an event whose own task passes every filter: counted, without reading the
/// memory's owner (a filter passes on the task or on the owner, so the owner could only
/// admit what the task already did). Returns whether it was counted.
#[inline(always)]
fn counted_by_task(task: Task, kind: RecordKind, result: i32) -> bool {
    if conf!(events) != 0 {
        return false;
    }
    let want_tgid = conf!(filter_tgid);
    if want_tgid != 0 && want_tgid != (task.pid_tgid() >> 32) as u32 {
        return false;
    }
    if conf!(filter_comm_on) != 0 && !task.comm_is(&CONFIG.filter_comm) {
        return false;
    }
    let want_cgroup = conf!(filter_cgroup);
    // SAFETY: no preconditions.
    if want_cgroup != 0 && want_cgroup != unsafe { bpf_get_current_cgroup_id() } {
        return false;
    }
    count(kind, result);
    true
}

/// Counting with no filter needs nothing of the task: not even the helper call that finds it.
#[inline(always)]
fn needs_task() -> bool {
    conf!(events) != 0
        || conf!(filter_tgid) != 0
        || conf!(filter_comm_on) != 0
        || conf!(filter_cgroup) != 0
}

/// The owner of the memory an event is about (`mm->owner`, CONFIG_MEMCG): for khugepaged's
/// work, the workload; for a MADV_COLLAPSE caller, normally the caller. Read with
/// `bpf_probe_read_kernel` at offsets from BTF (no CO-RE here); all zero when BTF lacked an
/// offset, the mm has no owner (exiting) or a read faulted.
#[derive(Clone, Copy)]
struct Owner {
    tgid: u32,
    comm: [u8; COMM_LEN],
    cgroup_id: u64,
}

impl Owner {
    const NONE: Owner = Owner {
        tgid: 0,
        comm: [0; COMM_LEN],
        cgroup_id: 0,
    };

    /// The owner of `mm` (a kernel `struct mm_struct *`).
    #[inline(always)]
    fn of_mm(mm: u64) -> Owner {
        let off = conf!(owner.mm_owner);
        if off == u32::MAX || mm == 0 {
            return Owner::NONE;
        }
        let Some(task) = read_kernel::<u64>(mm + off as u64) else {
            return Owner::NONE;
        };
        Owner::of_task_ptr(task)
    }

    /// The owner of `mm`, a BTF-typed `struct mm_struct *` (a BTF-typed program's argument):
    /// plain loads, each checked by the verifier against BTF, instead of probe reads.
    #[inline(always)]
    fn of_mm_btf(mm: *const u8) -> Owner {
        let off = conf!(owner.mm_owner);
        if off == u32::MAX || mm.is_null() {
            return Owner::NONE;
        }
        // SAFETY: BTF-typed pointers and member offsets from BTF, as in Task's loads; a
        // fault reads as zero.
        unsafe {
            let task = *mm.add(off as usize).cast::<*const u8>();
            if task.is_null() {
                return Owner::NONE;
            }
            let mut o = Owner::NONE;
            o.tgid = *task.add(conf!(owner.task_tgid) as usize).cast::<u32>();
            let comm = task.add(conf!(owner.task_comm) as usize);
            let c = o.comm.as_mut_ptr().cast::<u64>();
            c.write_unaligned(*comm.cast::<u64>());
            c.add(1).write_unaligned(*comm.add(8).cast::<u64>());
            let cset = *task
                .add(conf!(owner.task_cgroups) as usize)
                .cast::<*const u8>();
            if cset.is_null() {
                return o;
            }
            let cg = *cset
                .add(conf!(owner.css_set_dfl_cgrp) as usize)
                .cast::<*const u8>();
            if cg.is_null() {
                return o;
            }
            let kn = *cg.add(conf!(owner.cgroup_kn) as usize).cast::<*const u8>();
            if kn.is_null() {
                return o;
            }
            o.cgroup_id = *kn.add(conf!(owner.kn_id) as usize).cast::<u64>();
            o
        }
    }

    /// The owner of the current task's memory (a MADV_COLLAPSE caller's).
    #[inline(always)]
    fn of_current(task: Task) -> Owner {
        let off = conf!(owner.task_mm);
        if off == u32::MAX {
            return Owner::NONE;
        }
        // SAFETY: a BTF-checked load of the `mm` member of the BTF-typed current task; the
        // owner's fields then load the same way (of_mm_btf), which saves the eight
        // bpf_probe_read_kernel calls of of_mm on every MADV_COLLAPSE call.
        let mm = unsafe { *task.0.add(off as usize).cast::<*const u8>() };
        Owner::of_mm_btf(mm)
    }

    /// Tgid, comm and default-hierarchy cgroup id of `task` (a `struct task_struct *`).
    #[inline(always)]
    fn of_task_ptr(task: u64) -> Owner {
        if task == 0 {
            return Owner::NONE;
        }
        let mut o = Owner::NONE;
        o.tgid = read_kernel::<u32>(task + conf!(owner.task_tgid) as u64).unwrap_or(0);
        o.comm = read_kernel::<[u8; COMM_LEN]>(task + conf!(owner.task_comm) as u64)
            .unwrap_or([0; COMM_LEN]);
        let cgroup = read_kernel::<u64>(task + conf!(owner.task_cgroups) as u64)
            .filter(|&cset| cset != 0)
            .and_then(|cset| read_kernel::<u64>(cset + conf!(owner.css_set_dfl_cgrp) as u64))
            .filter(|&cg| cg != 0)
            .and_then(|cg| read_kernel::<u64>(cg + conf!(owner.cgroup_kn) as u64))
            .filter(|&kn| kn != 0)
            .and_then(|kn| read_kernel::<u64>(kn + conf!(owner.kn_id) as u64));
        o.cgroup_id = cgroup.unwrap_or(0);
        o
    }

    /// Whether the owner's comm equals `want` (NUL-padded), compared as two words.
    #[inline(always)]
    fn comm_is(&self, want: &[u8; COMM_LEN]) -> bool {
        // SAFETY: `want` is CONFIG's 16 aligned bytes, read as volatile words; `comm` is ours.
        unsafe {
            let w = want.as_ptr().cast::<u64>();
            let c = self.comm.as_ptr().cast::<u64>();
            c.read_unaligned() == read_volatile(w)
                && c.add(1).read_unaligned() == read_volatile(w.add(1))
        }
    }

    /// Stores the owner into a record.
    #[inline(always)]
    unsafe fn store(&self, rec: *mut EventRecord) {
        // SAFETY: the caller's reserved slot.
        unsafe {
            put!(rec.owner_tgid = self.tgid);
            put!(rec.owner_cgroup_id = self.cgroup_id);
            let d = (&raw mut (*rec).owner_comm).cast::<u64>();
            let c = self.comm.as_ptr().cast::<u64>();
            d.write_unaligned(c.read_unaligned());
            d.add(1).write_unaligned(c.add(1).read_unaligned());
        }
    }
}

/// One `bpf_probe_read_kernel` of a `T` at kernel address `addr`.
#[inline(always)]
fn read_kernel<T>(addr: u64) -> Option<T> {
    // SAFETY: the helper tolerates any address (a fault returns an error).
    unsafe { bpf_probe_read_kernel(addr as *const T) }.ok()
}

#[inline(always)]
fn count(kind: RecordKind, result: i32) {
    let slot = if (result as u32) < RESULT_OVERFLOW_SLOT {
        result as u32
    } else {
        RESULT_OVERFLOW_SLOT
    };
    bump(&COUNTS, kind as u32 * RESULT_SLOTS as u32 + slot);
}

/// Runs the program body specialised for whether this probe's layout is the compiled one.
macro_rules! by_layout {
    ($f:ident::<$p:ident>($($arg:expr),*)) => {
        if conf!(layouts[$p].compiled) != 0 {
            $f::<$p, true>($($arg),*)
        } else {
            $f::<$p, false>($($arg),*)
        }
    };
}

#[inline(always)]
fn collapse_event<const P: usize>(ctx: &TracePointContext) {
    by_layout!(collapse_event_as::<P>(ctx))
}

/// The record kind of huge_memory probe `P`.
#[inline(always)]
const fn kind_of(p: usize) -> RecordKind {
    match p {
        0 => RecordKind::ScanFile,
        1 => RecordKind::CollapseFile,
        2 => RecordKind::ScanPmd,
        _ => RecordKind::CollapseHugePage,
    }
}

/// The values of one huge_memory event besides its task, owner and file (zero where the
/// kind has none).
#[derive(Clone, Copy, Default)]
struct Hit {
    pfn: u64,
    index: u64,
    addr: u64,
    present: i32,
    swap: i32,
    nr: i32,
    referenced: i32,
    none_or_zero: i32,
    unmapped: i32,
    isolated: i32,
    is_shmem: u8,
}

#[inline(always)]
fn collapse_event_as<const P: usize, const C: bool>(ctx: &TracePointContext) {
    let kind = kind_of(P);
    let result: i32 = field!(ctx, P, Field::Result, i32);
    if !needs_task() {
        count(kind, result);
        return;
    }
    let task = Task::current();
    if counted_by_task(task, kind, result) {
        return;
    }
    let owner = Owner::of_mm(field!(ctx, P, Field::Mm, u64));
    let Some((pid_tgid, cpu, rec)) = admit_event(ctx, kind, task, &owner, result) else {
        return;
    };
    let hit = Hit {
        pfn: field!(ctx, P, Field::Pfn, u64),
        index: field!(ctx, P, Field::Index, u64),
        addr: field!(ctx, P, Field::Addr, u64),
        present: field!(ctx, P, Field::Present, i32),
        swap: field!(ctx, P, Field::Swap, i32),
        nr: field!(ctx, P, Field::Nr, i32),
        referenced: field!(ctx, P, Field::Referenced, i32),
        none_or_zero: field!(ctx, P, Field::NoneOrZero, i32),
        unmapped: field!(ctx, P, Field::Unmapped, i32),
        isolated: field!(ctx, P, Field::Isolated, i32),
        is_shmem: field!(ctx, P, Field::IsShmem, u8),
    };
    let loc = field!(ctx, P, Field::Filename, u32);
    // SAFETY: `rec` is the slot admit_event reserved; every field is written before publish.
    unsafe {
        write_event(rec, kind, task, &owner, pid_tgid, result, &hit);
        if kind.carries(Field::Filename) {
            put!(rec.filename_len = 0);
            put!(rec.file_flags = 0);
            put!(rec.inode = 0);
            put!(rec.dev = 0);
            put!(rec.dir_len = 0);
        }
        // __data_loc: low 16 bits = offset from the record start, high 16 = length (with the
        // NUL). A plain copy of known length is cheaper than a string copy.
        let len = (loc >> 16).min(FILENAME_LEN as u32);
        if kind.carries(Field::Filename) && len > 0 {
            let src = (ctx.as_ptr() as *const u8).add((loc & 0xffff) as usize);
            let dst = (*rec).filename.as_mut_ptr();
            if generated::bpf_probe_read_kernel(dst.cast(), len, src.cast()) == 0 {
                // The kernel stores the NUL; a name cut at the buffer's end has none.
                let last = (len - 1) as usize;
                (*rec).filename_len = if (*rec).filename[last & (FILENAME_LEN - 1)] == 0 {
                    len - 1
                } else {
                    len
                };
            }
        }
    }
    publish(cpu);
}

/// The filter and the count of an event that will be sent: its task's pid_tgid, this CPU and
/// the ring slot reserved for it, or `None` (filtered out, counting only, or a drop, which
/// it counts).
#[inline(always)]
fn admit_event<X: EbpfContext>(
    ctx: &X,
    kind: RecordKind,
    task: Task,
    owner: &Owner,
    result: i32,
) -> Option<(u64, Cpu, *mut EventRecord)> {
    let pid_tgid = admit(task, owner)?;
    count(kind, result);
    if conf!(events) == 0 {
        return None;
    }
    let Some(cpu) = this_cpu() else {
        bump(&DROPS, kind as u32);
        return None;
    };
    let Some(rec) = reserve(cpu) else {
        bump(&DROPS, kind as u32);
        debug!(
            ctx,
            "event ring full: dropped kind={} result={}", kind as u8, result
        );
        return None;
    };
    Some((pid_tgid, cpu, rec))
}

/// Writes everything of an event but its file (the callers differ there).
///
/// # Safety
///
/// `rec` is a slot [`reserve`] gave and that is not yet published.
#[inline(always)]
unsafe fn write_event(
    rec: *mut EventRecord,
    kind: RecordKind,
    task: Task,
    owner: &Owner,
    pid_tgid: u64,
    result: i32,
    hit: &Hit,
) {
    let tid = pid_tgid as u32;
    let origin = task.origin();
    let call_ns = if conf!(calls) == 0 {
        0
    } else if conf!(exit_only) != 0 {
        // Only a MADV_COLLAPSE caller makes these events in a user task.
        match origin {
            Origin::Madvise => join_or_open_call(tid),
            _ => 0,
        }
    } else {
        // SAFETY: a map value of ours; a racing writer can only make us miss the join.
        call_slot(tid).map_or(0, |c| unsafe {
            if (*c).tid == tid as u64 {
                (*c).enter_ns
            } else {
                0
            }
        })
    };
    // SAFETY: the caller's reserved slot.
    unsafe {
        put!(rec.ts_ns = now_ns());
        put!(rec.cgroup_id = bpf_get_current_cgroup_id());
        put!(rec.call_ns = call_ns);
        put!(rec.pid = tid);
        put!(rec.tgid = (pid_tgid >> 32) as u32);
        put!(rec.result = result);
        put!(rec.tracepoint = kind as u8);
        put!(rec.origin = origin as u8);
        // Only the fields this kind carries (`kind` is a constant here, so these fold).
        if kind.carries(Field::Pfn) {
            put!(rec.pfn = hit.pfn);
        }
        if kind.carries(Field::Index) {
            put!(rec.index = hit.index);
        }
        if kind.carries(Field::Addr) {
            put!(rec.addr = hit.addr);
        }
        if kind.carries(Field::Present) {
            put!(rec.present = hit.present);
        }
        if kind.carries(Field::Swap) {
            put!(rec.swap = hit.swap);
        }
        if kind.carries(Field::Nr) {
            put!(rec.nr = hit.nr);
        }
        if kind.carries(Field::Referenced) {
            put!(rec.referenced = hit.referenced);
        }
        if kind.carries(Field::NoneOrZero) {
            put!(rec.none_or_zero = hit.none_or_zero);
        }
        if kind.carries(Field::Unmapped) {
            put!(rec.unmapped = hit.unmapped);
        }
        if kind.carries(Field::Isolated) {
            put!(rec.isolated = hit.isolated);
        }
        if kind.carries(Field::IsShmem) {
            put!(rec.is_shmem = hit.is_shmem);
        }
        // Straight into the record: no stack copy.
        task.comm_into(&raw mut (*rec).comm);
        owner.store(rec);
    }
}

/// Remembers a MADV_COLLAPSE call on this thread, so the events inside it and its errno can
/// be joined.
#[inline(always)]
fn call_enter<const P: usize>(ctx: &TracePointContext, flags: u8) {
    by_layout!(call_enter_as::<P>(ctx, flags))
}

#[inline(always)]
fn call_enter_as<const P: usize, const C: bool>(ctx: &TracePointContext, flags: u8) {
    let behavior = field!(ctx, P, Field::Behavior, u64);
    if behavior != MADV_COLLAPSE {
        return;
    }
    let task = Task::current();
    let Some(pid_tgid) = admit(task, &Owner::of_current(task)) else {
        return;
    };
    let tid = pid_tgid as u32;
    let Some(slot) = call_slot(tid) else {
        return;
    };
    let now = now_ns();
    let start = field!(ctx, P, Field::Start, u64);
    let len = field!(ctx, P, Field::Len, u64);
    // SAFETY: a map value of ours, written field by field; see CallInfo for collisions.
    unsafe {
        if (*slot).tid != 0
            && (*slot).tid != tid as u64
            // Saturating: a call entered in this tick may carry an id a few ns past `now`
            // (ids are bumped to stay unique), and it is fresh, not stale.
            && now.saturating_sub((*slot).enter_ns) < STALE_CALL_NS
        {
            bump(&UNTRACKED_CALLS, 0);
            return;
        }
        (*slot).tid = tid as u64;
        // The cached clock repeats within a tick: strictly increasing keeps the id unique.
        (*slot).enter_ns = if now > (*slot).enter_ns {
            now
        } else {
            (*slot).enter_ns + 1
        };
        (*slot).start = start;
        (*slot).len = len;
        (*slot).flags = flags as u64;
    }
}

/// Counts the errno of a tracked MADV_COLLAPSE call and sends its record.
#[inline(always)]
fn call_exit<const P: usize>(ctx: &TracePointContext) {
    by_layout!(call_exit_as::<P>(ctx))
}

#[inline(always)]
fn call_exit_as<const P: usize, const C: bool>(ctx: &TracePointContext) {
    if conf!(exit_only) != 0 {
        return call_exit_only::<P, C>(ctx);
    }
    let pid_tgid = bpf_get_current_pid_tgid();
    let tid = pid_tgid as u32;
    // Every madvise exit passes here; only tracked calls go further.
    let Some(slot) = call_slot(tid) else {
        return;
    };
    // SAFETY: a map value of ours; copied out, then the slot is freed.
    let call = unsafe {
        if (*slot).tid != tid as u64 {
            return;
        }
        let call = *slot;
        (*slot).tid = 0;
        call
    };
    let ret = field!(ctx, P, Field::Ret, i64);
    let errno = if ret < 0 { (-ret) as i32 } else { 0 };
    count(RecordKind::MadviseCall, errno);
    if conf!(events) == 0 {
        return;
    }
    let task = Task::current();
    send_call(&CallRecord {
        task,
        owner: Owner::of_current(task),
        pid_tgid,
        ts_ns: now_ns(),
        call_ns: call.enter_ns,
        start: call.start,
        len: call.len,
        errno,
        flags: call.flags as u8,
    });
}

/// What a MADV_COLLAPSE call record says.
struct CallRecord {
    task: Task,
    owner: Owner,
    pid_tgid: u64,
    ts_ns: u64,
    call_ns: u64,
    start: u64,
    len: u64,
    errno: i32,
    flags: u8,
}

/// Writes a call record into this CPU's ring, or counts a drop.
#[inline(always)]
fn send_call(c: &CallRecord) {
    let Some(cpu) = this_cpu() else {
        bump(&DROPS, RecordKind::MadviseCall as u32);
        return;
    };
    let Some(rec) = reserve(cpu) else {
        bump(&DROPS, RecordKind::MadviseCall as u32);
        return;
    };
    // SAFETY: as in collapse_event.
    unsafe {
        put!(rec.ts_ns = c.ts_ns);
        put!(rec.cgroup_id = bpf_get_current_cgroup_id());
        put!(rec.index = c.len);
        put!(rec.addr = c.start);
        put!(rec.call_ns = c.call_ns);
        put!(rec.pid = c.pid_tgid as u32);
        put!(rec.tgid = (c.pid_tgid >> 32) as u32);
        put!(rec.result = c.errno);
        put!(rec.tracepoint = RecordKind::MadviseCall as u8);
        put!(rec.origin = Origin::Madvise as u8);
        put!(rec.call_flags = c.flags);
        // The other fields are not carried by call records (RecordKind::carries).
        c.task.comm_into(&raw mut (*rec).comm);
        c.owner.store(rec);
    }
    publish(cpu);
}

/// The id of the MADV_COLLAPSE call thread `tid` is in, opening it in the thread's slot if
/// this is its first event (the exit hook alone tracks calls), or 0 when the slot is held by
/// another thread's call in flight (the event then joins nothing).
#[inline(always)]
fn join_or_open_call(tid: u32) -> u64 {
    let Some(c) = call_slot(tid) else {
        return 0;
    };
    // SAFETY: a map value of ours; only the thread whose tid it holds writes it, except to
    // take over a free or stale slot.
    unsafe {
        if (*c).tid == tid as u64 {
            return (*c).enter_ns;
        }
        let now = now_ns();
        if (*c).tid != 0 && now.saturating_sub((*c).enter_ns) < STALE_CALL_NS {
            return 0;
        }
        let id = next_call_id(c, now);
        (*c).tid = tid as u64;
        id
    }
}

/// A call id for slot `c`: the time, made strictly greater than the slot's last id (the
/// cached clock repeats within a tick), so ids stay unique per thread.
#[inline(always)]
unsafe fn next_call_id(c: *mut CallInfo, now: u64) -> u64 {
    // SAFETY: the caller's slot.
    unsafe {
        let id = if now > (*c).enter_ns {
            now
        } else {
            (*c).enter_ns + 1
        };
        (*c).enter_ns = id;
        id
    }
}

/// The exit hook alone (no entry hook): tells a MADV_COLLAPSE call by the `behavior`
/// argument in the registers saved at syscall entry (`struct pt_regs`, offsets from BTF),
/// counts its errno, and sends its record with the id its first event opened.
#[inline(always)]
fn call_exit_only<const P: usize, const C: bool>(ctx: &TracePointContext) {
    let process_madvise = P == Probe::ExitProcessMadvise as usize;
    let task = Task::current();
    // SAFETY: the current task as the BTF-typed pointer the helper wants; it returns the
    // task's saved user registers, BTF-typed, so each load below is checked by the verifier.
    let regs = unsafe { generated::bpf_task_pt_regs(task.0 as *mut _) } as *const u8;
    let arg = |n: usize| -> u64 {
        let off = conf!(syscall_args[n]) as usize;
        // SAFETY: a BTF-checked load of one `unsigned long` member of pt_regs.
        unsafe { *regs.add(off).cast::<u64>() }
    };
    // madvise(start, len, behavior); process_madvise(pidfd, iovec, vlen, behavior, flags).
    if arg(if process_madvise { 3 } else { 2 }) != MADV_COLLAPSE {
        return;
    }
    let owner = Owner::of_current(task);
    let Some(pid_tgid) = admit(task, &owner) else {
        return;
    };
    let ret = field!(ctx, P, Field::Ret, i64);
    let (start, len) = if process_madvise {
        (0, 0)
    } else {
        (arg(0), arg(1))
    };
    let flags = if process_madvise {
        CALL_PROCESS_MADVISE
    } else {
        0
    };
    close_call(task, owner, pid_tgid, ret, start, len, flags);
}

/// Counts the errno of a MADV_COLLAPSE call that returned `ret`, and sends its record with
/// the id its first event opened in the thread's slot (exit-only tracking: a syscall exit or
/// the fexit on madvise_collapse).
#[inline(always)]
fn close_call(task: Task, owner: Owner, pid_tgid: u64, ret: i64, start: u64, len: u64, flags: u8) {
    let errno = if ret < 0 { (-ret) as i32 } else { 0 };
    count(RecordKind::MadviseCall, errno);
    if conf!(events) == 0 {
        return;
    }
    let tid = pid_tgid as u32;
    let Some(slot) = call_slot(tid) else {
        return;
    };
    let now = now_ns();
    // SAFETY: a map value of ours, as in join_or_open_call.
    let call_ns = unsafe {
        if (*slot).tid == tid as u64 {
            (*slot).tid = 0;
            (*slot).enter_ns
        } else if (*slot).tid != 0 && now.saturating_sub((*slot).enter_ns) < STALE_CALL_NS {
            // Another thread's call holds the slot: this call's events (if any) joined
            // nothing. Its id need only be unique on this thread: a precise clock read.
            bump(&UNTRACKED_CALLS, 0);
            bpf_ktime_get_ns()
        } else {
            // A call that made no event (it failed before scanning anything).
            next_call_id(slot, now)
        }
    };
    send_call(&CallRecord {
        task,
        owner,
        pid_tgid,
        ts_ns: now,
        call_ns,
        start,
        len,
        errno,
        flags,
    });
}

/// fexit on the kernel's MADV_COLLAPSE implementation, `madvise_collapse(vma, prev, start,
/// end)` (6.1 to about 6.16): runs only for MADV_COLLAPSE (not on every madvise(2)
/// system-wide, as the syscall exit does), once per VMA of the range; its return value is the
/// result (0 or -errno). Userspace loads the one of the two programs whose argument order BTF
/// shows.
#[fexit(function = "madvise_collapse")]
pub fn madvise_collapse_exit_prev(ctx: FExitContext) -> i32 {
    if !window_open() {
        return 0;
    }
    fexit_call::<2>(&ctx);
    0
}

/// The same for `madvise_collapse(vma, start, end, lock_dropped)` (newer kernels).
#[fexit(function = "madvise_collapse")]
pub fn madvise_collapse_exit(ctx: FExitContext) -> i32 {
    if !window_open() {
        return 0;
    }
    fexit_call::<1>(&ctx);
    0
}

/// Closes the call whose `start` is argument `START` (`end` follows it; the return value is
/// in slot 4, after the four arguments). Constant slots only: the verifier refuses loads
/// through a moved context pointer, and loads of a pointer-to-pointer argument (`prev`).
#[inline(always)]
fn fexit_call<const START: usize>(ctx: &FExitContext) {
    let task = Task::current();
    let owner = Owner::of_current(task);
    let Some(pid_tgid) = admit(task, &owner) else {
        return;
    };
    let start: u64 = ctx.arg(START);
    let end: u64 = ctx.arg(START + 1);
    // An `int`: only the low half of the slot counts.
    let ret: u64 = ctx.arg(4);
    close_call(
        task,
        owner,
        pid_tgid,
        i64::from(ret as i32),
        start,
        end.wrapping_sub(start),
        0,
    );
}

/// The current task as a BTF-typed pointer, found once per program run (one helper call)
/// and read by plain loads at offsets from BTF: the verifier checks each load against
/// task_struct's BTF (the offsets are frozen constants), and a load costs a fraction of the
/// helpers that would otherwise give pid, comm and flags one call each. Where BTF lacked an
/// offset, the helper is the fallback.
#[derive(Clone, Copy)]
struct Task(*const u8);

impl Task {
    #[inline(always)]
    fn current() -> Task {
        // SAFETY: no preconditions; never NULL in a task context.
        Task(unsafe { generated::bpf_get_current_task_btf() } as *const u8)
    }

    /// `tgid << 32 | pid`, like `bpf_get_current_pid_tgid`.
    #[inline(always)]
    fn pid_tgid(self) -> u64 {
        let (pid_off, tgid_off) = (conf!(task_pid_offset), conf!(task_tgid_offset));
        if pid_off == u32::MAX || tgid_off == u32::MAX {
            return bpf_get_current_pid_tgid();
        }
        // SAFETY: BTF-checked loads of two `pid_t` members.
        unsafe {
            let pid = *self.0.add(pid_off as usize).cast::<u32>();
            let tgid = *self.0.add(tgid_off as usize).cast::<u32>();
            (u64::from(tgid) << 32) | u64::from(pid)
        }
    }

    /// The khugepaged kernel thread, or a user task (a MADV_COLLAPSE caller): told apart by
    /// `PF_KTHREAD`, not by comm, which a user process can copy.
    #[inline(always)]
    fn origin(self) -> Origin {
        let off = conf!(task_flags_offset);
        if off == u32::MAX {
            return Origin::Unknown;
        }
        // SAFETY: a BTF-checked load of `flags`.
        let flags = unsafe { *self.0.add(off as usize).cast::<u32>() };
        if flags & PF_KTHREAD != 0 {
            Origin::Khugepaged
        } else {
            Origin::Madvise
        }
    }

    /// Copies the comm into `dst` (two loads of the `comm` array; the comm helper costs
    /// ~20 ns more).
    #[inline(always)]
    unsafe fn comm_into(self, dst: *mut [u8; COMM_LEN]) {
        let off = conf!(task_comm_offset);
        // SAFETY: BTF-checked loads inside `comm`; `dst` is a writable record field of
        // COMM_LEN bytes.
        unsafe {
            if off == u32::MAX {
                if generated::bpf_get_current_comm(dst.cast(), COMM_LEN as u32) != 0 {
                    (*dst)[0] = 0;
                }
                return;
            }
            let src = self.0.add(off as usize);
            let d = dst.cast::<u64>();
            d.write_unaligned(*src.cast::<u64>());
            d.add(1).write_unaligned(*src.add(8).cast::<u64>());
        }
    }

    /// Whether the comm equals `want` (NUL-padded), compared as two words.
    #[inline(always)]
    fn comm_is(self, want: &[u8; COMM_LEN]) -> bool {
        let off = conf!(task_comm_offset);
        // SAFETY: `want` is CONFIG's 16 bytes, read as volatile words (CONFIG's value is
        // whatever userspace wrote); the task loads are BTF-checked, inside `comm`.
        unsafe {
            let w = want.as_ptr().cast::<u64>();
            let (w0, w1) = (read_volatile(w), read_volatile(w.add(1)));
            if off == u32::MAX {
                let comm = bpf_get_current_comm().unwrap_or([0; COMM_LEN]);
                let c = comm.as_ptr().cast::<u64>();
                return c.read_unaligned() == w0 && c.add(1).read_unaligned() == w1;
            }
            let src = self.0.add(off as usize);
            *src.cast::<u64>() == w0 && *src.add(8).cast::<u64>() == w1
        }
    }
}

#[inline(always)]
fn bump(map: &PerCpuArray<u64>, index: u32) {
    if let Some(p) = map.get_ptr_mut(index) {
        // SAFETY: per-CPU slot; tracepoint programs run with preemption disabled, so nothing
        // else on this CPU updates it concurrently.
        unsafe { *p += 1 };
    }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
