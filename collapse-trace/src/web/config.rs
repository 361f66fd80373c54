//! The web configuration file of Prometheus's exporter toolkit (`--web.config.file` of
//! node_exporter, ebpf_exporter and the other Go exporters), read unchanged:
//!
//! ```yaml
//! tls_server_config:
//!   cert_file: server.crt          # or `cert:` inline PEM
//!   key_file: server.key           # or `key:` inline PEM
//!   client_auth_type: RequireAndVerifyClientCert
//!   client_ca_file: ca.crt         # or `client_ca:` inline PEM
//!   min_version: TLS12
//! http_server_config:
//!   headers: { X-Content-Type-Options: nosniff }
//! basic_auth_users:
//!   prometheus: $2y$10$...         # bcrypt
//! rate_limit: { interval: 100ms, burst: 10 }
//! ```
//!
//! Unknown fields are refused, as the toolkit's strict YAML parsing refuses them; relative
//! paths are relative to the file's directory, as in the toolkit. What rustls cannot do is
//! refused with the field named, never silently weakened (see docs/daemon.md for the list).

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use axum::http::{HeaderName, HeaderValue};
use serde::Deserialize;

use super::{auth::Users, limits::RateLimiter, tls};

/// The file as written. Every field is optional, as in the toolkit.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebConfigFile {
    /// TLS; absent means plain HTTP (logged as such at start).
    pub tls_server_config: Option<TlsServerConfig>,
    /// HTTP/2 switch and extra response headers.
    pub http_server_config: Option<HttpServerConfig>,
    /// user -> bcrypt hash; absent or empty means no authentication.
    pub basic_auth_users: Option<BTreeMap<String, String>>,
    /// A token bucket over all requests.
    pub rate_limit: Option<RateLimitConfig>,
}

/// `tls_server_config`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsServerConfig {
    pub cert: Option<String>,
    pub key: Option<String>,
    pub client_ca: Option<String>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub client_auth_type: Option<String>,
    pub client_ca_file: Option<PathBuf>,
    pub client_allowed_sans: Option<Vec<String>>,
    pub min_version: Option<String>,
    pub max_version: Option<String>,
    pub cipher_suites: Option<Vec<String>>,
    pub prefer_server_cipher_suites: Option<bool>,
    pub curve_preferences: Option<Vec<String>>,
}

impl TlsServerConfig {
    /// The toolkit's `IsEnabled`: any TLS field set turns TLS on (and then it must be whole).
    pub fn is_enabled(&self) -> bool {
        self.cert.is_some()
            || self.key.is_some()
            || self.client_ca.is_some()
            || self.cert_file.is_some()
            || self.key_file.is_some()
            || self.client_ca_file.is_some()
            || self.client_auth_type.is_some()
    }
}

/// `http_server_config`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpServerConfig {
    /// Accepted for compatibility: this server speaks HTTP/1.1 only (ALPN `http/1.1`), which
    /// every Prometheus negotiates.
    pub http2: Option<bool>,
    pub headers: Option<BTreeMap<String, String>>,
}

/// `rate_limit`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Go duration (`100ms`, `1s`, `1m30s`); 0 turns the limiter off.
    pub interval: Option<String>,
    pub burst: Option<u32>,
}

/// A web config that was read and checked whole: what the server uses until the next good
/// reload.
pub struct Loaded {
    /// Where it came from.
    pub path: PathBuf,
    /// The TLS server configuration (certificate, client verifier, versions, suites).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Basic-auth users; `None` when none are configured.
    pub users: Option<Arc<Users>>,
    /// Response headers from `http_server_config.headers`.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// The request rate limiter, when configured.
    pub rate: Option<RateLimiter>,
    /// One line for the log: what this config turns on.
    pub summary: String,
}

/// A refused web config: the message names the file and the field.
#[derive(Debug, thiserror::Error)]
#[error("web config {path}: {msg}")]
pub struct ConfigError {
    pub path: String,
    pub msg: String,
}

