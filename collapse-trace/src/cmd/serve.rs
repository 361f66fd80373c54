//! `collapse-trace serve`: a daemon for one box or a fleet. One loop drains the kernel into
//! the aggregation core; HTTP handlers only read the core:
//!
//! - `GET /metrics`: Prometheus text exposition ([`crate::export::prometheus`]);
//! - `GET /json`: the same [`Snapshot`] as `stat --json` (schema `collapse-trace.stat/2`);
//! - `GET /healthz`: `ok` while the collector loop is draining, 503 when it stalls.
//!
//! SIGTERM or SIGINT stops accepting, detaches the programs and exits 0. SIGHUP re-reads the
//! `--web-config` file when one is given ([`crate::web`]); logs go to stderr, there is nothing
//! to reopen. Connection limits, TLS and authentication live in [`crate::web`].

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};
use axum::{
    Router,
    extract::State,
    http::{StatusCode, header},
    response::IntoResponse,
    routing::get,
};
use clap::Args;

use super::CollectArgs;
use crate::{
    export::{
        json::Snapshot,
        prometheus::{self, CGROUP_CAP, COMM_CAP, EventCounts, Source},
    },
    model::{aggregate::Aggregate, filters::Filters, kernel_info::KernelInfo},
    session::{Stop, Wake},
};

/// Default listen address: loopback only; binding elsewhere is an explicit choice. 9867 is in
/// the range Prometheus exporters use (9100-9999, which its port-allocation list shows as
/// fully taken); it is not node_exporter's 9100 nor ebpf_exporter's 9435.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9867";

/// How often the kernel counters are re-read into the core (each read is one map lookup per
/// counter slot, so not on every 50 ms drain).
pub const COUNTER_REFRESH: Duration = Duration::from_millis(250);

/// `/healthz` fails when the collector loop has not drained for this long.
pub const STALL: Duration = Duration::from_secs(10);

/// Options of `serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    collect: CollectArgs,
    /// Address and port to listen on (loopback by default; e.g. 0.0.0.0:9867 for a fleet).
    #[arg(long, short = 'l', default_value = DEFAULT_LISTEN)]
    listen: SocketAddr,
    /// Distinct comms itemised in collapse_trace_process_events_total; events of further comms
    /// are counted in collapse_trace_comm_cardinality_capped_total.
    #[arg(long, default_value_t = COMM_CAP)]
    max_comms: usize,
    /// Distinct cgroups (of the memory's owner) that label collapse_trace_process_events_total;
    /// events of further cgroups carry cgroup="(other)" and are counted in
    /// collapse_trace_cgroup_cardinality_capped_total.
    #[arg(long, default_value_t = CGROUP_CAP)]
    max_cgroups: usize,
    #[command(flatten)]
    pods: super::PodsArgs,
    /// TLS, authentication and connection limits (docs/daemon.md).
    #[command(flatten)]
    web: crate::web::WebArgs,
}

/// What the handlers read.
struct Daemon {
    agg: Aggregate,
    counts: EventCounts,
    info: KernelInfo,
    filters: Filters,
    events: bool,
    started: Instant,
    last_drain: Instant,
    decode_errors: u64,
    /// Names the pods of the cgroups in the series; kept across scrapes so that its
    /// re-reading stays rate-limited.
    pods: crate::kernel::pods::PodDirectory,
}

type Shared = Arc<Mutex<Daemon>>;

fn lock(s: &Shared) -> MutexGuard<'_, Daemon> {
    // A panic while holding the lock leaves plain counters behind: still worth serving.
    s.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs `serve`.
