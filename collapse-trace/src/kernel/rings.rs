//! The reader side of the per-CPU event rings (see [`RingHead`] for why they replace the BPF
//! ring buffer).
//!
//! Each CPU's programs write records into that CPU's slots of the mmap'd `RING` array and
//! publish them by bumping `HEADS[cpu].head`; the reader hands records `tail..head` on, in
//! time order across CPUs, and then stores `TAILS[cpu].tail`, which gives the slots back. A
//! CPU whose ring is full drops the record and counts it in `DROPS`, so delivered + dropped =
//! counted, exactly.

use std::{
    cmp::Reverse,
    collections::{BinaryHeap, binary_heap::PeekMut},
    os::fd::{AsFd as _, AsRawFd as _},
    ptr::NonNull,
    sync::atomic::{AtomicU64, Ordering},
};

use aya::maps::{MapData, RingBuf};
use collapse_trace_common::{EventRecord, RecordKind, RingHead, RingTail};

use super::KernelError;

/// A shared mapping of one BPF array map (`BPF_F_MMAPABLE`).
struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

impl Mapping {
    fn new(map: &MapData, len: usize, writable: bool) -> Result<Mapping, KernelError> {
        let prot = if writable {
            libc::PROT_READ | libc::PROT_WRITE
        } else {
            libc::PROT_READ
        };
        let fd = map.fd().as_fd().as_raw_fd();
        // SAFETY: a fresh shared mapping of the map's value area; the kernel checks `len`
        // against the map's size and fails rather than map past it.
        let ptr = unsafe { libc::mmap(std::ptr::null_mut(), len, prot, libc::MAP_SHARED, fd, 0) };
        if ptr == libc::MAP_FAILED {
            return Err(KernelError::Io(
                "mapping an event ring into memory",
                std::io::Error::last_os_error(),
            ));
        }
        let ptr = NonNull::new(ptr.cast()).ok_or(KernelError::Io(
            "mapping an event ring into memory",
            std::io::Error::other("mmap returned NULL"),
        ))?;
        Ok(Mapping { ptr, len })
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: our own mapping, unmapped once.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// The maps behind the rings, as taken from the loaded object.
pub struct RingMaps {
    /// `RING`: `cpus * slots` records.
    pub ring: MapData,
    /// `HEADS`: one [`RingHead`] per CPU.
    pub heads: MapData,
    /// `TAILS`: one [`RingTail`] per CPU.
    pub tails: MapData,
    /// `WAKEUPS`: the doorbell.
    pub wakeups: RingBuf<MapData>,
    /// CPUs the arrays are sized for (possible CPUs).
    pub cpus: u32,
    /// Records per CPU.
    pub slots: u32,
    /// The reader paces its drains by the event rate (false: a stalled reader, for tests).
    pub paced: bool,
}

/// The mapped rings. Keeps the maps open for as long as the mappings live.
pub struct Rings {
    ring: Mapping,
    heads: Mapping,
    tails: Mapping,
    /// Records the reader has finished with, per CPU (its own copy of `TAILS`).
    tail: Vec<u64>,
    slots: u64,
    /// Pace drains by the event rate.
    pub paced: bool,
    /// The most records one CPU published between the last two drains.
    pub last_new_max: u64,
    /// Records read but held back at the last drain (newer than its watermark).
    pub unread: u64,
    /// Scratch: each CPU's head during a drain.
    heads_seen: Vec<u64>,
    /// Scratch: the merge's heap.
    heap: MergeHeap,
    /// Each CPU's head at the previous drain.
    prev_head: Vec<u64>,
    /// The doorbell, drained on every wakeup.
    pub wakeups: RingBuf<MapData>,
    _maps: [MapData; 3],
}

// SAFETY: the mappings are owned by this value; every access goes through `&mut self` or
// atomics, and the kernel side only writes slots the reader has handed back.
unsafe impl Send for Rings {}

impl Rings {
    /// Maps the rings of a loaded object.
    pub fn new(maps: RingMaps) -> Result<Rings, KernelError> {
        let cpus = maps.cpus as usize;
        let page = page_size();
        let bytes = |n: usize| n.div_ceil(page) * page;
        let ring = Mapping::new(
            &maps.ring,
            bytes(cpus * maps.slots as usize * size_of::<EventRecord>()),
            false,
        )?;
        let heads = Mapping::new(&maps.heads, bytes(cpus * size_of::<RingHead>()), false)?;
        let tails = Mapping::new(&maps.tails, bytes(cpus * size_of::<RingTail>()), true)?;
        Ok(Rings {
            ring,
            heads,
            tails,
            tail: vec![0; cpus],
            slots: u64::from(maps.slots),
            paced: maps.paced,
            last_new_max: 0,
            prev_head: vec![0; cpus],
            unread: 0,
            heads_seen: Vec::with_capacity(cpus),
            heap: MergeHeap::default(),
            wakeups: maps.wakeups,
            _maps: [maps.ring, maps.heads, maps.tails],
        })
    }

    /// The first word of CPU `cpu`'s line in `m` (`RingHead::head` or `RingTail::tail`).
    fn word(m: &Mapping, cpu: usize) -> &AtomicU64 {
        const _: () = assert!(size_of::<RingHead>() == 64 && size_of::<RingTail>() == 64);
        // SAFETY: `cpu` < cpus, so the line is inside the page-aligned mapping, which lives as
        // long as the borrow; the kernel writes the word with single 8-byte stores.
        unsafe { &*m.ptr.as_ptr().add(cpu * 64).cast::<AtomicU64>() }
    }

    fn head(&self, cpu: usize) -> &AtomicU64 {
        Self::word(&self.heads, cpu)
    }

    fn tail_slot(&self, cpu: usize) -> &AtomicU64 {
        Self::word(&self.tails, cpu)
    }

    /// Hands on, in time order across CPUs, every record published so far whose time is at
    /// most `watermark`, and gives their slots back to the kernel; later records stay in
    /// their slots for the next drain. Returns how many records were handed on.
    ///
    /// Each CPU's records are in time order already (the clock only moves forward), so this
    /// is a merge of the CPUs' runs; at equal times a MADV_COLLAPSE call record goes after
    /// events, so that it follows the events of its call. When a CPU's ring is more than half
    /// full the watermark is ignored: order is then best effort, and nothing is dropped that
    /// the ring could hold. A head more than a ring's worth ahead is impossible (the kernel
    /// never overruns the reader): its records are counted in `corrupt` and skipped.
    pub fn drain(&mut self, watermark: u64, mut each: impl FnMut(&[u8]), corrupt: &mut u64) -> u64 {
        let cpus = self.tail.len();
        let mut head = std::mem::take(&mut self.heads_seen);
        head.clear();
        let mut watermark = watermark;
        self.unread = 0;
        for cpu in 0..cpus {
            // Acquire: the record stores the kernel made before publishing are visible.
            let h = self.head(cpu).load(Ordering::Acquire);
            let pending = h.wrapping_sub(self.tail[cpu]);
            if pending > self.slots {
                *corrupt += pending;
                self.tail[cpu] = h;
                self.tail_slot(cpu).store(h, Ordering::Release);
            } else if pending > self.slots / 2 {
                watermark = u64::MAX;
            }
            head.push(h);
        }
        let mut cursor = self.tail.clone();
        let mut heap = std::mem::take(&mut self.heap);
        let n = {
            let this = &*self;
            merge(
                &head,
                &mut cursor,
                watermark,
                |cpu, i| this.record(cpu, i),
                &mut each,
                &mut heap,
            )
        };
        self.heap = heap;
        self.last_new_max = 0;
        for cpu in 0..cpus {
            self.last_new_max = self
                .last_new_max
                .max(head[cpu].wrapping_sub(self.prev_head[cpu]));
            self.prev_head[cpu] = head[cpu];
            self.unread += head[cpu] - cursor[cpu];
            if cursor[cpu] != self.tail[cpu] {
                self.tail[cpu] = cursor[cpu];
                // Release: our reads of the slots are done before the kernel may reuse them.
                self.tail_slot(cpu).store(cursor[cpu], Ordering::Release);
            }
        }
        self.heads_seen = head;
        n
    }

    /// The bytes of record `n` of `cpu`.
    fn record(&self, cpu: usize, n: u64) -> &[u8] {
        let slot = cpu as u64 * self.slots + n % self.slots;
        // SAFETY: slot < cpus * slots, inside the mapping; the kernel does not write this
        // slot again until the tail passes it, which happens only after the caller is done.
        unsafe {
            std::slice::from_raw_parts(
                self.ring
                    .ptr
                    .as_ptr()
                    .add(slot as usize * size_of::<EventRecord>()),
                size_of::<EventRecord>(),
            )
        }
    }

    /// Records per CPU ring.
    pub fn slots(&self) -> u64 {
        self.slots
    }

    /// Empties the doorbell (its records carry nothing the reader needs).
    pub fn clear_wakeups(&mut self) {
        while self.wakeups.next().is_some() {}
    }
}

/// The merge key of a record: its time, then its call's id (`call_ns`, 0 outside a call),
/// then whether it is a MADV_COLLAPSE call record. The tick-cached clock gives a tick's
/// records one time on every CPU, so a thread that moves to another CPU between two calls
/// leaves two runs with equal times. A thread's call ids only grow, so at equal times its
/// records go by call (the previous call's return before the next call's events), and within
/// a call the events before its return.
fn key(r: &[u8]) -> (u64, u64) {
    let at = |off: usize| u64::from_ne_bytes(r[off..off + 8].try_into().expect("8 bytes"));
    let ts = at(std::mem::offset_of!(EventRecord, ts_ns));
    let call_ns = at(std::mem::offset_of!(EventRecord, call_ns));
    let call = r[std::mem::offset_of!(EventRecord, tracepoint)] == RecordKind::MadviseCall as u8;
    // Ids are ns since boot: far below 2^63, so the shift loses nothing.
    (ts, call_ns << 1 | u64::from(call))
}

/// The merge's heap: the next record of each CPU that has one, smallest key first (ties by
/// CPU number, so the order is deterministic).
pub type MergeHeap = BinaryHeap<Reverse<((u64, u64), usize)>>;

/// Merges the CPUs' runs (each in time order already) from `cursor` up to `head`, handing
/// each record of time at most `watermark` to `each` in time order, and advances `cursor`;
/// returns how many. A heap of one entry per CPU: O(log CPUs) per record, so machines with
/// hundreds of CPUs merge as fast as small ones. `record(cpu, n)` gives the bytes of record
/// `n` of `cpu`. Public for the reader's benchmark (`examples/merge_speed.rs`), which merges
/// rings filled in memory.
pub fn merge<'r>(
    head: &[u64],
    cursor: &mut [u64],
    watermark: u64,
    record: impl Fn(usize, u64) -> &'r [u8],
    each: &mut impl FnMut(&[u8]),
    heap: &mut MergeHeap,
) -> u64 {
    heap.clear();
    for cpu in 0..head.len() {
        if cursor[cpu] != head[cpu] {
            heap.push(Reverse((key(record(cpu, cursor[cpu])), cpu)));
        }
    }
    let mut n = 0;
    while let Some(mut top) = heap.peek_mut() {
        let Reverse(((ts, _), cpu)) = *top;
        if ts > watermark {
            break;
        }
        if cursor[cpu] + 1 != head[cpu] {
            prefetch(record(cpu, cursor[cpu] + 1));
        }
        each(record(cpu, cursor[cpu]));
        cursor[cpu] += 1;
        n += 1;
        if cursor[cpu] == head[cpu] {
            PeekMut::pop(top);
        } else {
            // Replaced in place: the sift-down when `top` goes out of scope stops after one
            // comparison while this CPU stays first, as in a burst of one tick's records.
            *top = Reverse((key(record(cpu, cursor[cpu])), cpu));
        }
    }
    n
}

/// Asks the CPU to start loading every cache line of `r` (the record after the one being
/// handed on): a record is ~9 lines that another CPU just wrote, and loading them while the
/// current one is decoded and counted saves most of a miss per line (a third of the reader's
/// time per record in `examples/aggregate_speed.rs`).
#[inline(always)]
fn prefetch(r: &[u8]) {
    #[cfg(target_arch = "x86_64")]
    for off in (0..r.len()).step_by(64) {
        // SAFETY: a prefetch is only a hint: it never faults and changes no memory; the
        // address is inside `r`.
        unsafe {
            std::arch::x86_64::_mm_prefetch(
                r.as_ptr().add(off).cast::<i8>(),
                std::arch::x86_64::_MM_HINT_T0,
            )
        };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = r;
}

fn page_size() -> usize {
    // SAFETY: no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(n).unwrap_or(4096).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(ts_ns: u64, call_ns: u64, kind: RecordKind, pid: u32) -> Vec<u8> {
        // SAFETY: EventRecord is plain old data, and all zeroes is a valid value of it.
        let mut r: EventRecord = unsafe { std::mem::zeroed() };
        (r.ts_ns, r.call_ns, r.pid, r.tracepoint) = (ts_ns, call_ns, pid, kind as u8);
        // SAFETY: EventRecord is plain old data (repr(C), no pointers).
        unsafe { std::slice::from_raw_parts((&raw const r).cast::<u8>(), size_of::<EventRecord>()) }
            .to_vec()
    }

    #[test]
    fn a_thread_that_moved_cpu_within_a_tick_keeps_its_calls_in_order() {
        use RecordKind::*;
        // One tick (time 100). Thread 7's call 50 ran on CPU 1 (an event, then its return);
        // the thread then moved to CPU 0 for call 60. Thread 8's khugepaged-like event
        // (no call) is on CPU 0 too.
        let cpus = [
            vec![rec(100, 60, ScanFile, 7), rec(100, 60, MadviseCall, 7)],
            vec![
                rec(100, 50, ScanFile, 7),
                rec(100, 50, MadviseCall, 7),
                rec(100, 0, ScanPmd, 8),
            ],
        ];
        let head = [2, 3];
        let mut cursor = [0, 0];
        let mut seen = Vec::new();
        let n = merge(
            &head,
            &mut cursor,
            u64::MAX,
            |cpu, i| &cpus[cpu][i as usize],
            &mut |b: &[u8]| {
                let at = |off: usize| u64::from_ne_bytes(b[off..off + 8].try_into().unwrap());
                let call = b[std::mem::offset_of!(EventRecord, tracepoint)] == MadviseCall as u8;
                seen.push((at(std::mem::offset_of!(EventRecord, call_ns)), call));
            },
            &mut MergeHeap::default(),
        );
        assert_eq!(n, 5);
        assert_eq!(cursor, head);
        // Within each CPU's run the order is kept; across them call 50 ends before call 60
        // begins.
        let call_50: Vec<_> = seen.iter().filter(|(c, _)| *c == 50).collect();
        let call_60: Vec<_> = seen.iter().filter(|(c, _)| *c == 60).collect();
        assert_eq!(call_50, [&(50, false), &(50, true)]);
        assert_eq!(call_60, [&(60, false), &(60, true)]);
        let ret_50 = seen.iter().position(|x| *x == (50, true)).unwrap();
        let first_60 = seen.iter().position(|x| *x == (60, false)).unwrap();
        assert!(ret_50 < first_60, "{seen:?}");
    }
}
