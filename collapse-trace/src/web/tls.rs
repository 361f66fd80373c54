//! `tls_server_config` -> a rustls server configuration (ring provider). Everything the
//! exporter toolkit accepts maps to rustls or is refused with the field named:
//!
//! - `min_version`/`max_version`: TLS12, TLS13 (TLS10/TLS11 as a minimum mean TLS 1.2, the
//!   oldest rustls speaks: stricter, never weaker; as a maximum they are refused).
//! - `cipher_suites`: Go's names of the TLS 1.2 ECDHE AEAD suites; CBC, RC4, 3DES and
//!   static-RSA suites do not exist in rustls and are refused. As in Go, TLS 1.3 suites are
//!   not configurable.
//! - `curve_preferences`: X25519, CurveP256, CurveP384 (CurveP521 is refused: ring lacks it).
//! - `client_auth_type`: NoClientCert, VerifyClientCertIfGiven, RequireAndVerifyClientCert.
//!   RequestClientCert and RequireAnyClientCert accept any certificate without checking it
//!   (the toolkit's docs call them insecure) and are refused.
//! - `client_allowed_sans`: DNS names and IP addresses, matched exactly against the verified
//!   client certificate's SANs in the handshake (e-mail and URI SANs are refused).

use std::{path::Path, sync::Arc};

use std::net::IpAddr;

use rustls::{
    DigitallySignedStruct, DistinguishedName, ServerConfig, SignatureScheme, SupportedCipherSuite,
    client::danger::HandshakeSignatureValid,
    crypto::{CryptoProvider, ring},
    server::{
        WebPkiClientVerifier,
        danger::{ClientCertVerified, ClientCertVerifier},
    },
    version::{TLS12, TLS13},
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime, pem::PemObject};

use super::config::{TlsServerConfig, join};

/// Builds the rustls configuration; every error names its field.
pub fn server_config(t: &TlsServerConfig, dir: &Path) -> Result<ServerConfig, String> {
    let (cert_pem, cert_from) = source(
        "cert_file",
        t.cert_file.as_deref(),
        "cert",
        t.cert.as_deref(),
        dir,
    )?
    .ok_or("tls_server_config: missing one of cert or cert_file")?;
    let (key_pem, key_from) = source(
        "key_file",
        t.key_file.as_deref(),
        "key",
        t.key.as_deref(),
        dir,
    )?
    .ok_or("tls_server_config: missing one of key or key_file")?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("tls_server_config.{cert_from}: not PEM certificates ({e})"))?;
    if certs.is_empty() {
        return Err(format!(
            "tls_server_config.{cert_from}: no CERTIFICATE block in it"
        ));
    }
    let key = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| format!("tls_server_config.{key_from}: no usable PEM private key ({e})"))?;

    let provider = provider(t)?;
    let versions = versions(t)?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
        .map_err(|e| {
            format!("tls_server_config: cipher_suites/curve_preferences/min_version: {e}")
        })?;

    let ca = source(
        "client_ca_file",
        t.client_ca_file.as_deref(),
        "client_ca",
        t.client_ca.as_deref(),
        dir,
    )?;
    let auth = t.client_auth_type.as_deref().unwrap_or("NoClientCert");
    let sans = match &t.client_allowed_sans {
        Some(list) => {
            if auth != "RequireAndVerifyClientCert" {
                return Err(format!(
                    "tls_server_config.client_allowed_sans requires client_auth_type \
                     RequireAndVerifyClientCert (it is {auth}): without a certificate there is \
                     no SAN to match"
                ));
            }
            Some(AllowedSans::new(list)?)
        }
        None => None,
    };
    let builder = match auth {
        "" | "NoClientCert" => {
            if ca.is_some() {
                return Err(
                    "tls_server_config: client_ca_file (or client_ca) is set but client_auth_type \
                     is NoClientCert: set client_auth_type: RequireAndVerifyClientCert"
                        .to_string(),
                );
            }
            builder.with_no_client_auth()
        }
        "VerifyClientCertIfGiven" | "RequireAndVerifyClientCert" => {
            let (ca_pem, ca_from) = ca.ok_or_else(|| {
                format!(
                    "tls_server_config.client_auth_type {auth} needs client_ca_file (or \
                     client_ca): the CA that signs the scrapers' certificates"
                )
            })?;
            let mut roots = rustls::RootCertStore::empty();
            let mut n = 0;
            for c in CertificateDer::pem_slice_iter(&ca_pem) {
                let c = c.map_err(|e| {
                    format!("tls_server_config.{ca_from}: not PEM certificates ({e})")
                })?;
                roots
                    .add(c)
                    .map_err(|e| format!("tls_server_config.{ca_from}: {e}"))?;
                n += 1;
            }
            if n == 0 {
                return Err(format!(
                    "tls_server_config.{ca_from}: no CERTIFICATE block in it"
                ));
            }
            let v = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let v = if auth == "VerifyClientCertIfGiven" {
                v.allow_unauthenticated()
            } else {
                v
            };
            let v = v
                .build()
                .map_err(|e| format!("tls_server_config.{ca_from}: {e}"))?;
            match sans {
                Some(allowed) => {
                    builder.with_client_cert_verifier(Arc::new(SanVerifier { inner: v, allowed }))
                }
                None => builder.with_client_cert_verifier(v),
            }
        }
        "RequestClientCert" | "RequireAnyClientCert" | "RequireClientCert" => {
            return Err(format!(
                "tls_server_config.client_auth_type {auth} accepts any client certificate \
                 without verifying it; collapse-trace refuses it: use RequireAndVerifyClientCert \
                 (or VerifyClientCertIfGiven) with client_ca_file"
            ));
        }
        other => {
            return Err(format!(
                "tls_server_config.client_auth_type: invalid value {other:?} (NoClientCert, \
                 VerifyClientCertIfGiven or RequireAndVerifyClientCert)"
            ));
        }
    };
    let mut cfg = builder.with_single_cert(certs, key).map_err(|e| {
        format!(
            "tls_server_config.{cert_from}/{key_from}: the key does not fit the certificate ({e})"
        )
    })?;
    // Go's default, and the toolkit's: the server's order of suites wins.
    cfg.ignore_client_order = t.prefer_server_cipher_suites.unwrap_or(true);
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(cfg)
}

