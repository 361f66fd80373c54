//! `collapse-trace record`: every event into a self-describing file (format in
//! [`crate::capture::record`]), for `report` later.

use std::{path::PathBuf, time::Duration};

use anyhow::{Context as _, Result, bail};
use clap::Args;

use super::CollectArgs;
use crate::{
    capture::record::{
        FORMAT, FieldLine, Header, KindLine, ProbeLine, RecordWriter, Trailer, VERSION, now_ns,
    },
    session::{Stop, Wake},
};

/// Options of `record`.
#[derive(Debug, Args)]
// record writes every event: --no-events is refused, so it is not offered either.
#[command(mut_arg("no_events", |a| a.hide(true)))]
pub struct RecordArgs {
    #[command(flatten)]
    collect: CollectArgs,
    /// The file to write (NDJSON; zstd-compressed when the name ends in `.zst`).
    #[arg(long, short = 'o')]
    output: PathBuf,
    /// Stop after this long (e.g. `10s`, `2m`); default: until Ctrl-C or SIGTERM.
    #[arg(long, short = 'd', value_parser = super::parse_positive_duration)]
    duration: Option<Duration>,
}

/// Runs `record`.
pub async fn run(args: RecordArgs) -> Result<()> {
    if args.collect.no_events {
        bail!("record writes every event: --no-events makes no sense here");
    }
    // Signals first: one that arrives while attaching still ends in a complete file.
    let stop = Stop::new(None)?;
    let mut session = args.collect.start(true, stop)?;
    let info = session.info();
    let (start_wall_ns, start_mono_ns) = now_ns();
    let header = Header {
        format: FORMAT.to_string(),
        version: VERSION,
        tool_version: env!("CARGO_PKG_VERSION").to_string(),
        kernel_release: info.release.clone(),
        results: info.results.clone(),
        tracepoints: info
            .tracepoints
            .iter()
            .map(|k| KindLine {
                name: k.tracepoint.name().to_string(),
                attached: k.attached,
            })
            .collect(),
        probes: info
            .probes
            .iter()
            .map(|p| ProbeLine {
                tracepoint: format!("{}:{}", p.probe.group(), p.probe.name()),
                present: p.format.is_some(),
                attached: p.attached,
                fields: p
                    .format
                    .iter()
                    .flat_map(|f| &f.fields)
                    .map(|f| FieldLine {
                        name: f.name.clone(),
                        ctype: f.ctype.clone(),
                        offset: f.offset,
                        size: f.size,
                        signed: f.signed,
                    })
                    .collect(),
            })
            .collect(),
        start_wall_ns,
        start_mono_ns,
        filters: args.collect.filters(),
    };
    // The trailer's counts are the window's own; events are only written.
    let mut out = RecordWriter::create(&args.output, &header)
        .with_context(|| format!("writing {}", args.output.display()))?;
    super::stat::announce(info, args.duration);
    session.set_duration(args.duration);

    let mut failed: Option<std::io::Error> = None;
    // The cgroup ids in the events (a thread's events repeat theirs: the last one is skipped).
    let mut cgroup_ids = std::collections::BTreeSet::new();
    let mut last_ids = (0, 0);
    let mut note = |e: &crate::model::event::Event| {
        if (e.cgroup_id, e.owner_cgroup_id) != last_ids {
            last_ids = (e.cgroup_id, e.owner_cgroup_id);
            cgroup_ids.insert(e.cgroup_id);
            cgroup_ids.insert(e.owner_cgroup_id);
        }
    };
    while session.wait().await == Wake::Drain {
        session.drain(|e| {
            note(e);
            if failed.is_none() {
                failed = out.event(e).err();
            }
        });
        if failed.is_none() {
            failed = out.batch_end().err();
        }
        if failed.is_some() {
            break;
        }
    }
    let kernel = session.finish(|e| {
        note(e);
        if failed.is_none() {
            failed = out.event(e).err();
        }
    })?;
    if let Some(e) = failed {
        return Err(anyhow::Error::new(e))
            .with_context(|| format!("writing {}", args.output.display()));
    }
    let (end_wall_ns, end_mono_ns) = now_ns();
    let written = out.written;
    out.finish(Trailer {
        end_wall_ns,
        end_mono_ns,
        kernel: Trailer::kernel_lines(&kernel),
        delivered: written,
        decode_errors: session.decode_errors(),
        cgroups: {
            let mut r = crate::kernel::cgroups::CgroupResolver::new();
            cgroup_ids
                .into_iter()
                .filter(|id| *id != 0)
                .map(|id| (id, r.path(id)))
                .collect()
        },
    })
    .with_context(|| format!("finishing {}", args.output.display()))?;
    let dropped: u64 = kernel.drops.iter().sum();
    eprintln!(
        "collapse-trace: recorded {written} events to {} ({dropped} dropped)",
        args.output.display()
    );
    super::warn_drops(session.info(), dropped);
    if session.decode_errors() > 0 {
        bail!(
            "{} ring records did not decode: the embedded object and the binary disagree; rebuild",
            session.decode_errors()
        );
    }
    Ok(())
}
