//! The CA as a gRPC service, shaped like Istio's `CreateCertificate`.
//!
//! [`CaService`] signs CSRs for the identity an [`Authenticator`] says the caller has.
//! Serve it over [`transport::tls_incoming`](crate::transport::tls_incoming) so that
//! a caller's mesh certificate reaches the authenticator; [`request_certificate`] is
//! the workload side.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tonic::metadata::MetadataMap;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

use crate::proto::certificate_service_client::CertificateServiceClient;
use crate::proto::certificate_service_server::{CertificateService, CertificateServiceServer};
use crate::proto::{CreateCertificateRequest, CreateCertificateResponse};
use crate::transport::PeerInfo;
use crate::{BootstrapTokens, Ca, CertChain, IdentityError, SpiffeId, WorkloadCert, WorkloadKey};

/// Decides which identity a caller of the CA may have a certificate for.
///
/// Given the call's metadata and the SPIFFE id of the client certificate the caller
/// showed on the TLS connection (already verified against the trust bundle), it
/// returns the caller's identity, [`IdentityError::NoCredential`] if the caller
/// showed no credential of its kind (so that a combination can try the next one), or
/// [`IdentityError::Unauthenticated`] for a credential that is not valid. Async, so
/// that an authenticator can ask someone else (a Kubernetes TokenReview).
///
/// A pair `(A, B)` is an authenticator that asks `A`, then `B` if `A` found no
/// credential.
pub trait Authenticator: Send + Sync + 'static {
    /// The identity of the caller.
    fn authenticate(
        &self,
        metadata: &MetadataMap,
        peer: Option<&SpiffeId>,
    ) -> impl Future<Output = Result<SpiffeId, IdentityError>> + Send;
}

/// Authenticates a caller by the mesh certificate it showed as TLS client
/// certificate: renewal gives it the same identity again.
#[derive(Clone, Copy, Debug, Default)]
pub struct PeerCertificate;

impl Authenticator for PeerCertificate {
    async fn authenticate(
        &self,
        _metadata: &MetadataMap,
        peer: Option<&SpiffeId>,
    ) -> Result<SpiffeId, IdentityError> {
        peer.cloned().ok_or_else(|| {
            IdentityError::NoCredential(
                "no mesh certificate shown as TLS client certificate".into(),
            )
        })
    }
}

impl Authenticator for BootstrapTokens {
    async fn authenticate(
        &self,
        metadata: &MetadataMap,
        _peer: Option<&SpiffeId>,
    ) -> Result<SpiffeId, IdentityError> {
        let Some(value) = metadata.get("authorization") else {
            return Err(IdentityError::NoCredential(
                "no `authorization: Bearer <token>` metadata".into(),
            ));
        };
        let value = value.to_str().map_err(|_| {
            IdentityError::Unauthenticated("the authorization metadata is not ASCII".into())
        })?;
        let token = value
            .split_once(' ')
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
            .ok_or_else(|| {
                IdentityError::Unauthenticated(
                    "the authorization metadata is not `Bearer <token>`".into(),
                )
            })?;
        self.verify(token)
    }
}

impl<A: Authenticator, B: Authenticator> Authenticator for (A, B) {
    async fn authenticate(
        &self,
        metadata: &MetadataMap,
        peer: Option<&SpiffeId>,
    ) -> Result<SpiffeId, IdentityError> {
        match self.0.authenticate(metadata, peer).await {
            Err(IdentityError::NoCredential(first)) => {
                match self.1.authenticate(metadata, peer).await {
                    Err(IdentityError::NoCredential(second)) => Err(IdentityError::NoCredential(
                        format!("{first}, and {second}"),
                    )),
                    other => other,
                }
            }
            other => other,
        }
    }
}

/// The CA service: signs CSRs for the identity `A` authenticates.
#[derive(Debug)]
pub struct CaService<A> {
    ca: Arc<Ca>,
    authenticator: A,
}

impl<A: Authenticator> CaService<A> {
    /// The service of `ca`, callers authenticated by `authenticator`.
    pub fn new(ca: Arc<Ca>, authenticator: A) -> Self {
        CaService { ca, authenticator }
    }

    /// The tonic service, for `Server::builder().add_service(..)`.
    pub fn into_server(self) -> CertificateServiceServer<Self> {
        CertificateServiceServer::new(self)
    }
}

#[tonic::async_trait]
impl<A: Authenticator> CertificateService for CaService<A> {
    async fn create_certificate(
        &self,
        request: Request<CreateCertificateRequest>,
    ) -> Result<Response<CreateCertificateResponse>, Status> {
        let peer = request
            .extensions()
            .get::<PeerInfo>()
            .and_then(|info| info.identity.clone());
        let caller = self
            .authenticator
            .authenticate(request.metadata(), peer.as_ref())
            .await
            .inspect_err(|err| tracing::info!(error = %err, "certificate request refused"))?;
        let body = request.into_inner();
        let ttl = match body.validity_duration {
            0 => None,
            secs if secs > 0 => Some(Duration::from_secs(secs.unsigned_abs())),
            secs => {
                return Err(Status::invalid_argument(format!(
                    "validity_duration is {secs}; it must be 0 (the default) or a number of seconds"
                )));
            }
        };
        let chain = self
            .ca
            .sign(body.csr.as_bytes(), &caller, ttl)
            .inspect_err(
                |err| tracing::info!(%caller, error = %err, "certificate request refused"),
            )?;
        tracing::debug!(%caller, "signed a workload certificate");
        Ok(Response::new(CreateCertificateResponse {
            cert_chain: chain.to_pem(),
        }))
    }
}

/// Asks the CA on `channel` for a certificate of `id` for `key`, with a bootstrap
/// `token` if given (else the channel's client certificate must prove `id`), for
/// `ttl` (`None`: the CA's default). Checks that the answer is a chain for this key
/// and this identity.
pub async fn request_certificate(
    channel: Channel,
    key: WorkloadKey,
    id: &SpiffeId,
    token: Option<&str>,
    ttl: Option<Duration>,
) -> Result<WorkloadCert, IdentityError> {
    let mut request = Request::new(CreateCertificateRequest {
        csr: key.csr_pem(id)?,
        validity_duration: ttl
            .map(|ttl| i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX))
            .unwrap_or(0),
    });
    if let Some(token) = token {
        let value = format!("Bearer {token}").parse().map_err(|_| {
            IdentityError::Unauthenticated("the bootstrap token is not valid metadata".into())
        })?;
        request.metadata_mut().insert("authorization", value);
    }
    let response = CertificateServiceClient::new(channel)
        .create_certificate(request)
        .await
        .map_err(|status| IdentityError::CaRefused {
            code: status.code(),
            message: status.message().to_string(),
        })?;
    let chain = CertChain::from_pem(&response.into_inner().cert_chain, "the CA's answer")?;
    let cert = WorkloadCert::new(chain, key)?;
    if cert.id() != id {
        return Err(IdentityError::BadCertificate {
            what: "the CA's answer".into(),
            reason: format!(
                "the certificate is for {} but {id} was asked for",
                cert.id()
            ),
        });
    }
    Ok(cert)
}
