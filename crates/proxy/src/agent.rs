//! The proxy's mesh identity agent: its first certificate from the control plane's CA
//! (with a bootstrap token), renewal at about half-life (with the current certificate,
//! swapped in through [`MeshTls::rotate`]), and the TLS channels to the control plane
//! that xDS and the CA share.
//!
//! `skiff proxy` runs it beside the [`Proxy`](crate::Proxy) (as Istio's pilot-agent
//! runs beside Envoy); tests that embed proxies use it the same way:
//! [`first_certificate`], then [`connect_xds`], then [`renew_forever`] in a task.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use skiff_identity::service::request_certificate;
use skiff_identity::transport::GrpcConnector;
use skiff_identity::{IdentityError, MeshTls, SpiffeId, TrustBundle, WorkloadCert, WorkloadKey};
use skiff_xds::{ChannelFactory, ClientOptions, ConfigUpdate, NodeInfo, XdsClient, XdsError};
use tonic::transport::Endpoint;

use crate::{Error, Proxy};

/// How long a connection attempt to the control plane may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest wait between two attempts to get a certificate.
const MAX_RETRY: Duration = Duration::from_secs(30);
/// Renewal falls at half the certificate's remaining life, moved by up to this
/// fraction of it either way, so proxies started together do not renew together.
const RENEW_JITTER: f64 = 0.1;

/// Where the control plane is and who it must be.
#[derive(Clone, Debug)]
pub struct ControlPlane {
    /// `host:port`, as given to `--control`.
    pub address: String,
    /// The SPIFFE id its serving certificate must have.
    pub id: SpiffeId,
}

impl ControlPlane {
    fn endpoint(&self) -> Result<Endpoint, Error> {
        let uri = if self.address.contains("://") {
            self.address.clone()
        } else {
            format!("http://{}", self.address)
        };
        Ok(Endpoint::from_shared(uri)
            .map_err(|e| Error::Identity(format!("--control {}: {}", self.address, causes(&e))))?
            .connect_timeout(CONNECT_TIMEOUT))
    }

    /// Makes xDS channels over TLS with `tls`'s current certificate.
    pub fn channel_factory(&self, tls: &MeshTls) -> ChannelFactory {
        let connector = GrpcConnector::new(tls, &self.id);
        Arc::new(move |endpoint: Endpoint| {
            let connector = connector.clone();
            Box::pin(async move { endpoint.connect_with_connector(connector).await })
        })
    }
}

/// xDS over TLS to `control`, `tls`'s certificate as client certificate (see
/// [`ControlPlane::channel_factory`]); every pushed config goes to [`Proxy::apply`], as
/// with [`crate::xds_source`]. Must be called within a tokio runtime; the client stops
/// when dropped.
pub fn connect_xds(
    proxy: &Proxy,
    control: &ControlPlane,
    tls: &MeshTls,
    id: &str,
    options: ClientOptions,
) -> Result<XdsClient, XdsError> {
    let on_demand = options.on_demand;
    let target = proxy.clone();
    let client = skiff_xds::connect_with(
        &control.address,
        NodeInfo::new(id).with("admin", proxy.admin_addr().to_string()),
        options,
        move |update: ConfigUpdate| {
            target
                .apply(update.version.clone(), update.config())
                .map_err(|e| e.to_string())
        },
        control.channel_factory(tls),
    )?;
    if on_demand {
        proxy.set_on_demand(client.subscriber());
    }
    Ok(client)
}

/// The trust bundle of `--ca-root`.
pub fn read_trust_bundle(path: &Path, trust_domain: &str) -> Result<TrustBundle, Error> {
    let pem = std::fs::read_to_string(path)
        .map_err(|e| Error::Identity(format!("cannot read --ca-root {}: {e}", path.display())))?;
    TrustBundle::from_pem(trust_domain, &pem)
        .map_err(|e| Error::Identity(format!("--ca-root {}: {}", path.display(), causes(&e))))
}

