//! `report` throughput: writes a record of N generated events (default 2 million; a mix of
//! file and anon events, MADV_COLLAPSE calls, 64 processes, 2000 files) and reads it back
//! through the same path `collapse-trace report` takes (parse + aggregation core).
//!
//! cargo run --release --example report_speed -- [EVENTS] [FILE]

use std::time::Instant;

use collapse_trace::{
    capture::{
        self,
        record::{FORMAT, Header, KindLine, RecordWriter, Trailer, VERSION},
    },
    model::filters::Filters,
    model::{aggregate::Aggregate, event::Event, results::ResultTable},
};
use collapse_trace_common::{Origin, RecordKind};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let n: u64 = args.next().map_or(Ok(2_000_000), |s| s.parse())?;
    let path = args.next().unwrap_or_else(|| {
        std::env::temp_dir()
            .join("ct-report-speed.ndjson")
            .display()
            .to_string()
    });
    let path = std::path::PathBuf::from(path);
    let table = ResultTable::builtin();
    let header = Header {
        format: FORMAT.into(),
        version: VERSION,
        tool_version: env!("CARGO_PKG_VERSION").into(),
        kernel_release: "bench".into(),
        results: table.clone(),
        tracepoints: RecordKind::ALL
            .iter()
            .map(|t| KindLine {
                name: t.name().into(),
                attached: true,
            })
            .collect(),
        probes: Vec::new(),
        start_wall_ns: 0,
        start_mono_ns: 1_000_000_000,
        filters: Filters::default(),
    };
    let t0 = Instant::now();
    let mut w = RecordWriter::create(&path, &header)?;
    let mut agg = Aggregate::new(table);
    let results = [10i64, 30, 5, 15, 23, 10, 10, 1];
    for i in 0..n {
        let tgid = 1000 + (i % 64) as u32;
        let tp = RecordKind::ALL[(i % 5) as usize];
        let call = tp == RecordKind::MadviseCall;
        let e = Event {
            ts_ns: 1_000_000_000 + i * 10_000,
            tracepoint: tp,
            pid: tgid,
            tgid,
            comm: format!("worker-{}", tgid % 64).into_bytes(),
            cgroup_id: 1,
            owner_tgid: tgid,
            owner_comm: format!("worker-{}", tgid % 64).into_bytes(),
            owner_cgroup_id: 1,
            origin: Origin::Madvise,
            result: if call {
                [0, 11, 16][(i % 3) as usize]
            } else {
                results[(i % 8) as usize]
            },
            filename: if tp.is_anon() || call {
                Vec::new()
            } else {
                format!("file-{}", i % 2000).into_bytes()
            },
            dir: Vec::new(),
            dir_cut: false,
            real_name: !(tp.is_anon() || call),
            inode: if tp.is_anon() || call {
                0
            } else {
                4000 + i % 2000
            },
            dev: if tp.is_anon() || call { 0 } else { 42 },
            pfn: i,
            present: 128,
            swap: 0,
            is_shmem: true,
            nr: 512,
            index: 512,
            addr: 0x7f00_0000_0000 + (i % 512) * (2 << 20),
            call_ns: 1_000_000_000 + (i / 5) * 50_000,
            referenced: 0,
            none_or_zero: 0,
            unmapped: 0,
            isolated: 0,
            process_madvise: false,
        };
        agg.add(&e);
        w.event(&e)?;
        if i % 4096 == 0 {
            w.batch_end()?;
        }
    }
    w.finish(Trailer {
        end_wall_ns: 0,
        end_mono_ns: 1_000_000_000 + n * 10_000,
        kernel: Trailer::kernel_lines(&agg.counters_from_delivered()),
        delivered: n,
        decode_errors: 0,
        cgroups: Default::default(),
    })?;
    let size = std::fs::metadata(&path)?.len();
    eprintln!(
        "wrote {n} events, {:.0} MiB, in {:.2} s",
        size as f64 / (1 << 20) as f64,
        t0.elapsed().as_secs_f64()
    );
    let t1 = Instant::now();
    let l = capture::load(
        &path,
        None,
        &collapse_trace::kernel::probes::local_result_table(),
        &mut |_| {},
    )?;
    let secs = t1.elapsed().as_secs_f64();
    assert_eq!(l.capture.events, n);
    println!(
        "read {n} events ({:.0} MiB) in {secs:.2} s: {:.2} M events/s, {:.0} MiB/s",
        size as f64 / (1 << 20) as f64,
        n as f64 / secs / 1e6,
        size as f64 / (1 << 20) as f64 / secs
    );
    Ok(())
}
