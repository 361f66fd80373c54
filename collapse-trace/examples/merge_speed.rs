//! The ring reader's merge alone, on rings filled in memory (no kernel): records per second
//! merged in time order across 2, 64 and 256 CPUs (full rings of the default size, merged
//! again and again until RECORDS_PER_RUN records went through), by the reader's heap merge and, as the
//! peer in the same run, the linear scan over CPUs per record that it replaced. Also the
//! event rings' memory per CPU count under the default `--ring-size` policy.
//!
//! cargo run --release --example merge_speed -- [RECORDS_PER_RUN]
//!
//! Prints one JSON object per CPU count on stdout (for `cargo xtask bench`) and a line of
//! text per CPU count on stderr.

use std::time::Instant;

use collapse_trace::kernel::rings::{MergeHeap, merge};
use collapse_trace_common::{
    EventRecord, Origin, RecordKind, default_ring_bytes, ring_slots as slots_per_cpu,
};

/// A record's bytes with time `ts` (the only field the merge reads besides its kind).
fn record(ts: u64, kind: RecordKind) -> EventRecord {
    // SAFETY: EventRecord is plain data, valid when zeroed.
    let mut r: EventRecord = unsafe { std::mem::zeroed() };
    r.ts_ns = ts;
    r.tracepoint = kind as u8;
    r.origin = Origin::Madvise as u8;
    r
}

fn bytes(r: &EventRecord) -> &[u8] {
    // SAFETY: viewing a repr(C) value as its bytes.
    unsafe {
        std::slice::from_raw_parts(
            (r as *const EventRecord).cast::<u8>(),
            size_of::<EventRecord>(),
        )
    }
}

/// The linear scan the heap replaced: per record, the CPU whose next record comes first.
fn linear(
    head: &[u64],
    cursor: &mut [u64],
    rec: &impl Fn(usize, u64) -> (u64, bool),
    each: &mut impl FnMut(usize, u64),
) -> u64 {
    let mut n = 0;
    loop {
        let mut best: Option<(usize, (u64, bool))> = None;
        for cpu in 0..head.len() {
            if cursor[cpu] == head[cpu] {
                continue;
            }
            let key = rec(cpu, cursor[cpu]);
            if best.is_none_or(|(_, k)| key < k) {
                best = Some((cpu, key));
            }
        }
        let Some((cpu, _)) = best else { break };
        each(cpu, cursor[cpu]);
        cursor[cpu] += 1;
        n += 1;
    }
    n
}

fn main() {
    let total: u64 = std::env::args()
        .nth(1)
        .map_or(4_000_000, |s| s.parse().expect("a number of records"));
    for (cpus, tick) in [2usize, 64, 256]
        .into_iter()
        .flat_map(|c| [(c, true), (c, false)])
    {
        // The rings as the reader has them: the default size for `cpus`, full.
        let per_cpu = u64::from(slots_per_cpu(default_ring_bytes(cpus as u32), cpus as u32));
        let rounds = (total / (per_cpu * cpus as u64)).max(1);
        // Interleaved times, as a storm spread over every CPU makes; a call record now and
        // then, equal times across CPUs (the tick-cached clock) to exercise the ties.
        let rings: Vec<Vec<EventRecord>> = (0..cpus)
            .map(|cpu| {
                (0..per_cpu)
                    .map(|i| {
                        // --precise-time: every record its own time, interleaved across
                        // CPUs; default: the tick-cached clock, runs of equal times.
                        let ts = match tick {
                            false => 1_000 + i * 3 + (cpu as u64 % 3),
                            true => 1_000 + (i / 64) * 4_000_000,
                        };
                        let kind = if (i + cpu as u64).is_multiple_of(7) {
                            RecordKind::MadviseCall
                        } else {
                            RecordKind::ScanFile
                        };
                        record(ts, kind)
                    })
                    .collect()
            })
            .collect();
        let head = vec![per_cpu; cpus];
        let n_all = per_cpu * cpus as u64 * rounds;

        // The heap merge, as the reader runs it.
        let mut heap = MergeHeap::new();
        let mut in_order = true;
        let mut n = 0;
        let t = Instant::now();
        for _ in 0..rounds {
            let mut cursor = vec![0u64; cpus];
            let mut last = 0u64;
            n += merge(
                &head,
                &mut cursor,
                u64::MAX,
                |cpu, i| bytes(&rings[cpu][i as usize]),
                &mut |b: &[u8]| {
                    let ts = u64::from_ne_bytes(b[..8].try_into().unwrap());
                    in_order &= ts >= last;
                    last = ts;
                },
                &mut heap,
            );
        }
        let heap_s = t.elapsed().as_secs_f64();
        assert_eq!(n, n_all);
        assert!(in_order, "the merge handed records out of time order");

        // The peer: the linear scan.
        let mut sum = 0u64;
        let mut m = 0;
        let t = Instant::now();
        let key = |cpu: usize, i: u64| {
            let r = &rings[cpu][i as usize];
            (r.ts_ns, r.tracepoint == RecordKind::MadviseCall as u8)
        };
        for _ in 0..rounds {
            let mut cursor = vec![0u64; cpus];
            m += linear(&head, &mut cursor, &key, &mut |cpu, i| {
                sum = sum.wrapping_add(rings[cpu][i as usize].ts_ns);
            });
        }
        let linear_s = t.elapsed().as_secs_f64();
        assert_eq!(m, n_all);
        std::hint::black_box(sum);

        let slots = per_cpu;
        let ring_kib_per_cpu = slots as u64 * size_of::<EventRecord>() as u64 / 1024;
        let heap_rate = n_all as f64 / heap_s;
        let linear_rate = n_all as f64 / linear_s;
        eprintln!(
            "merge {cpus:>3} CPUs, {}: heap {:.2} M records/s, linear scan {:.2} M records/s \
             ({:.1}x); default rings: {slots} records ({ring_kib_per_cpu} KiB) per CPU",
            if tick { "tick clock" } else { "precise clock" },
            heap_rate / 1e6,
            linear_rate / 1e6,
            heap_rate / linear_rate
        );
        println!(
            "{{\"cpus\":{cpus},\"clock\":\"{}\",\"records\":{n_all},\"heap_records_per_s\":{heap_rate:.0},\
             \"linear_records_per_s\":{linear_rate:.0},\"ring_slots_per_cpu\":{slots},\
             \"ring_kib_per_cpu\":{ring_kib_per_cpu}}}",
            if tick { "tick" } else { "precise" }
        );
    }
}