/// Mesh TLS from `--cert-file`, `--key-file` and `--ca-root` (the file-config mode):
/// `None` when none of them is given; an error naming what is missing when only some
/// are, or when a file cannot be used.
pub fn from_files(
    cert_file: Option<&Path>,
    key_file: Option<&Path>,
    ca_root: Option<&Path>,
    trust_domain: &str,
) -> Result<Option<MeshTls>, Error> {
    let (cert_file, key_file, ca_root) = match (cert_file, key_file, ca_root) {
        (None, None, None) => return Ok(None),
        (Some(c), Some(k), Some(r)) => (c, k, r),
        given => {
            let missing: Vec<&str> = [
                ("--cert-file", given.0.is_none()),
                ("--key-file", given.1.is_none()),
                ("--ca-root", given.2.is_none()),
            ]
            .into_iter()
            .filter_map(|(flag, absent)| absent.then_some(flag))
            .collect();
            return Err(Error::Identity(format!(
                "a mesh identity from files needs --cert-file, --key-file and --ca-root together; missing: {}",
                missing.join(", ")
            )));
        }
    };
    let read = |flag: &str, path: &Path| {
        std::fs::read_to_string(path)
            .map_err(|e| Error::Identity(format!("cannot read {flag} {}: {e}", path.display())))
    };
    let identity = |e: IdentityError| Error::Identity(causes(&e));
    let chain_pem = read("--cert-file", cert_file)?;
    let what = format!("--cert-file {}", cert_file.display());
    let chain = skiff_identity::CertChain::from_pem(&[chain_pem], &what).map_err(identity)?;
    let key = WorkloadKey::from_pkcs8_pem(
        &read("--key-file", key_file)?,
        &format!("--key-file {}", key_file.display()),
    )
    .map_err(identity)?;
    let cert = WorkloadCert::new(chain, key).map_err(|e| {
        Error::Identity(format!(
            "{what} with --key-file {}: {}",
            key_file.display(),
            causes(&e)
        ))
    })?;
    if cert.id().trust_domain() != trust_domain {
        return Err(Error::Identity(format!(
            "{what}: its identity {} is not in the trust domain {trust_domain} (--trust-domain)",
            cert.id()
        )));
    }
    let bundle = read_trust_bundle(ca_root, trust_domain)?;
    Ok(Some(MeshTls::new(cert, bundle).map_err(identity)?))
}

/// The SPIFFE id a bootstrap token is for (`<spiffe id>.<signature>`), or why it
/// names none.
pub fn token_identity(token: &str) -> Result<SpiffeId, Error> {
    let (id, _) = token.rsplit_once('.').ok_or_else(|| {
        Error::Identity("the bootstrap token is not of the form <spiffe id>.<signature>".to_owned())
    })?;
    id.parse().map_err(|e: IdentityError| {
        Error::Identity(format!(
            "the bootstrap token does not start with a SPIFFE id: {}",
            causes(&e)
        ))
    })
}

/// Why getting a certificate failed, and whether trying again can help.
struct Failure {
    message: String,
    permanent: bool,
}

/// One attempt: a TLS channel to the control plane (showing `tls`'s certificate if it
/// has one), a fresh key, a CSR for `id`.
async fn fetch(
    control: &ControlPlane,
    tls: &MeshTls,
    id: &SpiffeId,
    token: Option<&str>,
) -> Result<WorkloadCert, Failure> {
    let endpoint = control.endpoint().map_err(|e| Failure {
        message: e.to_string(),
        permanent: true,
    })?;
    let result = async {
        let channel = skiff_identity::transport::connect(endpoint, tls, &control.id).await?;
        request_certificate(channel, WorkloadKey::generate()?, id, token, None).await
    }
    .await;
    result.map_err(|err| explain(control, id, &err))
}

/// Words an operator can act on, for each way the CA can fail a proxy.
fn explain(control: &ControlPlane, id: &SpiffeId, err: &IdentityError) -> Failure {
    let at = &control.address;
    match err {
        IdentityError::Connect(transport) => match handshake_refusal(transport) {
            Some(why @ IdentityError::UnknownRoot { .. }) => Failure {
                message: format!("control plane at {at}: {why} (is --ca-root the mesh root?)"),
                permanent: true,
            },
            Some(why @ IdentityError::WrongPeer { .. }) => Failure {
                message: format!("control plane at {at}: {why} (is {at} the skiff control plane?)"),
                permanent: true,
            },
            Some(why) => Failure {
                message: format!("control plane at {at}: {why}"),
                permanent: true,
            },
            None => Failure {
                message: format!(
                    "cannot reach the control plane at {at}: {}",
                    causes(transport)
                ),
                permanent: false,
            },
        },
        IdentityError::CaRefused { code, message } => Failure {
            message: format!("the CA at {at} refused a certificate for {id} ({code:?}): {message}"),
            permanent: matches!(
                code,
                tonic::Code::PermissionDenied
                    | tonic::Code::Unauthenticated
                    | tonic::Code::InvalidArgument
            ),
        },
        other => Failure {
            message: format!("certificate from the CA at {at}: {other}"),
            permanent: true,
        },
    }
}

