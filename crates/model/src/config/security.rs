//! Transport security of upstream connections: the TLS a client proxy uses for one
//! cluster, from the DestinationRule's `trafficPolicy.tls` (or auto mutual TLS when none
//! applies).
//!
//! The per-endpoint half of the decision (identity, sidecar, auto mutual TLS) lives on
//! [`super::Endpoint`]; the per-port server half on [`super::InboundPort::mtls`].

use serde::{Deserialize, Serialize};

/// How a client connects to the endpoints of one cluster.
///
/// Istio's rule (`pilot/pkg/networking/core/cluster_tls.go`): TLS settings from a
/// DestinationRule apply to every endpoint of the cluster; without them the client uses
/// auto mutual TLS, endpoint by endpoint ([`super::Endpoint::mtls`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(tag = "mode", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ClusterTls {
    /// No DestinationRule TLS applies: per endpoint, Istio mutual TLS when
    /// [`super::Endpoint::mtls`] is set, plain text otherwise.
    #[default]
    Auto,
    /// `ISTIO_MUTUAL`: mutual TLS with mesh certificates to every endpoint, whether it
    /// has a sidecar or not.
    IstioMutual(IstioMutual),
    /// `DISABLE` (also a `tls` block without `mode`): plain text to every endpoint.
    Disable,
    /// `SIMPLE`: TLS origination to a server outside the mesh, the server verified.
    Simple(TlsOrigination),
    /// `MUTUAL`: TLS origination with the client certificate given here.
    Mutual(TlsOrigination),
}

impl ClusterTls {
    /// True for [`ClusterTls::Auto`] (the serialized form leaves it out).
    pub fn is_auto(&self) -> bool {
        matches!(self, ClusterTls::Auto)
    }
}

/// `ISTIO_MUTUAL` settings a DestinationRule may override.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct IstioMutual {
    /// SNI to send (`sni`); unset: Istio's own,
    /// `outbound_.<port>_.<subset>_.<host>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sni: Option<String>,
    /// Server identities accepted (`subjectAltNames`, SPIFFE URIs); empty: the
    /// identities of the cluster's endpoints ([`super::Endpoint::spiffe_id`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subject_alt_names: Vec<String>,
    /// Do not verify the server certificate (`insecureSkipVerify`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub insecure_skip_verify: bool,
}

/// `SIMPLE` / `MUTUAL` settings: TLS from the proxy to a server that is not in the mesh.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct TlsOrigination {
    /// SNI to send (`sni`); unset: none is sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sni: Option<String>,
    /// Names the server certificate must carry (`subjectAltNames`); empty: any name
    /// the CA vouches for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subject_alt_names: Vec<String>,
    /// Do not verify the server certificate (`insecureSkipVerify`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub insecure_skip_verify: bool,
    /// File of CA certificates that verify the server (`caCertificates`); unset: the
    /// system roots (or those of `credentialName`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_certificates: Option<String>,
    /// Certificate revocation list file (`caCrl`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_crl: Option<String>,
    /// Client certificate file (`clientCertificate`, MUTUAL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_certificate: Option<String>,
    /// Client private key file (`privateKey`, MUTUAL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key: Option<String>,
    /// Secret holding the certificates instead of files (`credentialName`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_name: Option<String>,
}