pub async fn run(args: ServeArgs) -> Result<()> {
    // A bad web config is refused before anything is bound or loaded.
    let web = crate::web::Web::new(&args.web)?;
    // The web server re-reads it on SIGHUP itself (crate::web::serve).
    let reloads = args.web.web_config.is_some();
    // Bind first: a taken port should fail before anything is loaded into the kernel.
    let listener = match tokio::net::TcpListener::bind(args.listen).await {
        Ok(l) => l,
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => anyhow::bail!(
            "cannot listen on {}: the address is in use (another collapse-trace serve, or \
             another exporter?); pick a free one with --listen ADDR:PORT",
            args.listen
        ),
        Err(e) if e.kind() == std::io::ErrorKind::AddrNotAvailable => anyhow::bail!(
            "cannot listen on {}: no interface of this machine has that address ({e})",
            args.listen
        ),
        Err(e) => {
            return Err(e).with_context(|| format!("cannot listen on {}", args.listen));
        }
    };
    let local = listener.local_addr()?;
    let stop = Stop::new(None)?;
    // SIGHUP: ignored (logged). The daemon logs to stderr, which journald or the caller owns,
    // so there is no log file to reopen, and a hangup must not kill a daemon.
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;

    let events = !args.collect.no_events;
    // The daemon's whole life is one counting window.
    let mut session = args.collect.start(true, stop)?;
    let info = session.info().clone();
    let mut agg = Aggregate::new(info.results.clone());
    super::sysfs::prime(&mut agg, args.collect.precise_time);
    // Everything privileged is done: programs loaded and attached, the maps and the ring
    // buffer open (and mapped), the socket bound.
    drop_capabilities().context("dropping capabilities after attaching")?;
    log::info!("dropped every capability (CapEff, CapPrm, CapInh, CapAmb now 0; no_new_privs)");
    let state: Shared = Arc::new(Mutex::new(Daemon {
        agg,
        counts: EventCounts::new(args.max_comms, args.max_cgroups),
        info: info.clone(),
        filters: args.collect.filters(),
        events,
        started: Instant::now(),
        last_drain: Instant::now(),
        decode_errors: 0,
        pods: args.pods.directory(),
    }));

    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/json", get(json))
        .route("/healthz", get(healthz))
        .route("/", get(index))
        .with_state(state.clone());
    let (quit, quit_rx) = tokio::sync::oneshot::channel::<()>();
    let scheme = web.scheme();
    let mut server = tokio::spawn(crate::web::serve(listener, app, web, async move {
        let _ = quit_rx.await;
    }));

    let attached = info.attached_names();
    log::info!(
        listen:% = local,
        attached:% = attached.join(","),
        kernel:% = info.release,
        pid:% = args.collect.pid.map_or("any".to_string(), |p| p.to_string()),
        comm:% = args.collect.comm.as_deref().unwrap_or("any"),
        events = events;
        "collapse-trace serve: attached to {} on {}; listening on {scheme}://{local} (/metrics /json /healthz)",
        attached.join(", "),
        info.release
    );

    let mut refreshed = Instant::now();
    let outcome = loop {
        tokio::select! {
            w = session.wait() => if w == Wake::Stop { break Ok(()) },
            _ = hangup.recv() => {
                if reloads {
                    log::info!("SIGHUP: re-reading the web config (logs go to stderr, nothing to reopen)");
                } else {
                    log::info!("SIGHUP ignored (logs go to stderr; nothing to reopen)");
                }
                continue;
            }
            r = &mut server => break Err(match r {
                Ok(Ok(())) => anyhow::anyhow!("the HTTP server stopped by itself"),
                Ok(Err(e)) => anyhow::Error::new(e).context("the HTTP server failed"),
                Err(e) => anyhow::Error::new(e).context("the HTTP server task failed"),
            }),
        }
        let counters = if refreshed.elapsed() >= COUNTER_REFRESH {
            refreshed = Instant::now();
            Some(session.counters()?)
        } else {
            None
        };
        let mut st = lock(&state);
        let st = &mut *st;
        session.drain(|e| {
            st.agg.add(e);
            st.counts.add(e);
        });
        if let Some(k) = counters {
            st.agg.set_kernel(k);
        }
        st.decode_errors = session.decode_errors();
        st.last_drain = Instant::now();
    };

    // Close the window and detach, then one last drain: the final counts account for every
    // event.
    {
        let mut st = lock(&state);
        let st = &mut *st;
        let kernel = session.finish(|e| {
            st.agg.add(e);
            st.counts.add(e);
        })?;
        st.agg.set_kernel(kernel);
        st.decode_errors = session.decode_errors();
        let k = st.agg.kernel();
        let total: u64 = k.counts.iter().flatten().sum();
        let dropped: u64 = k.drops.iter().sum();
        log::info!(
            events = total,
            delivered = st.agg.delivered_total,
            dropped = dropped;
            "collapse-trace serve: detached after {:.1} s; {total} events, {dropped} dropped",
            st.started.elapsed().as_secs_f64()
        );
    }
    let _ = quit.send(());
    if outcome.is_ok() {
        match tokio::time::timeout(Duration::from_secs(5), &mut server).await {
            Ok(Ok(Err(e))) => log::warn!("HTTP server: {e}"),
            Err(_) => log::warn!("HTTP connections still open after 5 s; closing them"),
            _ => {}
        }
    }
    outcome
}

