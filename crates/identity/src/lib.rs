//! Workload identity for the skiff mesh.
//!
//! Every workload of the mesh has a [SPIFFE](https://spiffe.io) identity,
//! `spiffe://<trust domain>/ns/<namespace>/sa/<service account>` ([`SpiffeId`]), carried
//! as the only URI SAN of a short-lived X.509 certificate. This crate holds both ends
//! of that:
//!
//! - the control plane's certificate authority, [`Ca`]: a self-signed root made on
//!   first start and kept on disk ([`Ca::load_or_create`]) or an operator's root and
//!   intermediate in Istio's plug-in CA files ([`Ca::from_plugin_files`]); it signs
//!   CSRs for the identity the caller proved ([`Ca::sign`]) and keeps the mesh
//!   [`TrustBundle`], which may hold several roots while a root rotates;
//! - the workload side: a private key that never leaves the process ([`WorkloadKey`]),
//!   its CSR, and the certificate it gets back ([`WorkloadCert`]), with the time to
//!   renew it ([`WorkloadCert::refresh_at`]);
//! - the rustls configs for mutual TLS between proxies ([`MeshTls`]): TLS 1.3 only,
//!   hybrid post-quantum key exchange first, the mesh ALPN [`MESH_ALPN`], certificates
//!   and trust bundle swapped atomically so rotation needs no new config, and
//!   verifiers that check the chain and the peer's SPIFFE id ([`peer_identity`]);
//! - the CA as a gRPC service shaped like Istio's `CreateCertificate`
//!   ([`service::CaService`], [`service::request_certificate`]), with callers
//!   authenticated by their current mesh certificate or by a bootstrap token
//!   ([`BootstrapTokens`]) through the [`service::Authenticator`] trait;
//! - TLS for that gRPC port ([`transport`]): a TLS incoming stream for tonic's
//!   `serve_with_incoming` that exposes the caller's SPIFFE id, and a channel
//!   connector that checks the control plane's identity.
//!
//! # Wiring it (a sketch)
//!
//! ```no_run
//! # async fn demo() -> Result<(), skiff_identity::IdentityError> {
//! use std::time::Duration;
//! use skiff_identity::{Ca, MeshTls, SpiffeId, WorkloadKey, BootstrapTokens};
//! use skiff_identity::service::{CaService, PeerCertificate, request_certificate};
//!
//! // Control plane: the CA, its serving certificate, the gRPC CA service over TLS.
//! let ca = std::sync::Arc::new(Ca::load_or_create("/var/lib/skiff/ca", "cluster.local")?);
//! let serving = ca.issue_server_cert(&["skiff-control".into()], &["127.0.0.1".parse().unwrap()], None)?;
//! let control_tls = MeshTls::new(serving, ca.bundle())?;
//! let tokens = BootstrapTokens::new(&BootstrapTokens::generate_secret())?;
//! let service = CaService::new(ca.clone(), (PeerCertificate, tokens.clone())).into_server();
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:15012").await.unwrap();
//! let incoming = skiff_identity::transport::tls_incoming(listener, control_tls.grpc_server_config());
//! tokio::spawn(tonic::transport::Server::builder().add_service(service).serve_with_incoming(incoming));
//!
//! // Proxy: a key, a certificate from the CA, mesh mTLS configs.
//! let me: SpiffeId = "spiffe://cluster.local/ns/prod/sa/backend".parse()?;
//! let bootstrap = MeshTls::without_cert(ca.bundle())?;
//! let channel = skiff_identity::transport::connect(
//!     tonic::transport::Endpoint::from_static("http://127.0.0.1:15012"),
//!     &bootstrap,
//!     &SpiffeId::control_plane("cluster.local")?,
//! ).await?;
//! let token = tokens.token_for(&me);
//! let cert = request_certificate(channel, WorkloadKey::generate()?, &me, Some(&token), None).await?;
//! let renew_at = cert.refresh_at(0.1);
//! let mesh = MeshTls::new(cert, ca.bundle())?;
//! let _server = mesh.server_config();
//! let _client = mesh.client_config(&["spiffe://cluster.local/ns/prod/sa/frontend".parse()?]);
//! # let _ = renew_at; Ok(()) }
//! ```

#![warn(missing_docs)]

mod bundle;
mod ca;
mod cert;
mod error;
pub mod proto;
pub mod service;
mod spiffe;
mod tls;
mod token;
pub mod transport;
mod workload;

pub use bundle::TrustBundle;
pub use ca::{Ca, DEFAULT_MAX_TTL, DEFAULT_TTL};
pub use cert::CertChain;
pub use error::IdentityError;
pub use spiffe::{CONTROL_PLANE_NAMESPACE, CONTROL_PLANE_SERVICE_ACCOUNT, SpiffeId};
pub use tls::{GRPC_ALPN, MESH_ALPN, MeshTls, crypto_provider, peer_identity};
pub use token::BootstrapTokens;
pub use workload::{WorkloadCert, WorkloadKey};
