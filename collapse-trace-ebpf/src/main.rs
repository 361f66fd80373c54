//! collapse-trace's kernel programs: one small function per tracepoint.
//!
//! Each event: apply the load-time filter, bump the per-CPU counter for (tracepoint, result),
//! then (unless counting only) reserve a ring-buffer record, or count a drop when the ring is
//! full. Field offsets come from the running kernel's tracefs `format` files through the
//! read-only `CONFIG`, so the verifier sees them as constants.
#![no_std]
#![no_main]

use aya_ebpf::{
    EbpfContext,
    bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP},
    helpers::{
        bpf_get_current_cgroup_id, bpf_get_current_comm, bpf_get_current_pid_tgid,
        bpf_get_current_task, bpf_ktime_get_ns, bpf_probe_read_kernel,
        bpf_probe_read_kernel_str_bytes,
    },
    macros::{map, tracepoint},
    maps::{PerCpuArray, RingBuf},
    programs::TracePointContext,
};
use aya_log_ebpf::debug;
use collapse_trace_common::{
    COLLAPSE_FILE_LAYOUT, COMM_LEN, Config, DEFAULT_RING_BYTES, EventRecord, FIELD_ABSENT,
    NUM_TRACEPOINTS, Origin, RESULT_OVERFLOW_SLOT, RESULT_SLOTS, SCAN_FILE_LAYOUT, TpLayout,
    Tracepoint,
};

/// Set by userspace before load (`.rodata`: frozen, so the verifier knows every value).
#[unsafe(no_mangle)]
static CONFIG: Config = Config::DEFAULT;

#[map]
static COUNTS: PerCpuArray<u64> =
    PerCpuArray::with_max_entries((NUM_TRACEPOINTS * RESULT_SLOTS) as u32, 0);

#[map]
static DROPS: PerCpuArray<u64> = PerCpuArray::with_max_entries(NUM_TRACEPOINTS as u32, 0);

#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(DEFAULT_RING_BYTES, 0);

/// `PF_KTHREAD` from include/linux/sched.h: the task is a kernel thread (khugepaged).
const PF_KTHREAD: u32 = 0x0020_0000;

#[tracepoint]
pub fn scan_file(ctx: TracePointContext) -> u32 {
    handle(&ctx, Tracepoint::ScanFile, &SCAN_FILE_LAYOUT);
    0
}

#[tracepoint]
pub fn collapse_file(ctx: TracePointContext) -> u32 {
    handle(&ctx, Tracepoint::CollapseFile, &COLLAPSE_FILE_LAYOUT);
    0
}

/// Reads one config value. Volatile so that LLVM cannot fold the compiled-in default: the
/// value is whatever userspace wrote before load.
macro_rules! conf {
    ($($field:tt)+) => {
        unsafe { core::ptr::read_volatile(&raw const CONFIG.$($field)+) }
    };
}

/// Reads field `$field` of type `$ty` from the tracepoint record. When the running kernel's
/// layout equals the compiled one, a direct context load at a constant offset (the cheapest
/// access; the verifier only allows constant offsets into the context); otherwise a
/// `bpf_probe_read_kernel` at the offset read from tracefs; 0 when the kernel lacks the field.
macro_rules! field {
    ($ctx:expr, $tp:expr, $compiled:expr, $field:ident, $ty:ty) => {{
        let i = $tp as usize;
        if conf!(layouts[i].compiled) != 0 {
            if $compiled.$field == FIELD_ABSENT {
                0 as $ty
            } else {
                unsafe {
                    *($ctx.as_ptr() as *const u8)
                        .add($compiled.$field as usize)
                        .cast::<$ty>()
                }
            }
        } else {
            let off = conf!(layouts[i].$field);
            if off == FIELD_ABSENT {
                0 as $ty
            } else {
                unsafe { $ctx.read_at::<$ty>(off as usize) }.unwrap_or(0 as $ty)
            }
        }
    }};
}

