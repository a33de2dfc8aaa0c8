//! A real TLS client (rustls) that reports what Envoy serves for an SNI name.
//!
//! It accepts any certificate chain, since the point is to observe the chain,
//! not to trust it, but still checks the handshake signature against the
//! leaf's public key, so a probe also proves Envoy holds the matching key.

use crate::http1::{self, HttpResponse};
use anyhow::{anyhow, bail, Context, Result};
use certsync_contract::Fingerprint;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, SignatureScheme, StreamOwned};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::sync::{Arc, OnceLock};

/// What the server presented in one handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsProbe {
    /// SHA-256 of the leaf certificate.
    pub fingerprint: Fingerprint,
    /// Certificates the server sent, leaf included.
    pub chain_len: usize,
    /// DER of every certificate sent, leaf first.
    pub chain_der: Vec<Vec<u8>>,
    /// e.g. `TLSv1_3`.
    pub protocol: String,
}

/// Handshakes with `127.0.0.1:port` sending `sni`, and returns what was served.
pub fn probe(port: u16, sni: &str) -> Result<TlsProbe> {
    let (probe, _) = connect(port, sni)?;
    Ok(probe)
}

/// `GET https://<sni>/<path>` against `127.0.0.1:port`.
pub fn https_get(port: u16, sni: &str, path: &str) -> Result<(TlsProbe, HttpResponse)> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let config = client_config()?;
    let server_name = server_name(sni)?;
    http1::block_on(async move {
        let tcp = http1::open(addr).await?;
        let tls = tokio::time::timeout(
            http1::IO_TIMEOUT,
            tokio_rustls::TlsConnector::from(config).connect(server_name, tcp),
        )
        .await
        .map_err(|_| anyhow!("TLS handshake with {addr} for SNI {sni}: no answer"))?
        .with_context(|| format!("TLS handshake with {addr} for SNI {sni}"))?;
        let probe = served(tls.get_ref().1, addr, sni)?;
        let response = http1::exchange(tls, "GET", sni, path, &[], &[]).await?;
        Ok((probe, response))
    })?
}

/// A completed TLS handshake with `127.0.0.1:port`, ready for application data.
pub fn connect(
    port: u16,
    sni: &str,
) -> Result<(TlsProbe, StreamOwned<ClientConnection, TcpStream>)> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut tcp = http1::connect(addr)?;
    let mut conn = ClientConnection::new(client_config()?, server_name(sni)?)?;
    while conn.is_handshaking() {
        conn.complete_io(&mut tcp)
            .with_context(|| format!("TLS handshake with {addr} for SNI {sni}"))?;
    }
    let probe = served(&conn, addr, sni)?;
    Ok((probe, StreamOwned::new(conn, tcp)))
}

fn server_name(sni: &str) -> Result<ServerName<'static>> {
    ServerName::try_from(sni.to_owned()).with_context(|| format!("bad SNI name {sni:?}"))
}

/// What the server presented on a completed handshake.
fn served(conn: &ClientConnection, addr: SocketAddr, sni: &str) -> Result<TlsProbe> {
    let chain = conn
        .peer_certificates()
        .ok_or_else(|| anyhow!("{addr} sent no certificate for SNI {sni}"))?;
    let Some(leaf) = chain.first() else {
        bail!("{addr} sent an empty certificate chain for SNI {sni}");
    };
    Ok(TlsProbe {
        fingerprint: Fingerprint::of_der(leaf),
        chain_len: chain.len(),
        chain_der: chain.iter().map(|c| c.to_vec()).collect(),
        protocol: conn
            .protocol_version()
            .map(|v| format!("{v:?}"))
            .unwrap_or_default(),
    })
}

fn client_config() -> Result<Arc<ClientConfig>> {
    static CONFIG: OnceLock<std::result::Result<Arc<ClientConfig>, String>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let verifier = Arc::new(AcceptAnyChain {
                provider: provider.clone(),
            });
            ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map(|builder| {
                    Arc::new(
                        builder
                            .dangerous()
                            .with_custom_certificate_verifier(verifier)
                            .with_no_client_auth(),
                    )
                })
                .map_err(|e| e.to_string())
        })
        .clone()
        .map_err(|e| anyhow!("building the TLS client config: {e}"))
}

/// Trusts any chain, but verifies handshake signatures with the leaf's key.
#[derive(Debug)]
struct AcceptAnyChain {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for AcceptAnyChain {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
