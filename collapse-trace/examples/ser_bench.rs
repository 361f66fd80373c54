use collapse_trace::{
    capture::record::{RecordEvent, append_event_line},
    model::event::Event,
};
use collapse_trace_common::{EventRecord, Origin, Tracepoint};
use std::time::Instant;
fn main() {
    let mut e = Event::empty();
    e.ts_ns = 12686267562245;
    e.tracepoint = Tracepoint::ScanFile;
    e.result = 10;
    e.pid = 1672;
    e.tgid = 1672;
    e.comm = b"collapse-trace".to_vec();
    e.origin = Origin::Madvise;
    e.cgroup_id = 1;
    e.filename = b"storm".to_vec();
    e.pfn = 1814528;
    let mut c = e.clone();
    c.tracepoint = Tracepoint::MadviseCall;
    c.result = 0;
    c.filename.clear();
    c.pfn = 0;
    c.index = 2097152;
    c.addr = 140131598073856;
    c.call_ns = 12370075554374;
    let mut buf = Vec::with_capacity(1 << 20);
    let n = 4_000_000u64;
    for mode in 0..2 {
        let t = Instant::now();
        let mut total = 0;
        for i in 0..n {
            let ev = if i % 2 == 0 { &e } else { &c };
            if mode == 0 {
                serde_json::to_writer(&mut buf, &RecordEvent::new(ev)).unwrap();
            } else {
                append_event_line(&mut buf, ev);
            }
            buf.push(b'\n');
            if buf.len() > 65536 {
                total += buf.len();
                buf.clear();
            }
        }
        let s = t.elapsed().as_secs_f64();
        println!(
            "mode {mode}: {:.1} ns/line, {} bytes",
            s * 1e9 / n as f64,
            total
        );
    }
    // decode
    let mut raw = vec![0u64; size_of::<EventRecord>() / 8 + 1];
    let bytes: &mut [u8] = unsafe {
        std::slice::from_raw_parts_mut(raw.as_mut_ptr().cast(), size_of::<EventRecord>())
    };
    bytes[88] = 0; // tracepoint scan_file
    let mut out = Event::empty();
    let t = Instant::now();
    let mut sum = 0u64;
    for i in 0..n {
        bytes[0] = i as u8;
        out.decode_into(std::hint::black_box(&bytes[..])).unwrap();
        sum += out.ts_ns;
    }
    println!(
        "decode: {:.1} ns/record ({sum})",
        t.elapsed().as_secs_f64() * 1e9 / n as f64
    );
}
