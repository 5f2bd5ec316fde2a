//! Verifiers of both directions: the chain against the live trust bundle, then the
//! peer's SPIFFE id.

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use webpki::KeyUsage;

use crate::{IdentityError, SpiffeId, TrustBundle};

/// The server side: a client of the trust domain, any identity.
#[derive(Debug)]
pub(crate) struct ClientVerifier {
    bundle: TrustBundle,
    mandatory: bool,
}

impl ClientVerifier {
    pub(crate) fn new(bundle: TrustBundle, mandatory: bool) -> Self {
        ClientVerifier { bundle, mandatory }
    }
}

impl ClientCertVerifier for ClientVerifier {
    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // No hints: a mesh workload has one certificate and always shows it.
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.bundle
            .verify(end_entity, intermediates, now, KeyUsage::client_auth())
            .map_err(|err| {
                tracing::debug!(error = %err, "client certificate refused");
                rustls::Error::from(err)
            })?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        schemes()
    }
}

/// The client side: the server must be one of the expected identities (any of the
/// trust domain when none is given).
#[derive(Debug)]
pub(crate) struct ServerVerifier {
    bundle: TrustBundle,
    expected: Vec<SpiffeId>,
}

impl ServerVerifier {
    pub(crate) fn new(bundle: TrustBundle, expected: Vec<SpiffeId>) -> Self {
        ServerVerifier { bundle, expected }
    }
}

impl ServerCertVerifier for ServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let peer = self
            .bundle
            .verify(end_entity, intermediates, now, KeyUsage::server_auth())?;
        if !self.expected.is_empty() && !self.expected.contains(&peer) {
            let expected = self
                .expected
                .iter()
                .map(SpiffeId::to_string)
                .collect::<Vec<_>>()
                .join(" or ");
            return Err(IdentityError::WrongPeer { peer, expected }.into());
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        schemes()
    }
}

fn verify_tls12(
    message: &[u8],
    cert: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
) -> Result<HandshakeSignatureValid, rustls::Error> {
    rustls::crypto::verify_tls12_signature(
        message,
        cert,
        dss,
        &crate::crypto_provider().signature_verification_algorithms,
    )
}

fn verify_tls13(
    message: &[u8],
    cert: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
) -> Result<HandshakeSignatureValid, rustls::Error> {
    rustls::crypto::verify_tls13_signature(
        message,
        cert,
        dss,
        &crate::crypto_provider().signature_verification_algorithms,
    )
}

fn schemes() -> Vec<SignatureScheme> {
    crate::crypto_provider()
        .signature_verification_algorithms
        .supported_schemes()
}
