//! The BTF-typed raw tracepoint programs (`tp_btf`): they read the tracepoints' own
//! arguments instead of the record the kernel builds for a classic tracepoint program, so
//! the kernel builds no record, and the file is the real `struct file *`: its dentry's own
//! name (the record copies the inline buffer, stale for names over ~40 bytes), its inode,
//! device and the directories above it. One program per argument list in
//! [`BTF_VARIANTS`]; userspace loads the one whose names the running kernel's BTF shows.
//!
//! Argument positions are constants of each program (the verifier allows only constant
//! offsets into the context); struct member offsets come from BTF through `CONFIG`
//! (constants to the verifier, which checks every load against the kernel's BTF).

use aya_ebpf::{helpers::generated, macros::btf_tracepoint, programs::BtfTracePointContext};
use core::ptr::write_volatile;

use collapse_trace_common::{
    ARG_ABSENT, BTF_VARIANTS, DIR_LEN, DIR_LEVELS, DIR_NAME_LEN, EventRecord, FILE_DIR_CUT,
    FILE_REAL_NAME, FILENAME_LEN, Field, Probe,
};

use crate::{
    Hit, Owner, Task, admit_event, count, counted_by_task, kind_of, needs_task, publish,
    window_open, write_event,
};

#[btf_tracepoint(function = "mm_khugepaged_scan_file")]
pub fn scan_file_btf(ctx: BtfTracePointContext) -> i32 {
    if window_open() {
        event::<0>(&ctx);
    }
    0
}

#[btf_tracepoint(function = "mm_khugepaged_collapse_file")]
pub fn collapse_file_btf(ctx: BtfTracePointContext) -> i32 {
    if window_open() {
        event::<1>(&ctx);
    }
    0
}

#[btf_tracepoint(function = "mm_khugepaged_scan_pmd")]
pub fn scan_pmd_btf(ctx: BtfTracePointContext) -> i32 {
    if window_open() {
        event::<2>(&ctx);
    }
    0
}

#[btf_tracepoint(function = "mm_khugepaged_scan_pmd")]
pub fn scan_pmd_writable_btf(ctx: BtfTracePointContext) -> i32 {
    if window_open() {
        event::<3>(&ctx);
    }
    0
}

#[btf_tracepoint(function = "mm_collapse_huge_page")]
pub fn collapse_huge_page_btf(ctx: BtfTracePointContext) -> i32 {
    if window_open() {
        event::<4>(&ctx);
    }
    0
}

/// Argument `f` of variant `V`'s list as a `T` (a constant context offset), or zero when the
/// list has no such argument.
macro_rules! arg {
    ($ctx:expr, $v:expr, $f:expr, $ty:ty) => {{
        let pos = BTF_VARIANTS[$v].args[$f as usize];
        if pos == ARG_ABSENT {
            0 as $ty
        } else {
            // The context is the arguments, 8 bytes each.
            $ctx.arg::<$ty>(pos as usize)
        }
    }};
}

/// Pointer argument `f` of variant `V`'s list, or NULL when the list has none.
macro_rules! ptr_arg {
    ($ctx:expr, $v:expr, $f:expr) => {{
        let pos = BTF_VARIANTS[$v].args[$f as usize];
        if pos == ARG_ABSENT {
            core::ptr::null::<u8>()
        } else {
            $ctx.arg::<*const u8>(pos as usize)
        }
    }};
}

/// A plain load of a `T` at `off` bytes into the kernel object at `p`: the verifier checks
/// it against the object's BTF type (a fault reads as zero).
///
/// # Safety
///
/// `p` is a BTF-typed pointer the verifier knows, and `off` a member offset from BTF.
#[inline(always)]
unsafe fn at<T: Copy>(p: *const u8, off: u32) -> T {
    // SAFETY: as the caller promises.
    unsafe { *p.add(off as usize).cast::<T>() }
}

/// The pfn of the page argument at position `pos` where the kernel passes a pfn (6.12's
/// file tracepoints); 0 where it passes a `struct page *` or `struct folio *` (turning one
/// into a pfn needs `vmemmap_base`, which /proc/kallsyms does not list on most kernels).
#[inline(always)]
fn pfn_of(ctx: &BtfTracePointContext, probe: Probe, pos: u8) -> u64 {
    if pos == ARG_ABSENT || conf!(file.page_is_pointer[probe as usize]) != 0 {
        return 0;
    }
    ctx.arg::<u64>(pos as usize)
}

/// One huge_memory event from variant `V`'s arguments.
#[inline(always)]
fn event<const V: usize>(ctx: &BtfTracePointContext) {
    let variant = &BTF_VARIANTS[V];
    let kind = kind_of(variant.probe as usize);
    let result: i32 = arg!(ctx, V, Field::Result, i32);
    if !needs_task() {
        count(kind, result);
        return;
    }
    let task = Task::current();
    if counted_by_task(task, kind, result) {
        return;
    }
    let mm: *const u8 = ptr_arg!(ctx, V, Field::Mm);
    let owner = Owner::of_mm_btf(mm);
    let Some((pid_tgid, cpu, rec)) = admit_event(ctx, kind, task, &owner, result) else {
        return;
    };
    let hit = Hit {
        pfn: pfn_of(ctx, variant.probe, variant.args[Field::Pfn as usize]),
        index: arg!(ctx, V, Field::Index, u64),
        addr: arg!(ctx, V, Field::Addr, u64),
        present: arg!(ctx, V, Field::Present, i32),
        swap: arg!(ctx, V, Field::Swap, i32),
        nr: arg!(ctx, V, Field::Nr, i32),
        referenced: arg!(ctx, V, Field::Referenced, i32),
        none_or_zero: arg!(ctx, V, Field::NoneOrZero, i32),
        unmapped: arg!(ctx, V, Field::Unmapped, i32),
        isolated: arg!(ctx, V, Field::Isolated, i32),
        // A `bool`: only the low byte of the slot counts.
        is_shmem: arg!(ctx, V, Field::IsShmem, u64) as u8,
    };
    let file: *const u8 = ptr_arg!(ctx, V, Field::Filename);
    // SAFETY: `rec` is the slot admit_event reserved; every field is written before publish.
    unsafe {
        write_event(rec, kind, task, &owner, pid_tgid, result, &hit);
        if kind.carries(Field::Filename) {
            store_file(rec, file);
        }
    }
    publish(cpu);
}

