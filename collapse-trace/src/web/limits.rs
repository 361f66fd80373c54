//! What keeps hostile or broken clients from locking the daemon out: a bound on open
//! connections (below the file limit), a header timeout, an idle timeout, and the rate
//! limiter of the web config.
//!
//! The policy, checked every [`Registry::tick`] by one reaper:
//!
//! - a connection that has not completed a request yet (TLS handshake, request line and
//!   headers) is closed `--header-timeout` after it was accepted: a slowloris client that
//!   sends a byte a second is gone after that, whatever it sends;
//! - a keep-alive connection between requests is closed `--idle-timeout` after its last
//!   response (its next request must be complete by then);
//! - a connection inside a handler is never closed by a timeout (handlers take
//!   milliseconds).
//!
//! When `--max-connections` are open, nothing more is accepted (new connections wait in the
//! kernel's listen backlog, costing no descriptor) and the connection idle the longest (never
//! one inside a handler) is closed to make room; a warning is logged, at most every 10 s with
//! the counts since. A flood of idle connections costs the flood its oldest connections,
//! never `/metrics` its answer. The bound counts connections until their socket is closed, so
//! descriptors never exceed it.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU32, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use tokio::sync::Notify;

/// Descriptors kept free for everything else (BPF maps and programs, rings, the listener,
/// logs) above those open when the server starts.
pub const FD_RESERVE: u64 = 64;

/// One open connection.
pub struct Conn {
    pub peer: SocketAddr,
    pub accepted: Instant,
    /// Requests inside a handler right now.
    pub busy: AtomicU32,
    /// Requests answered.
    pub served: AtomicU64,
    /// Milliseconds after `accepted` of the last answer.
    pub last_done_ms: AtomicU64,
    /// Closes the connection (dropped, not drained).
    pub kill: Notify,
}

impl Conn {
    /// When it was last active: the last answer, or its accept.
    fn last_active(&self) -> Instant {
        if self.served.load(Ordering::Relaxed) == 0 {
            self.accepted
        } else {
            self.accepted + Duration::from_millis(self.last_done_ms.load(Ordering::Relaxed))
        }
    }

    /// A request begins (its headers are in).
    pub fn begin(&self) {
        self.busy.fetch_add(1, Ordering::Relaxed);
    }