impl Loaded {
    /// Reads, parses and checks `path` whole: the certificate and key load and match, the
    /// client CA parses, every hash is bcrypt. Any problem is an error naming the field.
    pub fn read(path: &Path) -> Result<Loaded, ConfigError> {
        let err = |msg: String| ConfigError {
            path: path.display().to_string(),
            msg,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(format!("cannot read: {e}")))?;
        let dir = path.parent().unwrap_or(Path::new("."));
        Self::parse(&text, dir, path).map_err(err)
    }

    /// [`Loaded::read`] on text already read; relative paths are joined to `dir`.
    pub fn parse(text: &str, dir: &Path, path: &Path) -> Result<Loaded, String> {
        // An empty file (or only comments) is a valid, empty config, as in the toolkit.
        let file: WebConfigFile = if text
            .lines()
            .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
        {
            WebConfigFile::default()
        } else {
            serde_yaml_ng::from_str(text).map_err(|e| yaml_error(&e))?
        };

        let tls = match &file.tls_server_config {
            Some(t) if t.is_enabled() => Some(Arc::new(tls::server_config(t, dir)?)),
            Some(t) => {
                // Fields that only mean something with TLS on, without a certificate: the
                // toolkit falls back to plain HTTP here; we refuse instead.
                if t.min_version.is_some()
                    || t.max_version.is_some()
                    || t.cipher_suites.is_some()
                    || t.curve_preferences.is_some()
                    || t.client_allowed_sans.is_some()
                {
                    return Err(
                        "tls_server_config: TLS options are set but no cert_file/cert and \
                         key_file/key: refusing to serve plain HTTP"
                            .to_string(),
                    );
                }
                None
            }
            None => None,
        };

        let users = match &file.basic_auth_users {
            Some(u) if !u.is_empty() => Some(Arc::new(Users::new(u)?)),
            _ => None,
        };

        let mut headers = Vec::new();
        if let Some(h) = file
            .http_server_config
            .as_ref()
            .and_then(|h| h.headers.as_ref())
        {
            for (name, value) in h {
                headers.push(check_header(name, value)?);
            }
        }

        let rate = match &file.rate_limit {
            Some(r) => {
                let interval = match r.interval.as_deref().map(str::trim) {
                    None | Some("0") | Some("") => Duration::ZERO,
                    Some(s) => humantime::parse_duration(s).map_err(|e| {
                        format!("rate_limit.interval: {s:?} is not a duration ({e}); e.g. 100ms")
                    })?,
                };
                let burst = r.burst.unwrap_or(0);
                if interval.is_zero() {
                    None
                } else if burst == 0 {
                    return Err(
                        "rate_limit.burst: 0 with a non-zero interval would refuse every \
                         request; give at least 1"
                            .to_string(),
                    );
                } else {
                    Some(RateLimiter::new(interval, burst))
                }
            }
            None => None,
        };

        let mut on = Vec::new();
        match (&tls, &file.tls_server_config) {
            (Some(_), Some(t)) => {
                let mtls = match t.client_auth_type.as_deref() {
                    Some("RequireAndVerifyClientCert") => ", client certificates required",
                    Some("VerifyClientCertIfGiven") => ", client certificates verified if given",
                    _ => "",
                };
                on.push(format!("TLS{mtls}"));
            }
            _ => on.push("plain HTTP (no tls_server_config)".to_string()),
        }
        match &users {
            Some(u) => on.push(format!("basic auth ({} users)", u.len())),
            None => on.push("no authentication".to_string()),
        }
        if let Some(r) = &rate {
            on.push(format!("rate limit {}", r.describe()));
        }
        Ok(Loaded {
            path: path.to_path_buf(),
            tls,
            users,
            headers,
            rate,
            summary: on.join(", "),
        })
    }
}

/// serde_yaml_ng's message already names the field (`unknown field `foo`, expected one of
/// ...`, `tls_server_config.cert_file: invalid type ...`) and the line and column.
fn yaml_error(e: &serde_yaml_ng::Error) -> String {
    e.to_string()
}

