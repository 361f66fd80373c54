//! The HTTP(S) server of `serve`: our own accept loop on hyper, serving the axum router of
//! `cmd::serve`, with what a daemon scraped across a network needs (docs/daemon.md):
//!
//! - [`limits`]: a bound on open connections below the file limit, header and idle
//!   timeouts, a warning in the log when the bound is hit;
//! - [`config`]: `--web-config FILE`, the Prometheus exporter toolkit's web config (TLS via
//!   rustls in [`tls`], mutual TLS, basic auth with bcrypt in [`auth`], response headers, a
//!   rate limit), refused whole at start when anything in it is wrong, re-read on SIGHUP
//!   (a bad reload keeps the config in force, with an error in the log).

pub(crate) mod auth;
pub mod config;
pub mod limits;
pub(crate) mod tls;

use std::{
    future::Future,
    path::PathBuf,
    sync::{Arc, OnceLock, RwLock},
    time::Duration,
};

use anyhow::Result;
use axum::Router;
use clap::Args;
use hyper::body::Incoming;
use hyper_util::{rt::TokioIo, service::TowerToHyperService};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::{TcpListener, TcpStream},
    signal::unix::{SignalKind, signal},
    sync::{Semaphore, watch},
    task::JoinSet,
};

use self::{
    config::Loaded,
    limits::{Conn, Limits, Registry},
};
use crate::values::parse_positive_duration;

/// Default bound on open connections. A Prometheus keeps one per scrape target; this leaves
/// room for many scrapers and people with curl, and (with the reserve) fits the systemd unit's
/// LimitNOFILE=4096 several times over.
pub const DEFAULT_MAX_CONNECTIONS: u32 = 1024;

/// The largest request head (request line and headers) read, in bytes; more is refused with
/// 431. A scrape's head is ~300 bytes.
pub(crate) const MAX_HEAD_BYTES: usize = 16 * 1024;

/// Options of `serve` for its HTTP side.
#[derive(Debug, Args)]
pub(crate) struct WebArgs {
    /// Prometheus exporter-toolkit web config (YAML: tls_server_config, basic_auth_users,
    /// http_server_config.headers, rate_limit), the file node_exporter takes as
    /// --web.config.file. Refused at start when anything in it is wrong (exit 2); re-read on
    /// SIGHUP.
    #[arg(long, value_name = "FILE")]
    pub web_config: Option<PathBuf>,
    /// Connections open at most; at the bound, the longest-idle one is closed for a new one
    /// (and a warning logged). Lowered to fit the file limit when needed.
    #[arg(long, default_value_t = DEFAULT_MAX_CONNECTIONS, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,
    /// A new connection must complete its TLS handshake and first request head within this.
    #[arg(long, default_value = "10s", value_parser = parse_positive_duration)]
    pub header_timeout: Duration,
    /// A keep-alive connection is closed after this long without a request (above Prometheus's
    /// usual scrape intervals, so a scraper's connection is reused).
    #[arg(long, default_value = "90s", value_parser = parse_positive_duration)]
    pub idle_timeout: Duration,
}

/// The server's shared state: the web config in force and the open connections.
pub(crate) struct Web {
    path: Option<PathBuf>,
    current: RwLock<Option<Arc<Loaded>>>,
    /// Bounds concurrent bcrypt checks ([`auth::MAX_HASHING`]).
    pub hashing: Semaphore,
    /// The limits asked for (the connection bound is fitted to the file limit in [`serve`]).
    asked: Limits,
    /// Open connections and the limits in force, from [`serve`] on.
    registry: OnceLock<Registry>,
}

impl Web {
    /// Reads the web config (refused whole, with the field named: exit code 2) and fits the
    /// connection bound to the file limit. Call it before attaching.
    pub fn new(args: &WebArgs) -> Result<Arc<Web>> {
        let current = match &args.web_config {
            Some(p) => {
                let l = Loaded::read(p).map_err(|e| {
                    crate::values::UsageError(format!(
                        "{e}; refusing to start (fix the file, or leave out --web-config to \
                         serve plain HTTP)"
                    ))
                })?;
                Some(Arc::new(l))
            }
            None => None,
        };
        Ok(Arc::new(Web {
            path: args.web_config.clone(),
            current: RwLock::new(current),
            hashing: Semaphore::new(auth::MAX_HASHING),
            asked: Limits {
                max_connections: args.max_connections as usize,
                header_timeout: args.header_timeout,
                idle_timeout: args.idle_timeout,
            },
            registry: OnceLock::new(),
        }))
    }

    /// The web config in force (`None` without `--web-config`).
    pub fn current(&self) -> Option<Arc<Loaded>> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// `https` or `http`.
    pub fn scheme(&self) -> &'static str {
        match self.current() {
            Some(l) if l.tls.is_some() => "https",
            _ => "http",
        }
    }

    /// One line for the start log.
    fn describe(&self, l: &Limits) -> String {
        let what = match self.current() {
            Some(c) => format!("web config {}: {}", c.path.display(), c.summary),
            None => "no web config: plain HTTP, no authentication".to_string(),
        };
        format!(
            "{what}; at most {} connections, header timeout {}, idle timeout {}",
            l.max_connections,
            humantime::format_duration(l.header_timeout),
            humantime::format_duration(l.idle_timeout)
        )
    }

    /// Re-reads the web config (SIGHUP). A file that fails any check, or that would switch TLS
    /// on or off (that takes a restart), leaves the config in force, with an error logged.
    pub fn reload(&self) {
        let Some(path) = &self.path else {
            return;
        };
        let new = match Loaded::read(path) {
            Ok(n) => n,
            Err(e) => {
                log::error!("{e}; SIGHUP reload refused, keeping the web config in force");
                return;
            }
        };
        let was_tls = self.current().is_some_and(|c| c.tls.is_some());
        if was_tls != new.tls.is_some() {
            log::error!(
                "web config {}: SIGHUP reload refused: it turns TLS {}, which takes a restart; \
                 keeping the web config in force",
                path.display(),
                if was_tls { "off" } else { "on" }
            );
            return;
        }
        log::info!(
            "web config {} re-read on SIGHUP: {} (new connections use the new certificate; \
             every request the new users)",
            path.display(),
            new.summary
        );
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(new));
    }
}

