//! The bench's printed table: every figure with its peer and ratio, then the goals.

#[allow(clippy::wildcard_imports)]
use super::*;

pub(super) fn print_doc(d: &Doc) {
    println!(
        "\n================ collapse-trace bench {} ================",
        d.started_utc
    );
    println!(
        "machine: {} vCPU {}, {} MiB, kernel {}",
        d.machine.vcpus,
        d.machine.cpu_model,
        d.machine.mem_total_kib / 1024,
        d.machine.kernel
    );
    for (k, v) in &d.versions {
        println!("{k}: {v}");
    }
    let mut rows = vec![vec![
        "measure".to_string(),
        "collapse-trace".into(),
        "bpftrace".into(),
        "ratio median (min-max)".into(),
    ]];
    // The workload's own overhead first: what the traced task feels. (Not in the
    // `overhead MODE:` form: those lines are printed once, when the part ends.)
    if let Some(o) = &d.overhead {
        let show = |s: &Option<Spread>| s.map_or("-".into(), |s| s.show(0));
        for m in &o.modes {
            rows.push(vec![
                format!(
                    "workload overhead ns/event, {} ({} vs {}), {} range",
                    m.mode,
                    m.ours.describe(),
                    m.peer.describe(),
                    m.range.arg()
                ),
                show(&m.ours_ns_per_event),
                show(&m.bpftrace_ns_per_event),
                m.ratio.map_or("-".into(), |s| s.show(2)),
            ]);
        }
        for f in o
            .figures
            .iter()
            .filter(|f| f.tracer != overhead::Tracer::None)
        {
            rows.push(vec![
                format!(
                    "  overhead ns/call, {}, {} range",
                    f.tracer.describe(),
                    f.range.arg()
                ),
                show(&f.overhead_ns_per_call),
                String::new(),
                String::new(),
            ]);
        }
        for f in o
            .figures
            .iter()
            .filter(|f| f.tracer == overhead::Tracer::None)
        {
            rows.push(vec![
                format!(
                    "  time per call with no tracer, ns, {} range",
                    f.range.arg()
                ),
                show(&f.ns_per_call),
                String::new(),
                String::new(),
            ]);
        }
        for f in o.floors.iter().filter(|f| f.unavailable.is_some()) {
            rows.push(vec![
                format!("  an empty {} program", f.kind.name()),
                "not available here".into(),
                String::new(),
                String::new(),
            ]);
        }
    }
    for c in &d.kernel_cost {
        rows.push(vec![
            format!(
                "kernel ns/event, {}, {} range",
                c.mode.describe(),
                c.range.arg()
            ),
            c.ours_ns.map_or("-".into(), |s| s.show(0)),
            c.bpftrace_ns.map_or("-".into(), |s| s.show(0)),
            c.ratio.map_or("-".into(), |s| s.show(2)),
        ]);
        if c.mode.hooks() {
            rows.push(vec![
                "  against bpftrace's counter alone (its tracepoint programs)".into(),
                c.ours_ns.map_or("-".into(), |s| s.show(0)),
                c.bpftrace_tracepoints_ns.map_or("-".into(), |s| s.show(0)),
                c.strict_ratio.map_or("-".into(), |s| s.show(2)),
            ]);
            rows.push(vec![
                "  our huge_memory tracepoint programs alone".into(),
                c.ours_tracepoints_ns.map_or("-".into(), |s| s.show(0)),
                c.bpftrace_tracepoints_ns.map_or("-".into(), |s| s.show(0)),
                c.tracepoints_ratio.map_or("-".into(), |s| s.show(2)),
            ]);
        }
        if c.floor_ns.is_some() {
            rows.push(vec![
                "  an empty bpftrace program on the same tracepoints (the floor)".into(),
                c.floor_ns.map_or("-".into(), |s| s.show(0)),
                c.bpftrace_tracepoints_ns.map_or("-".into(), |s| s.show(0)),
                c.floor_ratio.map_or("-".into(), |s| s.show(2)),
            ]);
        }
    }
    for s in &d.startup {
        rows.push(vec![
            format!("start-up to ready, ms, {} cache", s.cache),
            s.ours_ms.map_or("-".into(), |x| x.show(1)),
            s.bpftrace_ms.map_or("-".into(), |x| x.show(1)),
            s.ratio.map_or("-".into(), |x| x.show(2)),
        ]);
    }
    println!("\n{}", table(&rows));
    let mut rows = vec![vec![
        "tool".to_string(),
        "load".into(),
        "CPU % of one core".into(),
        "CPU s (user+sys)".into(),
        "peak RSS MiB".into(),
        "writing its bytes alone, % of one core".into(),
    ]];
    for r in &d.resources {
        rows.push(vec![
            r.tool.clone(),
            r.achieved_events_per_s
                .map_or("idle".into(), |a| format!("{a:.0} events/s")),
            format!("{:.1}", r.cpu_pct_of_one_core),
            format!("{:.2} ({:.2}+{:.2})", r.cpu_s, r.user_s, r.sys_s),
            format!("{:.1}", r.peak_rss_kib as f64 / 1024.0),
            r.write_floor.as_ref().map_or(String::new(), |f| {
                format!(
                    "{:.1} ({:.0} MB)",
                    f.cpu_pct_of_one_core,
                    f.bytes as f64 / 1e6
                )
            }),
        ]);
    }
    println!("{}", table(&rows));
    if let Some(a) = &d.aggregate {
        println!(
            "reader per record, no kernel (aggregate_speed): decode {:.0} ns, decode + aggregate \
             {:.0} ns ({:.2} M records/s; at the storm's 400,000 records/s each 100 ns is 4% \
             of a core)",
            a.decode_ns,
            a.aggregate_ns,
            a.records_per_s / 1e6
        );
    }
    let mut rows = vec![vec![
        "storms".to_string(),
        "storm target".into(),
        "achieved events/s".into(),
        "events".into(),
        "delivered".into(),
        "dropped".into(),
        "exact".into(),
    ]];
    for s in d.drops.iter().flat_map(|d| &d.steps) {
        rows.push(vec![
            s.storms.to_string(),
            s.target_events_per_s
                .map_or("unpaced".into(), |r| r.to_string()),
            format!("{:.0}", s.achieved_events_per_s),
            s.totals.events.to_string(),
            s.totals.delivered.to_string(),
            s.totals.dropped.to_string(),
            s.exact.to_string(),
        ]);
    }
    println!("{}", table(&rows));
    if let Some(drops) = &d.drops {
        println!(
            "highest rate with zero drops (default ring): {}; drops beyond it: {}",
            drops
                .highest_zero_drop_events_per_s
                .map_or("none".into(), |h| format!("{h:.0} events/s")),
            drops
                .drops_beyond
                .map_or("none seen".into(), |n| n.to_string())
        );
    }
    if let Some(report) = &d.report {
        println!(
            "report --json on a generated recording: {:.2} M events/s ({} events, {:.0} MiB, {:.1} s)\n",
            report.events_per_s / 1e6,
            report.events,
            report.bytes as f64 / (1 << 20) as f64,
            report.seconds
        );
    }
    let mut rows = vec![vec![
        "goal".to_string(),
        "measured".into(),
        "verdict".into(),
    ]];
    for g in &d.goals {
        rows.push(vec![g.goal.clone(), g.measured.clone(), g.verdict().into()]);
    }
    println!("{}", table(&rows));
    if d.goals.iter().any(|g| g.met == Some(false)) {
        println!("some goals are MISSED: see docs/performance.md for the profile evidence");
    }
    if d.slow_stops.is_empty() {
        println!("no tool took longer than 60 s to stop");
    }
    for s in &d.slow_stops {
        println!(
            "slow to stop: {} took {:.0} s (load average {:.1} on {} vCPUs; bound stretched to {:.0} s){}",
            s.tool,
            s.seconds,
            s.load_average,
            s.vcpus,
            s.bound_s,
            if s.finished { "" } else { ", killed" }
        );
    }
    println!("bench wall time: {:.0} s", d.wall_s);
}