/// The file's real name, inode, device and the directories above it, into `rec`.
///
/// # Safety
///
/// `rec` is a reserved, unpublished slot; `file` the tracepoint's `struct file *` argument.
#[inline(always)]
unsafe fn store_file(rec: *mut EventRecord, file: *const u8) {
    // SAFETY: the caller's slot; `file` and every pointer loaded from it are BTF-typed, and
    // each offset is a member offset from BTF.
    unsafe {
        put!(rec.filename_len = 0);
        put!(rec.inode = 0);
        put!(rec.dev = 0);
        put!(rec.dir_len = 0);
        put!(rec.file_flags = 0);
        if file.is_null() {
            return;
        }
        let dentry: *const u8 = at(file, conf!(file.file_dentry));
        if dentry.is_null() {
            return;
        }
        // A copy of the length d_name gives (a name is at most 255 bytes, NAME_MAX): a
        // string copy reads and tests byte by byte, which cost ~80 ns a record here against
        // a few for this. A rename racing the event may pair a name with another's length;
        // the copy stays inside the buffer and the reader stops at a NUL.
        let name: u64 = at(dentry, conf!(file.dentry_name));
        let len: u32 = at::<u32>(dentry, conf!(file.dentry_name_len)) & (FILENAME_LEN as u32 - 1);
        if generated::bpf_probe_read_kernel(
            (*rec).filename.as_mut_ptr().cast(),
            len,
            name as *const _,
        ) == 0
        {
            put!(rec.filename_len = len);
        }
        let inode: *const u8 = at(dentry, conf!(file.dentry_inode));
        if !inode.is_null() {
            put!(rec.inode = at::<u64>(inode, conf!(file.inode_ino)));
            let sb: *const u8 = at(inode, conf!(file.inode_sb));
            if !sb.is_null() {
                put!(rec.dev = at::<u32>(sb, conf!(file.sb_dev)));
            }
        }
        let mnt: *const u8 = at(file, conf!(file.file_mnt));
        let root: u64 = if mnt.is_null() {
            0
        } else {
            at::<u64>(mnt, conf!(file.mnt_root))
        };
        let (used, complete) = walk_up(rec, dentry, root);
        put!(rec.dir_len = used);
        put!(
            rec.file_flags = if complete {
                FILE_REAL_NAME
            } else {
                FILE_REAL_NAME | FILE_DIR_CUT
            }
        );
    }
}

/// Copies the names of the directories above `dentry`, nearest first, each followed by
/// `/`, into `rec.dir`, stopping at the mount's root `root` (not named) or a dentry that is
/// its own parent. Returns the bytes used and whether the walk got to the root with every
/// name whole.
///
/// # Safety
///
/// As for [`store_file`]; `dentry` is BTF-typed.
#[inline(always)]
unsafe fn walk_up(rec: *mut EventRecord, dentry: *const u8, root: u64) -> (u32, bool) {
    let parent_off = conf!(file.dentry_parent);
    let name_off = conf!(file.dentry_name);
    let len_off = conf!(file.dentry_name_len);
    let mut d = dentry;
    let mut pos: u32 = 0;
    let mut whole = true;
    // SAFETY: as the caller promises; every store is inside `dir` (a name starts in its
    // first DIR_NAME_LEN bytes and is at most DIR_NAME_LEN long).
    unsafe {
        for _ in 0..DIR_LEVELS {
            let p: *const u8 = at(d, parent_off);
            if p.is_null() || p == d || d as u64 == root || p as u64 == root {
                return (pos, whole);
            }
            if pos as usize >= DIR_LEN - DIR_NAME_LEN {
                return (pos, false);
            }
            let name: u64 = at(p, name_off);
            let len: u32 = at(p, len_off);
            // Through a volatile load, so that LLVM keeps the mask (it knows pos < 64 from
            // the test above and would drop it; the verifier does not know and refuses).
            let start = (core::ptr::read_volatile(&pos) as usize) & (DIR_NAME_LEN - 1);
            // A known-length copy, as for the file's own name; a longer name is cut to
            // leave room for the separator.
            let n = if len >= DIR_NAME_LEN as u32 {
                whole = false;
                DIR_NAME_LEN as u32 - 1
            } else {
                len & (DIR_NAME_LEN as u32 - 1)
            };
            if n == 0
                || generated::bpf_probe_read_kernel(
                    (*rec).dir.as_mut_ptr().add(start).cast(),
                    n,
                    name as *const _,
                ) != 0
            {
                return (pos, false);
            }
            (*rec).dir[(start + n as usize) & (DIR_LEN - 1)] = b'/';
            pos = (start + n as usize + 1) as u32;
            d = p;
        }
        let p: *const u8 = at(d, parent_off);
        let complete = p.is_null() || p == d || d as u64 == root || p as u64 == root;
        (pos, whole && complete)
    }
}