/// The PEM bytes of a field given as a file or inline, and the name of the field used.
fn source(
    file_field: &'static str,
    file: Option<&Path>,
    inline_field: &'static str,
    inline: Option<&str>,
    dir: &Path,
) -> Result<Option<(Vec<u8>, String)>, String> {
    // As the toolkit: the file wins when both are given.
    match (file, inline) {
        (Some(p), _) if !p.as_os_str().is_empty() => {
            let p = join(dir, p);
            std::fs::read(&p)
                .map(|b| Some((b, format!("{file_field} ({})", p.display()))))
                .map_err(|e| {
                    format!(
                        "tls_server_config.{file_field}: cannot read {}: {e}",
                        p.display()
                    )
                })
        }
        (_, Some(s)) if !s.is_empty() => {
            Ok(Some((s.as_bytes().to_vec(), inline_field.to_string())))
        }
        _ => Ok(None),
    }
}

fn versions(t: &TlsServerConfig) -> Result<Vec<&'static rustls::SupportedProtocolVersion>, String> {
    let rank = |field: &str, v: &str| -> Result<u8, String> {
        match v {
            "TLS10" => Ok(10),
            "TLS11" => Ok(11),
            "TLS12" => Ok(12),
            "TLS13" => Ok(13),
            other => Err(format!(
                "tls_server_config.{field}: unknown TLS version {other:?} (TLS12 or TLS13)"
            )),
        }
    };
    let min = rank("min_version", t.min_version.as_deref().unwrap_or("TLS12"))?.max(12);
    let max_given = rank("max_version", t.max_version.as_deref().unwrap_or("TLS13"))?;
    if max_given < 12 {
        return Err(format!(
            "tls_server_config.max_version: TLS{max_given} is below TLS 1.2, the oldest version \
             rustls speaks (and TLS 1.0/1.1 are deprecated, RFC 8996)"
        ));
    }
    if min > max_given {
        return Err(format!(
            "tls_server_config: min_version TLS{min} is above max_version TLS{max_given}"
        ));
    }
    let mut v = Vec::new();
    if min <= 13 && max_given >= 13 {
        v.push(&TLS13);
    }
    if min <= 12 {
        v.push(&TLS12);
    }
    Ok(v)
}

/// Go's names of the TLS 1.2 suites rustls does not implement (known, so refused with a reason
/// rather than called unknown).
const GO_ONLY: [&str; 16] = [
    "TLS_RSA_WITH_RC4_128_SHA",
    "TLS_RSA_WITH_3DES_EDE_CBC_SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA256",
    "TLS_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_ECDSA_WITH_RC4_128_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_RC4_128_SHA",
    "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256",
];

