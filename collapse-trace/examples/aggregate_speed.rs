//! The reader's work per record, alone (no kernel): merging a ring filled in memory and
//! decoding its records into events, and that plus the aggregation core that `stat`, `serve` and `top` feed,
//! on the records a `MADV_COLLAPSE` storm on a collapsed range makes (per call: one
//! `scan_file` event with a 62-byte name two directories down, the owner and both cgroups,
//! then the call's record).
//!
//! cargo run --release --example aggregate_speed -- [CALLS]
//!
//! Prints one JSON object on stdout and a line of text on stderr: ns per record and records
//! per second for each stage, best of five runs.

use std::time::Instant;

use collapse_trace::{
    kernel::rings::{MergeHeap, merge},
    model::{aggregate::Aggregate, event::Event, results::ResultTable},
};
use collapse_trace_common::{EventRecord, FILE_REAL_NAME, Origin, RecordKind};

fn bytes(r: &EventRecord) -> &[u8] {
    // SAFETY: viewing a repr(C) value as its bytes.
    unsafe {
        std::slice::from_raw_parts(
            (r as *const EventRecord).cast::<u8>(),
            size_of::<EventRecord>(),
        )
    }
}

/// One call's two records, at call entry `call_ns`.
fn call(table: &ResultTable, call_ns: u64) -> [EventRecord; 2] {
    // SAFETY: EventRecord is plain data, valid when zeroed.
    let mut ev: EventRecord = unsafe { std::mem::zeroed() };
    ev.ts_ns = call_ns + 500;
    ev.call_ns = call_ns;
    ev.tracepoint = RecordKind::ScanFile as u8;
    ev.origin = Origin::Madvise as u8;
    ev.result = table.number("pte_mapped_hugepage").unwrap_or(0) as i32;
    ev.pid = 4242;
    ev.tgid = 4242;
    ev.owner_tgid = 4242;
    ev.cgroup_id = 7777;
    ev.owner_cgroup_id = 7777;
    ev.comm[..5].copy_from_slice(b"storm");
    ev.owner_comm[..5].copy_from_slice(b"storm");
    let name = b"a-file-name-of-sixty-two-bytes-for-the-collapse-trace-bench.dat";
    ev.filename[..name.len()].copy_from_slice(name);
    ev.filename_len = name.len() as u32;
    // Nearest directory first, each followed by '/'.
    let dir = b"inner/outer/";
    ev.dir[..dir.len()].copy_from_slice(dir);
    ev.dir_len = dir.len() as u32;
    ev.file_flags = FILE_REAL_NAME;
    ev.inode = 12345;
    ev.dev = 0x2b;
    ev.present = 512;
    ev.pfn = 0x1_0000;
    let mut c = ev;
    c.ts_ns = call_ns + 900;
    c.tracepoint = RecordKind::MadviseCall as u8;
    c.result = 0;
    c.addr = 0x7f00_0000_0000;
    c.index = 2 << 20;
    c.filename = [0; collapse_trace_common::FILENAME_LEN];
    c.filename_len = 0;
    c.dir_len = 0;
    c.file_flags = 0;
    [ev, c]
}

fn main() {
    let calls: u64 = std::env::args()
        .nth(1)
        .map(|a| a.parse().expect("CALLS: a number"))
        .unwrap_or(500_000);
    let table = ResultTable::builtin();
    // A ring's worth of records, reused (the rings are read in place, so are these).
    let template: Vec<EventRecord> = (0..4096u64)
        .flat_map(|i| call(&table, 1_000_000_000 + i * 1000))
        .collect();
    let records = 2 * calls;
    let run = |aggregate: bool| -> f64 {
        let mut ring = template.clone();
        let slots = ring.len() as u64;
        let mut agg = Aggregate::new(table.clone());
        let mut e = Event::empty();
        let mut heap = MergeHeap::default();
        let t = Instant::now();
        let mut n = 0u64;
        while n < records {
            // One CPU's full ring, through the reader's own merge.
            let mut cursor = [0u64];
            n += merge(
                &[slots],
                &mut cursor,
                u64::MAX,
                |_, i| bytes(&ring[i as usize]),
                &mut |b: &[u8]| {
                    e.decode_into(b).expect("decodes");
                    if aggregate {
                        agg.add(&e);
                    }
                },
                &mut heap,
            );
            // The same records again next round, a ring's worth of calls later.
            for r in &mut ring {
                r.ts_ns += 4096 * 1000;
                if r.call_ns != 0 {
                    r.call_ns += 4096 * 1000;
                }
            }
        }
        std::hint::black_box(&agg);
        t.elapsed().as_nanos() as f64 / n as f64
    };
    let best = |aggregate| (0..5).map(|_| run(aggregate)).fold(f64::MAX, f64::min);
    let decode = best(false);
    let both = best(true);
    eprintln!(
        "aggregate_speed: decode {decode:.0} ns/record, decode + aggregate {both:.0} ns/record \
         ({:.2} M records/s), {records} records a run",
        1e3 / both
    );
    println!(
        "{{\"records\":{records},\"decode_ns\":{decode:.1},\"aggregate_ns\":{both:.1},\"records_per_s\":{:.0}}}",
        1e9 / both
    );
}
