//! `collapse-trace stat`: attach, collect for a while (or until Ctrl-C), print counts.

use std::{io::Write as _, time::Duration};

use anyhow::{Context as _, Result};
use clap::Args;

use super::CollectArgs;
use crate::{
    export::{json::Snapshot, text::render_text},
    kernel::cgroups::CgroupResolver,
    model::{aggregate::Aggregate, kernel_info::KernelInfo},
    session::{Session, Stop, Wake},
};

/// Options of `stat`.
#[derive(Debug, Args)]
pub struct StatArgs {
    #[command(flatten)]
    collect: CollectArgs,
    /// Stop after this long (e.g. `10s`, `2m`); default: until Ctrl-C or SIGTERM.
    #[arg(long, short = 'd', value_parser = super::parse_positive_duration)]
    duration: Option<Duration>,
    /// Print one JSON document (schema `collapse-trace.stat/2`, docs/json-schema.md).
    #[arg(long)]
    json: bool,
    /// With --json: keep collecting and print one compact snapshot per interval, one per line
    /// (NDJSON, same schema), plus a last one when stopped.
    #[arg(long, requires = "json")]
    follow: bool,
    /// Time between snapshots with --follow (e.g. `1s`, `500ms`).
    #[arg(long, default_value = "1s", requires = "follow", value_parser = super::parse_positive_duration)]
    interval: Duration,
    /// With --follow: print every event as one JSON line (schema `collapse-trace.event/1`)
    /// instead of the periodic snapshots; one snapshot line still ends the stream.
    #[arg(long, requires = "follow", conflicts_with = "no_events")]
    events: bool,
    /// Rows in the process and file tables (text output).
    #[arg(long, default_value_t = 10)]
    top: usize,
    #[command(flatten)]
    pods: super::PodsArgs,
}

/// Runs `stat`.
pub async fn run(args: StatArgs) -> Result<()> {
    // Signals first: one that arrives while attaching ends the run cleanly, never kills it.
    let stop = Stop::new(None)?.on_hangup()?;
    let events = !args.collect.no_events;
    let mut session = args.collect.start(true, stop)?;
    let mut agg = Aggregate::new(session.info().results.clone());
    super::sysfs::prime(&mut agg, args.collect.precise_time);
    announce(session.info(), args.duration);
    session.set_duration(args.duration);
    if args.follow {
        return follow(&args, session, agg).await;
    }
    while session.wait().await == Wake::Drain {
        session.drain(|e| agg.add(e));
    }
    let kernel = session.finish(|e| agg.add(e))?;
    agg.set_kernel(kernel);
    let elapsed = session.elapsed().as_secs_f64();
    super::name_cgroups(&mut agg, &mut CgroupResolver::new());
    super::name_pods(&mut agg, &mut args.pods.directory());

    let snap = Snapshot::build(
        &agg,
        session.info(),
        args.collect.filters(),
        events,
        elapsed,
    );
    warn_unknown(&snap);
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &snap).context("writing JSON")?;
        writeln!(out)?;
    } else {
        write!(out, "{}", render_text(&snap, args.top)).context("writing to stdout")?;
    }
    super::warn_drops(session.info(), snap.totals.dropped);
    if session.decode_errors() > 0 {
        anyhow::bail!(
            "{} ring records did not decode: the embedded object and the binary disagree; rebuild",
            session.decode_errors()
        );
    }
    Ok(())
}

/// Says on stderr why some results read `unknown(N)`: the kernel reported numbers its table
/// (tracepoint format, BTF, or the built-in copy) does not name, e.g. a newer kernel.
fn warn_unknown(s: &Snapshot) {
    let mut unknown: Vec<(String, i64)> = s
        .tracepoints
        .iter()
        .flat_map(|t| t.results.iter())
        .filter(|r| r.result.starts_with("unknown("))
        .map(|r| (r.result.clone(), r.number))
        .collect();
    unknown.sort_by_key(|(_, n)| *n);
    unknown.dedup();
    if unknown.is_empty() {
        return;
    }
    let names: Vec<String> = unknown.into_iter().map(|(n, _)| n).collect();
    eprintln!(
        "collapse-trace: warning: the kernel reported result numbers that the result names {} \
         do not include: shown as {}. The kernel may be newer than its table says, or its \
         format was edited; `collapse-trace doctor` lists the names it has",
        s.result_names.describe(),
        names.join(", ")
    );
}

/// One line on stderr once attached, so a person (or a test) knows collection has begun.
pub fn announce(info: &KernelInfo, duration: Option<Duration>) {
    let attached = info.attached_names();
    let until = match duration {
        Some(d) => format!("for {}", humantime::format_duration(d)),
        None => "until Ctrl-C".to_string(),
    };
    let calls = match (info.calls_by_fexit, attached.contains(&"madvise_collapse")) {
        (true, _) => "; MADV_COLLAPSE calls by the fexit on madvise_collapse",
        (false, true) => "; MADV_COLLAPSE calls by the syscall hooks",
        (false, false) => "",
    };
    let how = info
        .attach_summary()
        .map(|h| format!("; {h}"))
        .unwrap_or_default();
    eprintln!(
        "collapse-trace: attached to {} on {}{how}{calls}; collecting {until}",
        attached.join(", "),
        info.release
    );
    for g in info.gaps() {
        eprintln!("collapse-trace: not observable on this kernel: {g}");
    }
}

/// `stat --json --follow`: NDJSON on stdout until the duration ends, Ctrl-C, SIGTERM or a
/// closed pipe (all of them a normal end).
async fn follow(args: &StatArgs, mut session: Session, mut agg: Aggregate) -> Result<()> {
    use crate::export::ndjson::{EventLine, write_line};

    let events = !args.collect.no_events;
    let mut out = std::io::stdout().lock();
    let mut ticks =
        tokio::time::interval_at(tokio::time::Instant::now() + args.interval, args.interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failed: Option<std::io::Error> = None;
    let mut cgroups = CgroupResolver::new();
    let mut pods = args.pods.directory();
    loop {
        let mut due = false;
        tokio::select! {
            w = session.wait() => if w == Wake::Stop { break },
            _ = ticks.tick() => due = true,
        }
        session.drain(|e| {
            agg.add(e);
            if args.events && failed.is_none() {
                failed = write_line(&mut out, &EventLine::new(e, &agg.table)).err();
            }
        });
        if due && !args.events && failed.is_none() {
            // One read of the counters for the whole snapshot.
            agg.set_kernel(session.counters()?);
            super::name_cgroups(&mut agg, &mut cgroups);
            super::name_pods(&mut agg, &mut pods);
            let snap = Snapshot::build(
                &agg,
                session.info(),
                args.collect.filters(),
                events,
                session.elapsed().as_secs_f64(),
            );
            failed = write_line(&mut out, &snap).err();
        }
        if failed.is_some() {
            break;
        }
    }
    let kernel = session.finish(|e| {
        agg.add(e);
        if args.events && failed.is_none() {
            failed = write_line(&mut out, &EventLine::new(e, &agg.table)).err();
        }
    })?;
    agg.set_kernel(kernel);
    if failed.is_none() {
        super::name_cgroups(&mut agg, &mut cgroups);
        super::name_pods(&mut agg, &mut pods);
        let snap = Snapshot::build(
            &agg,
            session.info(),
            args.collect.filters(),
            events,
            session.elapsed().as_secs_f64(),
        );
        failed = write_line(&mut out, &snap).err();
    }
    match failed {
        Some(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(anyhow::Error::new(e).context("writing to stdout"))
        }
        _ => Ok(()),
    }
}
