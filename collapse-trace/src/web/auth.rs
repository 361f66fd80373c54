//! Basic authentication against `basic_auth_users` (bcrypt hashes), checked in constant time
//! with respect to the password and to whether the user exists: an unknown user costs one
//! bcrypt of the same cost against a dummy hash, and the comparison inside `bcrypt::verify`
//! is constant-time (`subtle`). Hashing runs on the blocking pool (a cost-10 hash is ~70 ms
//! of CPU, which would stall the single-threaded collector otherwise), at most
//! [`MAX_HASHING`] at once so a flood of wrong passwords costs at most that many cores.

use std::{collections::BTreeMap, sync::Arc};

use axum::{
    body::Body,
    extract::{Request, State},
    http::{HeaderValue, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use base64::Engine as _;

use super::Web;

/// Concurrent bcrypt checks at most.
pub const MAX_HASHING: usize = 2;

/// Paths served without authentication: a liveness probe (kubelet, systemd, load balancer)
/// carries no credentials, and `/healthz` says only `ok` or how long the collector stalled.
pub const UNAUTHENTICATED: [&str; 1] = ["/healthz"];

/// The configured users.
pub struct Users {
    hashes: BTreeMap<String, String>,
    /// A hash of the highest cost in use, checked for unknown users.
    dummy: String,
}

impl Users {
    /// Checks that every value is a bcrypt hash (naming the user when one is not).
    pub fn new(users: &BTreeMap<String, String>) -> Result<Users, String> {
        let mut cost = 0;
        for (user, hash) in users {
            if user.contains(':') {
                return Err(format!(
                    "basic_auth_users.{user}: a user name cannot contain ':' (basic auth \
                     splits there)"
                ));
            }
            let parts: bcrypt::HashParts = hash.parse().map_err(|e| {
                format!(
                    "basic_auth_users.{user}: not a bcrypt hash ({e}); make one with \
                     `htpasswd -nBC 10 \"\" | tr -d ':\\n'`"
                )
            })?;
            cost = cost.max(parts.get_cost());
        }
        let dummy = bcrypt::hash("collapse-trace: unknown user", cost)
            .map_err(|e| format!("basic_auth_users: cannot make the dummy hash: {e}"))?;
        Ok(Users {
            hashes: users.clone(),
            dummy,
        })
    }

    /// How many users.
    pub fn len(&self) -> usize {
        self.hashes.len()
    }

    /// Whether there are none (never: an empty map is no authentication).
    pub fn is_empty(&self) -> bool {
        self.hashes.is_empty()
    }

    /// Whether `user`/`password` is valid. Takes one bcrypt whether or not the user exists.
    pub fn check(&self, user: &str, password: &[u8]) -> bool {
        let (hash, known) = match self.hashes.get(user) {
            Some(h) => (h.as_str(), true),
            None => (self.dummy.as_str(), false),
        };
        let ok = bcrypt::verify(password, hash).unwrap_or(false);
        ok & known
    }
}

/// The user and password of an `Authorization: Basic` header.
fn credentials(v: &HeaderValue) -> Option<(String, Vec<u8>)> {
    let v = v.to_str().ok()?;
    let (scheme, b64) = v.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    let colon = raw.iter().position(|&b| b == b':')?;
    let user = String::from_utf8(raw[..colon].to_vec()).ok()?;
    Some((user, raw[colon + 1..].to_vec()))
}

/// The middleware: rate limit, then authentication (except [`UNAUTHENTICATED`]), then the
/// configured response headers on every response.
pub async fn middleware(State(web): State<Arc<Web>>, req: Request, next: Next) -> Response {
    let cfg = web.current();
    let headers = cfg.as_ref().map(|c| c.headers.clone()).unwrap_or_default();
    let mut resp = 'resp: {
        let Some(cfg) = cfg else {
            break 'resp next.run(req).await;
        };
        if let Some(r) = &cfg.rate
            && !r.allow()
        {
            break 'resp (
                StatusCode::TOO_MANY_REQUESTS,
                "rate limited (rate_limit in the web config)\n",
            )
                .into_response();
        }
        let open = UNAUTHENTICATED.contains(&req.uri().path());
        if let (Some(users), false) = (&cfg.users, open) {
            let creds = req
                .headers()
                .get(header::AUTHORIZATION)
                .and_then(credentials);
            let ok = match creds {
                None => false,
                Some((user, password)) => {
                    let users = users.clone();
                    let _permit = web.hashing.acquire().await;
                    tokio::task::spawn_blocking(move || users.check(&user, &password))
                        .await
                        .unwrap_or(false)
                }
            };
            if !ok {
                let mut r = Response::new(Body::from("Unauthorized\n"));
                *r.status_mut() = StatusCode::UNAUTHORIZED;
                r.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Basic realm=\"collapse-trace\""),
                );
                break 'resp r;
            }
        }
        next.run(req).await
    };
    for (name, value) in headers {
        resp.headers_mut().insert(name, value);
    }
    resp
}