#[inline(always)]
fn handle(ctx: &TracePointContext, tp: Tracepoint, compiled: &TpLayout) {
    let pid_tgid = bpf_get_current_pid_tgid();
    let tgid = (pid_tgid >> 32) as u32;
    if conf!(filter_tgid) != 0 && conf!(filter_tgid) != tgid {
        return;
    }
    let comm = if conf!(filter_comm_on) != 0 || conf!(events) != 0 {
        bpf_get_current_comm().unwrap_or([0; COMM_LEN])
    } else {
        [0; COMM_LEN]
    };
    if conf!(filter_comm_on) != 0 && comm != conf!(filter_comm) {
        return;
    }

    let result: i32 = field!(ctx, tp, compiled, result, i32);
    let slot = if (result as u32) < RESULT_OVERFLOW_SLOT {
        result as u32
    } else {
        RESULT_OVERFLOW_SLOT
    };
    bump(&COUNTS, tp as u32 * RESULT_SLOTS as u32 + slot);

    if conf!(events) == 0 {
        return;
    }
    let Some(mut entry) = EVENTS.reserve::<EventRecord>(0) else {
        bump(&DROPS, tp as u32);
        debug!(
            ctx,
            "ring buffer full: dropped tp={} result={}", tp as u8, result
        );
        return;
    };
    let pfn = field!(ctx, tp, compiled, pfn, u64);
    let index = field!(ctx, tp, compiled, index, u64);
    let addr = field!(ctx, tp, compiled, addr, u64);
    let present = field!(ctx, tp, compiled, present, i32);
    let swap = field!(ctx, tp, compiled, swap, i32);
    let nr = field!(ctx, tp, compiled, nr, i32);
    let is_shmem = field!(ctx, tp, compiled, is_shmem, u8);
    let loc = field!(ctx, tp, compiled, filename, u32);
    let origin = origin() as u8;
    let rec = entry.as_mut_ptr();
    // SAFETY: `rec` points at a reserved, writable record of the right size; every field is
    // written before submit.
    unsafe {
        (*rec).ts_ns = bpf_ktime_get_ns();
        (*rec).cgroup_id = bpf_get_current_cgroup_id();
        (*rec).pfn = pfn;
        (*rec).index = index;
        (*rec).addr = addr;
        (*rec).pid = pid_tgid as u32;
        (*rec).tgid = tgid;
        (*rec).result = result;
        (*rec).present = present;
        (*rec).swap = swap;
        (*rec).nr = nr;
        (*rec).tracepoint = tp as u8;
        (*rec).origin = origin;
        (*rec).is_shmem = is_shmem;
        (*rec)._pad = 0;
        (*rec).comm = comm;
        (*rec).filename_len = 0;
        (*rec).filename[0] = 0;
        if loc != 0 {
            // __data_loc: low 16 bits = offset from the record start, high 16 = length.
            let src = (ctx.as_ptr() as *const u8).add((loc & 0xffff) as usize);
            if let Ok(name) = bpf_probe_read_kernel_str_bytes(src, &mut (*rec).filename) {
                (*rec).filename_len = name.len() as u32;
            }
        }
    }
    // Waking the reader costs microseconds per event in a guest (IRQ work), more than the rest
    // of the program: wake it only once the ring is filling up; the reader also drains on a
    // short timer, so records below the threshold are never stranded.
    let wakeup_bytes = conf!(wakeup_bytes);
    let flags = if wakeup_bytes == 0 || EVENTS.query(BPF_RB_AVAIL_DATA as u64) >= wakeup_bytes {
        BPF_RB_FORCE_WAKEUP
    } else {
        BPF_RB_NO_WAKEUP
    };
    entry.submit(flags as u64);
}

/// The khugepaged kernel thread, or a user task (a MADV_COLLAPSE caller): told apart by
/// `PF_KTHREAD`, not by comm, which a user process can copy.
#[inline(always)]
fn origin() -> Origin {
    let off = conf!(task_flags_offset);
    if off == u32::MAX {
        return Origin::Unknown;
    }
    // SAFETY: reading the current task's flags word through the probe helper, which tolerates
    // bad addresses; the offset comes from the running kernel's BTF.
    let flags = unsafe {
        let task = bpf_get_current_task() as *const u8;
        bpf_probe_read_kernel(task.add(off as usize).cast::<u32>())
    };
    match flags {
        Ok(f) if f & PF_KTHREAD != 0 => Origin::Khugepaged,
        Ok(_) => Origin::Madvise,
        Err(_) => Origin::Unknown,
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