fn provider(t: &TlsServerConfig) -> Result<Arc<CryptoProvider>, String> {
    let mut p = ring::default_provider();
    if let Some(names) = &t.cipher_suites {
        let all = p.cipher_suites.clone();
        let mut chosen: Vec<SupportedCipherSuite> = all
            .iter()
            .filter(|s| matches!(s, SupportedCipherSuite::Tls13(_)))
            .copied()
            .collect();
        for name in names {
            // Go spells the two ChaCha20 suites with and without the `_SHA256`.
            let want = match name.as_str() {
                "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305" => {
                    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256"
                }
                "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305" => {
                    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256"
                }
                n => n,
            };
            let found = all.iter().find(|s| {
                matches!(s, SupportedCipherSuite::Tls12(_)) && s.suite().as_str() == Some(want)
            });
            match found {
                Some(s) => chosen.push(*s),
                None if GO_ONLY.contains(&name.as_str()) => {
                    return Err(format!(
                        "tls_server_config.cipher_suites: {name} is not implemented by rustls \
                         (only ECDHE suites with AES-GCM or ChaCha20-Poly1305: {})",
                        tls12_names(&all)
                    ));
                }
                None if matches!(
                    name.as_str(),
                    "TLS_AES_128_GCM_SHA256"
                        | "TLS_AES_256_GCM_SHA384"
                        | "TLS_CHACHA20_POLY1305_SHA256"
                ) =>
                {
                    // TLS 1.3 suites: Go ignores them in this list, so do we (all stay on).
                }
                None => {
                    return Err(format!(
                        "tls_server_config.cipher_suites: unknown cipher {name:?} ({})",
                        tls12_names(&all)
                    ));
                }
            }
        }
        p.cipher_suites = chosen;
    }
    if let Some(curves) = &t.curve_preferences {
        let mut groups = Vec::new();
        for c in curves {
            groups.push(match c.as_str() {
                "X25519" => ring::kx_group::X25519,
                "CurveP256" => ring::kx_group::SECP256R1,
                "CurveP384" => ring::kx_group::SECP384R1,
                "CurveP521" => {
                    return Err(
                        "tls_server_config.curve_preferences: CurveP521 is not implemented by \
                         rustls's ring provider (X25519, CurveP256, CurveP384)"
                            .to_string(),
                    );
                }
                other => {
                    return Err(format!(
                        "tls_server_config.curve_preferences: unknown curve {other:?} (X25519, \
                         CurveP256, CurveP384)"
                    ));
                }
            });
        }
        if groups.is_empty() {
            return Err("tls_server_config.curve_preferences: empty list".to_string());
        }
        p.kx_groups = groups;
    }
    Ok(Arc::new(p))
}

fn tls12_names(all: &[SupportedCipherSuite]) -> String {
    all.iter()
        .filter(|s| matches!(s, SupportedCipherSuite::Tls12(_)))
        .filter_map(|s| s.suite().as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// `client_allowed_sans`: the client certificate must carry one of these SANs, exactly (as
/// the toolkit compares strings: no wildcard matching).
#[derive(Debug)]
struct AllowedSans {
    dns: Vec<String>,
    ips: Vec<IpAddr>,
}

impl AllowedSans {
    fn new(list: &[String]) -> Result<AllowedSans, String> {
        let mut a = AllowedSans {
            dns: Vec::new(),
            ips: Vec::new(),
        };
        for s in list {
            if let Ok(ip) = s.parse::<IpAddr>() {
                a.ips.push(ip);
            } else if s.contains('@') || s.contains("://") {
                return Err(format!(
                    "tls_server_config.client_allowed_sans: {s:?}: e-mail and URI SANs are not \
                     supported by collapse-trace (DNS names and IP addresses are)"
                ));
            } else if ServerName::try_from(s.as_str()).is_ok() {
                a.dns.push(s.to_ascii_lowercase());
            } else {
                return Err(format!(
                    "tls_server_config.client_allowed_sans: {s:?} is neither a DNS name nor an IP \
                     address"
                ));
            }
        }
        if a.dns.is_empty() && a.ips.is_empty() {
            return Err("tls_server_config.client_allowed_sans: empty list".to_string());
        }
        Ok(a)
    }

    fn allows(&self, cert: &CertificateDer<'_>) -> bool {
        let Ok(ee) = webpki::EndEntityCert::try_from(cert) else {
            return false;
        };
        if ee
            .valid_dns_names()
            .any(|n| self.dns.iter().any(|d| d.eq_ignore_ascii_case(n)))
        {
            return true;
        }
        self.ips.iter().any(|ip| {
            ee.verify_is_valid_for_subject_name(&ServerName::IpAddress((*ip).into()))
                .is_ok()
        })
    }
}

/// The WebPKI client verifier, then the SAN check (Go's VerifyPeerCertificate in the toolkit).
#[derive(Debug)]
struct SanVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    allowed: AllowedSans,
}

impl ClientCertVerifier for SanVerifier {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let ok = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        if self.allowed.allows(end_entity) {
            Ok(ok)
        } else {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
