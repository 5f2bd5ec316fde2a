//! TLS that a gateway terminates: the `tls` of `Gateway` servers in `SIMPLE`, `MUTUAL`,
//! `OPTIONAL_MUTUAL` and `ISTIO_MUTUAL` mode.

use serde::{Deserialize, Serialize};

/// One terminating server of a gateway port. A port may hold several (one per set of
/// host names); the ClientHello's server name picks one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServerTls {
    /// The server's host names (without their namespace part), lower-case: the server
    /// names it answers to (`*` also takes clients that send none).
    pub hosts: Vec<String>,
    /// How clients are checked.
    pub mode: ServerTlsMode,
    /// Certificate chain file (`serverCertificate`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_certificate: Option<String>,
    /// Key file (`privateKey`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key: Option<String>,
    /// CA certificates that verify clients (`caCertificates`, MUTUAL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_certificates: Option<String>,
    /// A secret with `tls.crt`, `tls.key` and (MUTUAL) `ca.crt` (`credentialName`); in
    /// local mode a directory of the proxy's credentials directory. The CA may also be
    /// in the secret `<credentialName>-cacert`, as Istio reads it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_name: Option<String>,
    /// Lowest TLS version (`minProtocolVersion`: `TLSV1_2`, `TLSV1_3`); Istio's default
    /// for gateways is TLS 1.2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_protocol_version: Option<String>,
    /// Highest TLS version (`maxProtocolVersion`); default TLS 1.3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_protocol_version: Option<String>,
    /// TLS 1.2 cipher suites allowed, in OpenSSL names (`cipherSuites`); empty: the
    /// proxy's defaults. TLS 1.3 suites are not configurable (as in Envoy).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cipher_suites: Vec<String>,
}

/// How a terminating server treats client certificates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ServerTlsMode {
    /// No client certificate asked for.
    Simple,
    /// A client certificate from the CA is required.
    Mutual,
    /// A client certificate is verified when one is shown.
    OptionalMutual,
    /// `ISTIO_MUTUAL`: the gateway's own workload certificate, and a client
    /// certificate of the mesh required (a sidecar whose DestinationRule says
    /// `ISTIO_MUTUAL`); the certificate fields are not used.
    IstioMutual,
}
