//! TLS a gateway port terminates (`Gateway` servers in `SIMPLE`, `MUTUAL`,
//! `OPTIONAL_MUTUAL` and `ISTIO_MUTUAL` mode): one rustls server config per server, the
//! ClientHello's server name choosing among them as Envoy's filter chains do.
//!
//! `ISTIO_MUTUAL` serves the gateway's own workload certificate (rotated in place) and
//! requires a client certificate of the mesh, as a sidecar's inbound listener does:
//! what a sidecar whose DestinationRule says `ISTIO_MUTUAL` speaks to an egress
//! gateway. The peer's identity is kept on the connection, as at a sidecar's inbound.
//!
//! Certificates come from `serverCertificate` / `privateKey` / `caCertificates`, or from
//! `credentialName`, read as TLS origination reads it: in local mode a directory of the
//! credentials directory holding `tls.crt`, `tls.key` and `ca.crt` (the CA may also be in
//! `<name>-cacert/ca.crt`, as Istio looks for it). Versions: TLS 1.2 and 1.3 by default
//! (Istio's gateway default); `minProtocolVersion` / `maxProtocolVersion` narrow them.
//! `cipherSuites` narrows the TLS 1.2 suites; names rustls does not have are warned
//! about and left out.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig, SupportedProtocolVersion};
use skiff_model::config::{ServerTls, ServerTlsMode, sni_matches};

use crate::Error;
use crate::transport::{read_certs, read_key};

/// The terminating servers of one gateway port.
#[derive(Debug)]
pub(crate) struct TlsServers {
    servers: Vec<(Vec<Box<str>>, Arc<ServerConfig>, bool)>,
}

impl TlsServers {
    /// Compiles the servers of gateway port `port`. Errors name the file or field.
    pub(crate) fn compile(
        port: u16,
        servers: &[ServerTls],
        alpn: &[&[u8]],
        credentials: Option<&Path>,
        mesh: Option<&skiff_identity::MeshTls>,
        warnings: &mut Vec<String>,
    ) -> Result<TlsServers, Error> {
        let mut out = Vec::with_capacity(servers.len());
        for s in servers {
            let place = format!("gateway port {port} TLS server {:?}", s.hosts);
            let istio_mutual = s.mode == ServerTlsMode::IstioMutual;
            let config = if istio_mutual {
                mesh.map(skiff_identity::MeshTls::server_config).ok_or_else(|| {
                    Error::config(
                        place.clone(),
                        "ISTIO_MUTUAL needs the gateway's mesh identity, and this proxy has none",
                    )
                })?
            } else {
                Arc::new(
                    server_config(s, alpn, credentials, &place, warnings)
                        .map_err(|e| Error::config(place, e))?,
                )
            };
            let hosts = s
                .hosts
                .iter()
                .map(|h| h.to_ascii_lowercase().into())
                .collect();
            out.push((hosts, config, istio_mutual));
        }
        Ok(TlsServers { servers: out })
    }

    /// The server for a ClientHello's server name: the first whose hosts take it (a
    /// client that sends none reaches only a server for `*`), and whether it is an
    /// `ISTIO_MUTUAL` one.
    pub(crate) fn select(&self, sni: Option<&str>) -> Option<(Arc<ServerConfig>, bool)> {
        self.servers
            .iter()
            .find(|(hosts, _, _)| match sni {
                Some(name) => hosts.iter().any(|h| sni_matches(h, name)),
                None => hosts.iter().any(|h| &**h == "*"),
            })
            .map(|(_, c, mesh)| (c.clone(), *mesh))
    }
}