/// `http_server_config.headers`: the toolkit allows these five, with these values.
fn check_header(name: &str, value: &str) -> Result<(HeaderName, HeaderValue), String> {
    const ALLOWED: [&str; 5] = [
        "Strict-Transport-Security",
        "X-Content-Type-Options",
        "X-Frame-Options",
        "X-XSS-Protection",
        "Content-Security-Policy",
    ];
    if !ALLOWED.contains(&name) {
        return Err(format!(
            "http_server_config.headers: {name:?} is not one of the headers the exporter \
             toolkit allows ({})",
            ALLOWED.join(", ")
        ));
    }
    match (name, value) {
        ("X-Content-Type-Options", v) if v != "nosniff" => {
            return Err(format!(
                "http_server_config.headers.X-Content-Type-Options: {v:?}; the only value is nosniff"
            ));
        }
        ("X-Frame-Options", v)
            if !v.eq_ignore_ascii_case("deny") && !v.eq_ignore_ascii_case("sameorigin") =>
        {
            return Err(format!(
                "http_server_config.headers.X-Frame-Options: {v:?}; give deny or sameorigin"
            ));
        }
        _ => {}
    }
    let v = HeaderValue::from_str(value).map_err(|_| {
        format!("http_server_config.headers.{name}: {value:?} is not a valid header value")
    })?;
    Ok((
        HeaderName::from_bytes(name.as_bytes()).expect("static name"),
        v,
    ))
}

/// Joins a relative path to the config file's directory, as the toolkit does.
pub fn join(dir: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        dir.join(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Loaded, String> {
        Loaded::parse(text, Path::new("/nonexistent"), Path::new("web.yml"))
    }

    #[test]
    fn empty_and_comment_only_files_are_plain_http_without_auth() {
        for text in ["", "\n", "# nothing here\n  # still nothing\n"] {
            let l = parse(text).unwrap();
            assert!(l.tls.is_none() && l.users.is_none() && l.rate.is_none());
            assert!(l.summary.contains("plain HTTP"), "{}", l.summary);
        }
    }

    #[test]
    fn headers_rate_limit_and_users_are_read() {
        let hash = bcrypt::hash("pw", 4).unwrap();
        let l = parse(&format!(
            "http_server_config:\n  http2: true\n  headers:\n    X-Frame-Options: deny\n    \
             Strict-Transport-Security: max-age=3600\n\
             rate_limit:\n  interval: 1m30s\n  burst: 2\n\
             basic_auth_users:\n  alice: {hash}\n"
        ))
        .unwrap();
        assert_eq!(l.headers.len(), 2);
        let users = l.users.unwrap();
        assert!(users.check("alice", b"pw"));
        assert!(!users.check("alice", b"pW"));
        assert!(!users.check("bob", b"pw"));
        let r = l.rate.unwrap();
        assert!(r.allow() && r.allow());
        assert!(!r.allow(), "burst 2, then one per 90 s");
    }

    #[test]
    fn bad_values_name_their_field() {
        for (text, field) in [
            (
                "rate_limit:\n  interval: soon\n  burst: 1\n",
                "rate_limit.interval",
            ),
            ("rate_limit:\n  interval: 1s\n", "rate_limit.burst"),
            (
                "http_server_config:\n  headers:\n    X-Frame-Options: allow\n",
                "X-Frame-Options",
            ),
            (
                "http_server_config:\n  headers:\n    X-Content-Type-Options: sniff\n",
                "X-Content-Type-Options",
            ),
            ("basic_auth_users:\n  'a:b': x\n", "cannot contain ':'"),
            (
                "rate_limit:\n  interval: 1s\n  burst: 1\n  extra: 1\n",
                "extra",
            ),
        ] {
            let e = parse(text)
                .err()
                .unwrap_or_else(|| panic!("accepted: {text}"));
            assert!(e.contains(field), "{field:?} not named in {e:?}");
        }
    }
}
