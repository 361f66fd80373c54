//! collapse-trace's kernel programs: one small function per attach point.
//!
//! A huge_memory event: apply the load-time filter, bump the per-CPU counter for
//! (kind, result), then (unless counting only) reserve a ring-buffer record, or count a drop
//! when the ring is full. MADV_COLLAPSE calls: the syscall entry remembers the call per
//! thread, so events inside it carry the call's id, and the exit counts the errno and sends a
//! call record. Field offsets come from the running kernel's tracefs `format` files through
//! the read-only `CONFIG`, so the verifier sees them as constants.
#![no_std]
#![no_main]

use aya_ebpf::{
    EbpfContext,
    bindings::{BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP},
    helpers::{
        bpf_get_current_cgroup_id, bpf_get_current_comm, bpf_get_current_pid_tgid,
        bpf_ktime_get_ns, generated,
    },
    macros::{map, tracepoint},
    maps::{Array, PerCpuArray, RingBuf},
    programs::TracePointContext,
};
use core::ptr::write_volatile;

use aya_log_ebpf::debug;
use collapse_trace_common::{
    CALL_PROCESS_MADVISE, COMM_LEN, COMPILED, CallInfo, Config, CpuState, DEFAULT_RING_BYTES,
    EventRecord, FIELD_ABSENT, FILENAME_LEN, Field, MADV_COLLAPSE, MAX_CALLS, NUM_TRACEPOINTS,
    Origin, Probe, RESULT_OVERFLOW_SLOT, RESULT_SLOTS, STALE_CALL_NS, Tracepoint,
};

/// Reads one config value. Volatile so that LLVM cannot fold the compiled-in default: the
/// value is whatever userspace wrote before load.
macro_rules! conf {
    ($($field:tt)+) => {
        unsafe { core::ptr::read_volatile(&raw const CONFIG.$($field)+) }
    };
}

/// Set by userspace before load (`.rodata`: frozen, so the verifier knows every value).
#[unsafe(no_mangle)]
static CONFIG: Config = Config::DEFAULT;

#[map]
static COUNTS: PerCpuArray<u64> =
    PerCpuArray::with_max_entries((NUM_TRACEPOINTS * RESULT_SLOTS) as u32, 0);

#[map]
static DROPS: PerCpuArray<u64> = PerCpuArray::with_max_entries(NUM_TRACEPOINTS as u32, 0);

#[map]
static UNTRACKED_CALLS: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(DEFAULT_RING_BYTES, 0);

#[map]
static CALLS: Array<CallInfo> = Array::with_max_entries(MAX_CALLS, 0);

#[map]
static CPU_STATE: PerCpuArray<CpuState> = PerCpuArray::with_max_entries(1, 0);