fn server_config(
    s: &ServerTls,
    alpn: &[&[u8]],
    credentials: Option<&Path>,
    place: &str,
    warnings: &mut Vec<String>,
) -> Result<ServerConfig, String> {
    let secret = match (&s.credential_name, credentials) {
        (Some(name), Some(dir)) => Some((dir.join(name), dir.join(format!("{name}-cacert")))),
        (Some(name), None) => {
            return Err(format!(
                "credentialName {name:?}: this proxy has no credentials directory \
                 (--credentials-dir) to read it from"
            ));
        }
        (None, _) => None,
    };
    let (cert, key): (PathBuf, PathBuf) = match (&s.server_certificate, &s.private_key, &secret) {
        (Some(c), Some(k), _) => (c.into(), k.into()),
        (_, _, Some((dir, _))) => (dir.join("tls.crt"), dir.join("tls.key")),
        _ => {
            return Err("serverCertificate and privateKey, or credentialName, are required".into());
        }
    };
    let base = skiff_identity::crypto_provider();
    let provider = Arc::new(CryptoProvider {
        cipher_suites: cipher_suites(&base, &s.cipher_suites, place, warnings),
        ..(*base).clone()
    });
    let versions = versions(s, place, warnings)?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
        .map_err(|e| e.to_string())?;
    let builder = match s.mode {
        ServerTlsMode::Simple => builder.with_no_client_auth(),
        ServerTlsMode::IstioMutual => {
            return Err("ISTIO_MUTUAL is served with the mesh identity".into());
        }
        ServerTlsMode::Mutual | ServerTlsMode::OptionalMutual => {
            let ca = s
                .ca_certificates
                .as_ref()
                .map(PathBuf::from)
                .or_else(|| {
                    let (dir, cacert) = secret.as_ref()?;
                    [dir.join("ca.crt"), cacert.join("ca.crt")]
                        .into_iter()
                        .find(|p| p.exists())
                })
                .ok_or("MUTUAL needs caCertificates, or ca.crt in credentialName")?;
            let mut roots = RootCertStore::empty();
            for c in read_certs(&ca)? {
                roots
                    .add(c)
                    .map_err(|e| format!("caCertificates {}: {e}", ca.display()))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = if s.mode == ServerTlsMode::OptionalMutual {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            builder.with_client_cert_verifier(verifier.build().map_err(|e| e.to_string())?)
        }
    };
    let mut config = builder
        .with_single_cert(read_certs(&cert)?, read_key(&key)?)
        .map_err(|e| format!("serverCertificate {}: {e}", cert.display()))?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

/// The versions between `minProtocolVersion` and `maxProtocolVersion`. rustls speaks
/// TLS 1.2 and 1.3 only: a lower minimum is raised to 1.2 (with a warning), a maximum
/// below 1.2 leaves nothing and is an error.
fn versions(
    s: &ServerTls,
    place: &str,
    warnings: &mut Vec<String>,
) -> Result<Vec<&'static SupportedProtocolVersion>, String> {
    let rank = |v: Option<&str>, default: u8| match v {
        None | Some("TLS_AUTO") => default,
        Some("TLSV1_0") => 10,
        Some("TLSV1_1") => 11,
        Some("TLSV1_2") => 12,
        Some(_) => 13,
    };
    let min = rank(s.min_protocol_version.as_deref(), 12);
    let max = rank(s.max_protocol_version.as_deref(), 13);
    if min < 12 {
        warnings.push(format!(
            "{place}: minProtocolVersion {}: TLS below 1.2 is not supported; clients need TLS 1.2 or later",
            s.min_protocol_version.as_deref().unwrap_or("")
        ));
    }
    let mut out = Vec::new();
    if max >= 13 && min <= 13 {
        out.push(&rustls::version::TLS13);
    }
    if max >= 12 && min <= 12 {
        out.push(&rustls::version::TLS12);
    }
    if out.is_empty() {
        return Err(format!(
            "minProtocolVersion {:?} and maxProtocolVersion {:?} leave no version skiff speaks (TLS 1.2, 1.3)",
            s.min_protocol_version, s.max_protocol_version
        ));
    }
    Ok(out)
}

/// `cipherSuites` (OpenSSL names, as Envoy takes them) mapped to rustls' TLS 1.2 suites;
/// TLS 1.3 suites always stay. Empty: all of the provider's.
fn cipher_suites(
    provider: &CryptoProvider,
    wanted: &[String],
    place: &str,
    warnings: &mut Vec<String>,
) -> Vec<rustls::SupportedCipherSuite> {
    if wanted.is_empty() {
        return provider.cipher_suites.clone();
    }
    let iana = |openssl: &str| -> Option<&'static str> {
        Some(match openssl {
            "ECDHE-ECDSA-AES128-GCM-SHA256" => "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
            "ECDHE-ECDSA-AES256-GCM-SHA384" => "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
            "ECDHE-ECDSA-CHACHA20-POLY1305" => "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
            "ECDHE-RSA-AES128-GCM-SHA256" => "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
            "ECDHE-RSA-AES256-GCM-SHA384" => "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
            "ECDHE-RSA-CHACHA20-POLY1305" => "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
            _ => return None,
        })
    };
    let mut keep: Vec<&str> = Vec::new();
    for name in wanted {
        match iana(name) {
            Some(n) => keep.push(n),
            None => warnings.push(format!(
                "{place}: cipher suite {name:?} is not one rustls offers; it is left out"
            )),
        }
    }
    provider
        .cipher_suites
        .iter()
        .filter(|cs| {
            cs.version() == &rustls::version::TLS13
                || cs.suite().as_str().is_some_and(|n| keep.contains(&n))
        })
        .copied()
        .collect()
}