    /// A request was answered.
    pub fn end(&self) {
        let ms = self.accepted.elapsed().as_millis() as u64;
        self.last_done_ms.store(ms, Ordering::Relaxed);
        self.served.fetch_add(1, Ordering::Relaxed);
        self.busy.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The limits in force.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
}

/// Open connections and the eviction bookkeeping.
pub struct Registry {
    pub limits: Limits,
    conns: Mutex<HashMap<u64, Arc<Conn>>>,
    next: AtomicU64,
    warn: Mutex<WarnState>,
}

struct WarnState {
    last: Option<Instant>,
    evicted_since: u64,
    refused_since: u64,
}

impl Registry {
    pub fn new(limits: Limits) -> Registry {
        Registry {
            limits,
            conns: Mutex::new(HashMap::new()),
            next: AtomicU64::new(0),
            warn: Mutex::new(WarnState {
                last: None,
                evicted_since: 0,
                refused_since: 0,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Conn>>> {
        self.conns.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a new connection.
    pub fn admit(&self, peer: SocketAddr) -> (u64, Arc<Conn>) {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let c = Arc::new(Conn {
            peer,
            accepted: Instant::now(),
            busy: AtomicU32::new(0),
            served: AtomicU64::new(0),
            last_done_ms: AtomicU64::new(0),
            kill: Notify::new(),
        });
        self.lock().insert(id, c.clone());
        (id, c)
    }

    /// At the bound: closes the connection idle the longest (never one inside a handler),
    /// and warns. Returns whether one was closed; when not, new connections wait in the
    /// listen backlog until a handler finishes.
    pub fn evict_one(&self, newest: SocketAddr) -> bool {
        let mut conns = self.lock();
        let victim = conns
            .iter()
            .filter(|(_, c)| c.busy.load(Ordering::Relaxed) == 0)
            .min_by_key(|(_, c)| c.last_active())
            .map(|(id, _)| *id);
        let evicted = match victim.and_then(|id| conns.remove(&id)) {
            Some(c) => {
                c.kill.notify_one();
                true
            }
            None => false,
        };
        drop(conns);
        self.warn_full(evicted, newest);
        evicted
    }

    fn warn_full(&self, evicted: bool, peer: SocketAddr) {
        let mut w = self.warn.lock().unwrap_or_else(|e| e.into_inner());
        if evicted {
            w.evicted_since += 1;
        } else {
            w.refused_since += 1;
        }
        if w.last
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(10))
        {
            log::warn!(
                max_connections = self.limits.max_connections,
                evicted = w.evicted_since,
                refused = w.refused_since;
                "connection bound reached: {} connections open (--max-connections); since the \
                 last warning {} idle connections were closed to make room and {} times every \
                 open one was inside a handler (new ones then wait in the listen backlog); \
                 latest from {peer}. A client is holding connections open, or raise \
                 --max-connections (and LimitNOFILE)",
                self.limits.max_connections,
                w.evicted_since,
                w.refused_since
            );
            w.last = Some(Instant::now());
            w.evicted_since = 0;
            w.refused_since = 0;
        }
    }

    /// Forgets a connection that ended.
    pub fn remove(&self, id: u64) {
        self.lock().remove(&id);
    }

    /// How often the reaper looks.
    pub fn tick(&self) -> Duration {
        (self.limits.header_timeout.min(self.limits.idle_timeout) / 4)
            .clamp(Duration::from_millis(50), Duration::from_secs(1))
    }

    /// Closes the connections past their timeout; returns how many.
    pub fn reap(&self) -> usize {
        let now = Instant::now();
        let mut conns = self.lock();
        let late: Vec<u64> = conns
            .iter()
            .filter(|(_, c)| {
                if c.busy.load(Ordering::Relaxed) > 0 {
                    return false;
                }
                let limit = if c.served.load(Ordering::Relaxed) == 0 {
                    self.limits.header_timeout
                } else {
                    self.limits.idle_timeout
                };
                now.saturating_duration_since(c.last_active()) >= limit
            })
            .map(|(id, _)| *id)
            .collect();
        for id in &late {
            if let Some(c) = conns.remove(id) {
                log::debug!(
                    peer:% = c.peer,
                    served = c.served.load(Ordering::Relaxed);
                    "closing a connection past its {} timeout",
                    if c.served.load(Ordering::Relaxed) == 0 { "header" } else { "idle" }
                );
                c.kill.notify_one();
            }
        }
        late.len()
    }
}

/// Fits `wanted` connections under the file limit: raises the soft RLIMIT_NOFILE toward the
/// hard one when needed (no privilege needed), and lowers the bound, with a warning, when even
/// the hard limit is too low. Returns the bound to use.
pub fn fit_to_file_limit(wanted: usize) -> usize {
    let open = std::fs::read_dir("/proc/self/fd").map_or(32, |d| d.count() as u64);
    let need = wanted as u64 + open + FD_RESERVE;
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit fills the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return wanted;
    }
    if lim.rlim_cur < need && lim.rlim_max > lim.rlim_cur {
        let raised = libc::rlimit {
            rlim_cur: need.min(lim.rlim_max),
            rlim_max: lim.rlim_max,
        };
        // SAFETY: setrlimit with a struct we own; raising the soft limit up to the hard one
        // needs no privilege.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            log::info!(
                "raised the soft file limit from {} to {} for --max-connections {wanted}",
                lim.rlim_cur,
                raised.rlim_cur
            );
            lim.rlim_cur = raised.rlim_cur;
        }
    }
    if lim.rlim_cur >= need {
        return wanted;
    }
    let fit = lim.rlim_cur.saturating_sub(open + FD_RESERVE).max(1) as usize;
    log::warn!(
        "--max-connections {wanted} does not fit the file limit ({} descriptors, {open} open, \
         {FD_RESERVE} kept free): bounding connections at {fit}; raise LimitNOFILE (ulimit -n) \
         to serve more",
        lim.rlim_cur
    );
    fit
}

/// The web config's `rate_limit`: a token bucket of `burst` tokens refilled one per
/// `interval`, over all requests (as the toolkit's golang.org/x/time/rate limiter).
pub struct RateLimiter {
    interval: Duration,
    burst: u32,
    state: Mutex<(f64, Instant)>,
}

impl RateLimiter {
    pub fn new(interval: Duration, burst: u32) -> RateLimiter {
        RateLimiter {
            interval,
            burst,
            state: Mutex::new((burst as f64, Instant::now())),
        }
    }

    /// Takes a token if one is there.
    pub fn allow(&self) -> bool {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let refill = now.duration_since(s.1).as_secs_f64() / self.interval.as_secs_f64();
        s.0 = (s.0 + refill).min(self.burst as f64);
        s.1 = now;
        if s.0 >= 1.0 {
            s.0 -= 1.0;
            true
        } else {
            false
        }
    }

    /// `burst N, one per 100ms`.
    pub fn describe(&self) -> String {
        format!(
            "burst {}, one more per {}",
            self.burst,
            humantime::format_duration(self.interval)
        )
    }
}