async fn metrics(State(s): State<Shared>) -> impl IntoResponse {
    let body = {
        let mut st = lock(&s);
        let st = &mut *st;
        let ids: Vec<u64> = st
            .counts
            .cgroups
            .iter()
            .copied()
            .filter(|id| !st.agg.cgroup_paths.contains_key(id))
            .collect();
        if !ids.is_empty() {
            let mut r = crate::kernel::cgroups::CgroupResolver::new();
            for id in ids {
                let path = r.path(id);
                st.agg.set_cgroup_path(id, path);
            }
        }
        super::name_pods(&mut st.agg, &mut st.pods);
        prometheus::render(&Source {
            agg: &st.agg,
            counts: &st.counts,
            info: &st.info,
            decode_errors: st.decode_errors,
        })
    };
    // The system's own THP counters, read at each scrape (outside the lock).
    let body = body + &crate::export::system::render(&super::sysfs::system_context());
    ([(header::CONTENT_TYPE, prometheus::CONTENT_TYPE)], body)
}

async fn json(State(s): State<Shared>) -> impl IntoResponse {
    let snap = {
        let mut st = lock(&s);
        let st = &mut *st;
        super::name_cgroups(
            &mut st.agg,
            &mut crate::kernel::cgroups::CgroupResolver::new(),
        );
        super::name_pods(&mut st.agg, &mut st.pods);
        Snapshot::build(
            &st.agg,
            &st.info,
            st.filters.clone(),
            st.events,
            st.started.elapsed().as_secs_f64(),
        )
    };
    match serde_json::to_string_pretty(&snap) {
        Ok(mut body) => {
            body.push('\n');
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                body,
            )
        }
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("serializing the snapshot: {e}\n"),
        ),
    }
}

async fn healthz(State(s): State<Shared>) -> impl IntoResponse {
    let since = lock(&s).last_drain.elapsed();
    if since < STALL {
        (StatusCode::OK, "ok\n".to_string())
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "the collector has not drained for {:.0} s\n",
                since.as_secs_f64()
            ),
        )
    }
}

async fn index() -> &'static str {
    "collapse-trace serve: GET /metrics (Prometheus text), /json (collapse-trace.stat/2), /healthz\n"
}

/// Drops every capability of this process for good, once attached. What the daemon does
/// afterwards needs none (verified on 6.18 by tests/hardening.rs): reading the per-CPU counter
/// maps through fds it holds (since Linux 6.5 the bpf() commands on an existing fd no longer
/// check CAP_BPF; the fd's own read access is what counts), reading the event rings it
/// already mapped, epoll, accepting on the bound socket, and detaching at exit (closing link
/// and program fds). It keeps its uid: run as root, it still owns root's files, which is why
/// the systemd unit runs it as a dynamic user.
///
/// Order: the bounding set first (needs CAP_SETPCAP; without it, EPERM, and the service
/// manager's bounding set stands), the ambient set, then effective, permitted and inheritable
/// through capset(2), and no_new_privs so nothing can be regained by exec. Capabilities are
/// per thread: this runs on the runtime's only thread (a current-thread runtime; nothing has
/// spawned a thread yet), and threads spawned later inherit the empty sets.
pub fn drop_capabilities() -> Result<()> {
    let last: u32 = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(63);
    for cap in 0..=last {
        // SAFETY: prctl with integer arguments.
        unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) };
    }
    // SAFETY: prctl with integer arguments.
    if unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0,
            0,
            0,
        )
    } != 0
    {
        return Err(std::io::Error::last_os_error()).context("PR_CAP_AMBIENT_CLEAR_ALL");
    }
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;
    let mut header = Header {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let data = [Data {
        effective: 0,
        permitted: 0,
        inheritable: 0,
    }; 2];
    // SAFETY: capset(2) with a version-3 header and the two data words that version takes.
    if unsafe { libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()) } != 0 {
        return Err(std::io::Error::last_os_error()).context("capset(all empty)");
    }
    // SAFETY: prctl with integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(std::io::Error::last_os_error()).context("PR_SET_NO_NEW_PRIVS");
    }
    Ok(())
}