/// Serves `router` on `listener` until `quit` resolves, then lets open connections finish
/// (the caller bounds that wait). The web config's authentication, rate limit and headers
/// wrap every route; SIGHUP re-reads the web config.
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    web: Arc<Web>,
    quit: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let router = router.layer(axum::middleware::from_fn_with_state(
        web.clone(),
        auth::middleware,
    ));
    // Fitted now, after attaching: the BPF maps, programs and rings hold descriptors too.
    let limits = Limits {
        max_connections: limits::fit_to_file_limit(web.asked.max_connections),
        ..web.asked
    };
    log::info!("{}", web.describe(&limits));
    let registry = web.registry.get_or_init(|| Registry::new(limits));
    let max = registry.limits.max_connections;
    let mut hangup = match web.path {
        Some(_) => Some(signal(SignalKind::hangup())?),
        None => None,
    };
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = JoinSet::new();
    let mut reap = tokio::time::interval(registry.tick());
    reap.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut accept_errors: u64 = 0;
    tokio::pin!(quit);
    loop {
        tokio::select! {
            _ = &mut quit => break,
            Some(_) = async {
                match hangup.as_mut() {
                    Some(h) => h.recv().await,
                    None => std::future::pending().await,
                }
            } => web.reload(),
            _ = reap.tick() => {
                registry.reap();
            }
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            // At the bound, nothing is accepted until a connection task has ended (its socket
            // closed): `tasks` counts them until then.
            r = listener.accept(), if tasks.len() < max => match r {
                Ok((stream, peer)) => {
                    let (id, conn) = registry.admit(peer);
                    let tls = web.current().and_then(|l| l.tls.clone());
                    tasks.spawn(connection(
                        stream,
                        id,
                        conn,
                        tls,
                        router.clone(),
                        web.clone(),
                        stop_rx.clone(),
                    ));
                    if tasks.len() >= max {
                        registry.evict_one(peer);
                    }
                }
                Err(e) => {
                    // EMFILE/ENFILE/ENOMEM: the connection stays queued; back off a little
                    // instead of spinning on it.
                    accept_errors += 1;
                    if accept_errors.is_power_of_two() {
                        log::warn!(
                            "accepting a connection failed ({e}; {accept_errors} times so far); \
                             retrying in 100 ms"
                        );
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
    drop(listener);
    let _ = stop_tx.send(true);
    while tasks.join_next().await.is_some() {}
    Ok(())
}

/// One connection: TLS handshake when configured, then HTTP/1.1 until the client closes, a
/// timeout or eviction closes it, or shutdown drains it.
async fn connection(
    stream: TcpStream,
    id: u64,
    conn: Arc<Conn>,
    tls: Option<Arc<rustls::ServerConfig>>,
    router: Router,
    web: Arc<Web>,
    mut stop: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let work = async {
        match tls {
            None => http(stream, &conn, router, &mut stop).await,
            Some(cfg) => {
                let handshake = tokio_rustls::TlsAcceptor::from(cfg).accept(stream);
                // A handshake still going on at shutdown is dropped, not waited for.
                let done = tokio::select! {
                    r = handshake => r,
                    _ = stopped(&mut stop) => return,
                };
                match done {
                    Ok(s) => http(s, &conn, router, &mut stop).await,
                    Err(e) => log::debug!(peer:% = conn.peer; "TLS handshake failed: {e}"),
                }
            }
        }
    };
    tokio::select! {
        _ = work => {}
        _ = conn.kill.notified() => {}
    }
    if let Some(r) = web.registry.get() {
        r.remove(id);
    }
}

async fn http<I>(io: I, conn: &Arc<Conn>, router: Router, stop: &mut watch::Receiver<bool>)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let inner = TowerToHyperService::new(router);
    let c = conn.clone();
    let svc = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        c.begin();
        let fut = hyper::service::Service::call(&inner, req);
        let c = c.clone();
        async move {
            let r = fut.await;
            c.end();
            r
        }
    });
    let mut b = hyper::server::conn::http1::Builder::new();
    // Our reaper enforces the header and idle timeouts (it knows which connections are
    // inside a handler); hyper's own header timer is off.
    b.keep_alive(true)
        .header_read_timeout(None)
        .max_buf_size(MAX_HEAD_BYTES.max(8192));
    let served = b.serve_connection(TokioIo::new(io), svc);
    tokio::pin!(served);
    tokio::select! {
        r = served.as_mut() => {
            if let Err(e) = r {
                log::debug!(peer:% = conn.peer; "connection ended: {e}");
            }
        }
        _ = stopped(stop) => {
            served.as_mut().graceful_shutdown();
            let _ = served.await;
        }
    }
}

/// Resolves once shutdown has begun.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    // The guard wait_for returns is not Send: dropped here, before any other await.
    let _ = stop.wait_for(|s| *s).await;
}