/// The identity error a TLS verifier put in a failed handshake, if any.
fn handshake_refusal(err: &tonic::transport::Error) -> Option<&IdentityError> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(cause) = source {
        if let Some(why) = cause
            .downcast_ref::<std::io::Error>()
            .and_then(IdentityError::from_handshake)
        {
            return Some(why);
        }
        source = cause.source();
    }
    None
}

fn causes(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = cause.source();
    }
    out
}

/// The first certificate, with the bootstrap token: retried with backoff while the
/// control plane cannot be reached; an error if the CA or the TLS handshake refuses
/// (trying again would not help).
pub async fn first_certificate(
    control: &ControlPlane,
    tls: &MeshTls,
    id: &SpiffeId,
    token: &str,
) -> Result<WorkloadCert, Error> {
    let mut wait = Duration::from_millis(200);
    loop {
        match fetch(control, tls, id, Some(token)).await {
            Ok(cert) => return Ok(cert),
            Err(failure) if failure.permanent => return Err(Error::Identity(failure.message)),
            Err(failure) => {
                tracing::warn!(error = %failure.message, retry_in = ?wait, %id, "no mesh certificate yet");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(MAX_RETRY);
            }
        }
    }
}

/// Renews the certificate of `tls` for ever: at about half its remaining life, with
/// the current certificate as credential. A failed renewal is logged and retried with
/// backoff; connections are never dropped, and the current certificate stays in
/// service until a new one arrives.
pub async fn renew_forever(control: ControlPlane, tls: MeshTls, id: SpiffeId) {
    let mut received = SystemTime::now();
    loop {
        let Some(current) = tls.current_cert() else {
            return;
        };
        let delay = renew_delay(received, current.not_after(), SystemTime::now());
        tokio::time::sleep(delay).await;
        let mut wait = Duration::from_millis(500);
        loop {
            match fetch(&control, &tls, &id, None).await {
                Ok(cert) => {
                    tracing::info!(
                        %id,
                        serial = %cert.serial_hex(),
                        not_after = %rfc3339(cert.not_after()),
                        "renewed the workload certificate"
                    );
                    tls.rotate(cert);
                    received = SystemTime::now();
                    break;
                }
                Err(failure) => {
                    let left = current
                        .not_after()
                        .duration_since(SystemTime::now())
                        .unwrap_or_default();
                    tracing::error!(
                        error = %failure.message,
                        retry_in = ?wait,
                        expires_in = ?left,
                        %id,
                        "cannot renew the workload certificate; the current one stays in service"
                    );
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(MAX_RETRY);
                }
            }
        }
    }
}

/// How long to wait before renewing a certificate received at `received` that
/// expires at `not_after`: half of the life it had when it arrived, ± 10% of it (its
/// notBefore is set back for clock skew, so it does not count), at least a second.
fn renew_delay(received: SystemTime, not_after: SystemTime, now: SystemTime) -> Duration {
    let life = not_after.duration_since(received).unwrap_or_default();
    let fraction = 0.5 + RENEW_JITTER * (2.0 * rand::random::<f64>() - 1.0);
    let at = received + life.mul_f64(fraction);
    at.duration_since(now)
        .unwrap_or_default()
        .max(Duration::from_secs(1))
}

/// `at` as an RFC 3339 timestamp, as the agent logs certificate lifetimes.
pub fn rfc3339(at: SystemTime) -> String {
    time::OffsetDateTime::from(at)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| format!("{at:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_is_about_half_the_life_left_at_arrival() {
        let received = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let not_after = received + Duration::from_secs(100);
        for _ in 0..100 {
            let delay = renew_delay(received, not_after, received);
            assert!(
                delay >= Duration::from_secs(40) && delay <= Duration::from_secs(60),
                "{delay:?}"
            );
        }
        // Late (the process was stopped): at once, but never in a tight loop.
        let delay = renew_delay(received, not_after, not_after);
        assert_eq!(delay, Duration::from_secs(1));
    }

    #[test]
    fn token_identity_is_the_id_before_the_signature() {
        let id = token_identity("spiffe://cluster.local/ns/prod/sa/frontend.c2lnbmF0dXJl").unwrap();
        assert_eq!(id.to_string(), "spiffe://cluster.local/ns/prod/sa/frontend");
        assert!(token_identity("nodot").is_err());
    }
}