/// The records' clock, CLOCK_MONOTONIC ns. Reading it costs ~90 ns in a KVM guest, more than
/// the rest of a record, so unless `precise_time` is set it is read once per jiffy per CPU and
/// reused until the next tick (`bpf_jiffies64` is a plain load).
#[inline(always)]
fn now_ns() -> u64 {
    if conf!(precise_time) != 0 {
        // SAFETY: no preconditions.
        return unsafe { bpf_ktime_get_ns() };
    }
    // SAFETY: no preconditions.
    let jiffies = unsafe { generated::bpf_jiffies64() };
    let Some(c) = CPU_STATE.get_ptr_mut(0) else {
        // SAFETY: no preconditions.
        return unsafe { bpf_ktime_get_ns() };
    };
    // SAFETY: this CPU's slot; tracepoint programs run with preemption disabled.
    unsafe {
        if (*c).jiffies != jiffies {
            (*c).jiffies = jiffies;
            (*c).ns = bpf_ktime_get_ns();
        }
        (*c).ns
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
    collapse_event::<{ Probe::ScanFile as usize }>(&ctx);
    0
}

#[tracepoint]
pub fn collapse_file(ctx: TracePointContext) -> u32 {
    collapse_event::<{ Probe::CollapseFile as usize }>(&ctx);
    0
}

#[tracepoint]
pub fn scan_pmd(ctx: TracePointContext) -> u32 {
    collapse_event::<{ Probe::ScanPmd as usize }>(&ctx);
    0
}

#[tracepoint]
pub fn collapse_huge_page(ctx: TracePointContext) -> u32 {
    collapse_event::<{ Probe::CollapseHugePage as usize }>(&ctx);
    0
}

#[tracepoint]
pub fn enter_madvise(ctx: TracePointContext) -> u32 {
    call_enter::<{ Probe::EnterMadvise as usize }>(&ctx, 0);
    0
}

#[tracepoint]
pub fn enter_process_madvise(ctx: TracePointContext) -> u32 {
    call_enter::<{ Probe::EnterProcessMadvise as usize }>(&ctx, CALL_PROCESS_MADVISE);
    0
}

#[tracepoint]
pub fn exit_madvise(ctx: TracePointContext) -> u32 {
    call_exit::<{ Probe::ExitMadvise as usize }>(&ctx);
    0
}

#[tracepoint]
pub fn exit_process_madvise(ctx: TracePointContext) -> u32 {
    call_exit::<{ Probe::ExitProcessMadvise as usize }>(&ctx);
    0
}

/// Reads field `$field` of type `$ty` from probe `$p`'s record. When the running kernel's
/// layout equals the compiled one, a direct context load at a constant offset (the cheapest
/// access; the verifier only allows constant offsets into the context); otherwise a
/// `bpf_probe_read_kernel` at the offset read from tracefs; 0 when the kernel lacks the field.
macro_rules! field {
    ($ctx:expr, $p:expr, $field:expr, $ty:ty) => {{
        let compiled_off: u16 = COMPILED[$p].offsets[$field as usize];
        if conf!(layouts[$p].compiled) != 0 {
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

/// The load-time filter. Returns the current pid_tgid when the task passes. The pid is only
/// read when a filter or the caller (`need_pid`, event records) needs it, and the comm only
/// for a comm filter (records copy it straight into the ring), so that counting without
/// filters costs no helper call.
#[inline(always)]
fn admit(need_pid: bool) -> Option<u64> {
    let pid_tgid = if need_pid || conf!(filter_tgid) != 0 || conf!(events) != 0 {
        bpf_get_current_pid_tgid()
    } else {
        0
    };
    let tgid = (pid_tgid >> 32) as u32;
    if conf!(filter_tgid) != 0 && conf!(filter_tgid) != tgid {
        return None;
    }
    if conf!(filter_comm_on) != 0 {
        let comm = bpf_get_current_comm().unwrap_or([0; COMM_LEN]);
        if comm != conf!(filter_comm) {
            return None;
        }
    }
    Some(pid_tgid)
}

#[inline(always)]
fn count(kind: Tracepoint, result: i32) {
    let slot = if (result as u32) < RESULT_OVERFLOW_SLOT {
        result as u32
    } else {
        RESULT_OVERFLOW_SLOT
    };
    bump(&COUNTS, kind as u32 * RESULT_SLOTS as u32 + slot);
}

#[inline(always)]
fn collapse_event<const P: usize>(ctx: &TracePointContext) {
    let kind = match P {
        0 => Tracepoint::ScanFile,
        1 => Tracepoint::CollapseFile,
        2 => Tracepoint::ScanPmd,
        _ => Tracepoint::CollapseHugePage,
    };
    let Some(pid_tgid) = admit(false) else {
        return;
    };
    let result: i32 = field!(ctx, P, Field::Result, i32);
    count(kind, result);
    if conf!(events) == 0 {
        return;
    }
    let Some(mut entry) = EVENTS.reserve::<EventRecord>(0) else {
        bump(&DROPS, kind as u32);
        debug!(
            ctx,
            "ring buffer full: dropped kind={} result={}", kind as u8, result
        );
        return;
    };
    let tid = pid_tgid as u32;
    // SAFETY: a map value of ours; a racing writer can only make us miss the join.
    let call_ns = call_slot(tid).map_or(0, |c| unsafe {
        if (*c).tid == tid as u64 {
            (*c).enter_ns
        } else {
            0
        }
    });
    let pfn = field!(ctx, P, Field::Pfn, u64);
    let index = field!(ctx, P, Field::Index, u64);
    let addr = field!(ctx, P, Field::Addr, u64);
    let present = field!(ctx, P, Field::Present, i32);
    let swap = field!(ctx, P, Field::Swap, i32);
    let nr = field!(ctx, P, Field::Nr, i32);
    let referenced = field!(ctx, P, Field::Referenced, i32);
    let none_or_zero = field!(ctx, P, Field::NoneOrZero, i32);
    let unmapped = field!(ctx, P, Field::Unmapped, i32);
    let isolated = field!(ctx, P, Field::Isolated, i32);
    let is_shmem = field!(ctx, P, Field::IsShmem, u8);
    let loc = field!(ctx, P, Field::Filename, u32);
    // Inside a tracked MADV_COLLAPSE call the task is its caller: no need to read its flags.
    let origin = if call_ns != 0 {
        Origin::Madvise as u8
    } else {
        origin() as u8
    };
    let rec = entry.as_mut_ptr();
    // SAFETY: `rec` points at a reserved, writable record of the right size; every field is
    // written before submit.
    unsafe {
        (*rec).ts_ns = now_ns();
        (*rec).cgroup_id = bpf_get_current_cgroup_id();
        (*rec).pfn = pfn;
        (*rec).index = index;
        (*rec).addr = addr;
        (*rec).call_ns = call_ns;
        (*rec).pid = tid;
        (*rec).tgid = (pid_tgid >> 32) as u32;
        (*rec).result = result;
        (*rec).present = present;
        (*rec).swap = swap;
        (*rec).nr = nr;
        (*rec).referenced = referenced;
        (*rec).none_or_zero = none_or_zero;
        (*rec).unmapped = unmapped;
        (*rec).isolated = isolated;
        (*rec).tracepoint = kind as u8;
        (*rec).origin = origin;
        (*rec).is_shmem = is_shmem;
        (*rec).call_flags = 0;
        // Straight into the record: no stack copy.
        write_comm(&raw mut (*rec).comm);
        (*rec).filename_len = 0;
        (*rec).filename[0] = 0;
        // __data_loc: low 16 bits = offset from the record start, high 16 = length (with the
        // NUL). A plain copy of known length is cheaper than a string copy.
        let len = (loc >> 16).min(FILENAME_LEN as u32);
        if len > 0 {
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
    entry.submit(submit_flags());
}

/// Remembers a MADV_COLLAPSE call on this thread, so the events inside it and its errno can
/// be joined.
#[inline(always)]
fn call_enter<const P: usize>(ctx: &TracePointContext, flags: u8) {
    let behavior = field!(ctx, P, Field::Behavior, u64);
    if behavior != MADV_COLLAPSE {
        return;
    }
    let Some(pid_tgid) = admit(true) else {
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
    count(Tracepoint::MadviseCall, errno);
    if conf!(events) == 0 {
        return;
    }
    let Some(mut entry) = EVENTS.reserve::<EventRecord>(0) else {
        bump(&DROPS, Tracepoint::MadviseCall as u32);
        return;
    };
    let rec = entry.as_mut_ptr();
    // SAFETY: as in collapse_event.
    unsafe {
        (*rec).ts_ns = now_ns();
        (*rec).cgroup_id = bpf_get_current_cgroup_id();
        (*rec).index = call.len;
        (*rec).addr = call.start;
        (*rec).call_ns = call.enter_ns;
        (*rec).pid = tid;
        (*rec).tgid = (pid_tgid >> 32) as u32;
        (*rec).result = errno;
        // Volatile: plain zero stores in a row become a call to a memset subprogram.
        write_volatile(&raw mut (*rec).pfn, 0);
        write_volatile(&raw mut (*rec).present, 0);
        write_volatile(&raw mut (*rec).swap, 0);
        write_volatile(&raw mut (*rec).nr, 0);
        write_volatile(&raw mut (*rec).referenced, 0);
        write_volatile(&raw mut (*rec).none_or_zero, 0);
        write_volatile(&raw mut (*rec).unmapped, 0);
        write_volatile(&raw mut (*rec).isolated, 0);
        (*rec).tracepoint = Tracepoint::MadviseCall as u8;
        (*rec).origin = Origin::Madvise as u8;
        (*rec).is_shmem = 0;
        (*rec).call_flags = call.flags as u8;
        write_comm(&raw mut (*rec).comm);
        (*rec).filename_len = 0;
        (*rec).filename[0] = 0;
    }
    entry.submit(submit_flags());
}

/// Waking the reader costs microseconds per event in a guest (IRQ work), more than the rest
/// of the program: each CPU wakes it only once it has submitted `wakeup_bytes` since its last
/// wakeup; the reader also drains on a short timer, so records in between are never stranded.
#[inline(always)]
fn submit_flags() -> u64 {
    let wakeup_bytes = conf!(wakeup_bytes);
    if wakeup_bytes == 0 {
        return BPF_RB_FORCE_WAKEUP as u64;
    }
    let Some(c) = CPU_STATE.get_ptr_mut(0) else {
        return BPF_RB_FORCE_WAKEUP as u64;
    };
    // SAFETY: this CPU's slot; tracepoint programs run with preemption disabled.
    unsafe {
        let unwoken = (*c).unwoken_bytes + RECORD_BYTES;
        if unwoken >= wakeup_bytes {
            (*c).unwoken_bytes = 0;
            BPF_RB_FORCE_WAKEUP as u64
        } else {
            (*c).unwoken_bytes = unwoken;
            BPF_RB_NO_WAKEUP as u64
        }
    }
}

/// Bytes one record takes in the ring (with its 8-byte header).
const RECORD_BYTES: u64 = (core::mem::size_of::<EventRecord>() + 8) as u64;

/// The khugepaged kernel thread, or a user task (a MADV_COLLAPSE caller): told apart by
/// `PF_KTHREAD`, not by comm, which a user process can copy.
#[inline(always)]
fn origin() -> Origin {
    let off = conf!(task_flags_offset);
    if off == u32::MAX {
        return Origin::Unknown;
    }
    // SAFETY: the current task, as a BTF-typed pointer: the verifier checks the load against
    // task_struct's BTF (the offset is a frozen constant from that BTF), and a plain load
    // costs a fraction of the probe helper.
    let flags = unsafe {
        let task = generated::bpf_get_current_task_btf() as *const u8;
        *task.add(off as usize).cast::<u32>()
    };
    if flags & PF_KTHREAD != 0 {
        Origin::Khugepaged
    } else {
        Origin::Madvise
    }
}

/// Copies the current task's comm into `dst`: two plain loads from the BTF-typed task when
/// BTF gave the offset (the comm helper costs ~20 ns more per record), else the helper.
#[inline(always)]
unsafe fn write_comm(dst: *mut [u8; COMM_LEN]) {
    let off = conf!(task_comm_offset);
    // SAFETY: as in origin(); `dst` is a writable record field of COMM_LEN bytes.
    unsafe {
        if off == u32::MAX {
            if generated::bpf_get_current_comm(dst.cast(), COMM_LEN as u32) != 0 {
                (*dst)[0] = 0;
            }
            return;
        }
        let src = (generated::bpf_get_current_task_btf() as *const u8).add(off as usize);
        let d = dst.cast::<u64>();
        d.write_unaligned(*src.cast::<u64>());
        d.add(1).write_unaligned(*src.add(8).cast::<u64>());
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
