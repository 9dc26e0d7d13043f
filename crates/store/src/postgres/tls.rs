//! TLS for PostgreSQL connections over rustls (the TLS stack reqwest already brings), with the
//! certificate checks of libpq's `sslmode`: none for `prefer` and `require`, the chain for
//! `verify-ca`, the chain and the host name for `verify-full`.
//!
//! tokio-postgres sends the `SSLRequest` itself and hands the socket to [`RustlsConnect`] for the
//! handshake; this module only decides what to trust.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect, TlsStream};

use super::settings::{RootCerts, SettingsError, SslMode};

/// Makes one [`RustlsConnect`] per host tokio-postgres dials; cheap to clone into the pool.
#[derive(Clone)]
pub struct RustlsConnector {
    config: Arc<ClientConfig>,
}

impl RustlsConnector {
    /// The TLS client for `mode`, trusting `roots` where the mode checks certificates.
    ///
    /// # Errors
    ///
    /// [`SettingsError::RootCert`] if `sslrootcert` cannot be read or holds no usable
    /// certificate.
    pub fn new(mode: SslMode, roots: &RootCerts) -> Result<Self, SettingsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        // A given bundle is read whatever the mode, so a mistyped path fails at startup rather
        // than the day someone raises the mode.
        let loaded = match roots {
            RootCerts::Builtin => None,
            RootCerts::File(path) => Some(load_roots(path)?),
        };
        let algorithms = provider.signature_verification_algorithms;
        let verifier: Arc<dyn ServerCertVerifier> = match (mode, loaded) {
            (SslMode::Disable | SslMode::Prefer, _) | (SslMode::Require, None) => {
                Arc::new(Lenient {
                    chain: None,
                    algorithms,
                })
            }
            (SslMode::Require | SslMode::VerifyCa, loaded) => Arc::new(Lenient {
                chain: Some(web_pki(loaded, &provider)),
                algorithms,
            }),
            (SslMode::VerifyFull, loaded) => web_pki(loaded, &provider),
        };
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("ring's provider supports rustls's default protocol versions")
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        // The protocol name PostgreSQL 17 expects (and libpq 17 sends); older servers ignore it.
        config.alpn_protocols = vec![b"postgresql".to_vec()];
        Ok(RustlsConnector {
            config: Arc::new(config),
        })
    }
}

fn load_roots(path: &std::path::Path) -> Result<RootCertStore, SettingsError> {
    let error = |reason: String| SettingsError::RootCert {
        path: path.display().to_string(),
        reason,
    };
    let bytes = std::fs::read(path).map_err(|e| error(e.to_string()))?;
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&bytes) {
        let cert = cert.map_err(|e| error(format!("not a PEM certificate bundle: {e}")))?;
        roots
            .add(cert)
            .map_err(|e| error(format!("a certificate in it is unusable: {e}")))?;
    }
    if roots.is_empty() {
        return Err(error("holds no PEM certificate".into()));
    }
    Ok(roots)
}

/// The WebPKI verifier over `loaded` roots, or the built-in Mozilla set.
fn web_pki(
    loaded: Option<RootCertStore>,
    provider: &Arc<CryptoProvider>,
) -> Arc<WebPkiServerVerifier> {
    let roots = loaded.unwrap_or_else(|| RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    });
    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .expect("the root store is not empty (load_roots refuses an empty bundle) and has no CRLs")
}

/// The modes short of `verify-full`. Without `chain` (`prefer`, `require` without a root
/// certificate) any certificate is taken, as libpq does; with it (`verify-ca`) the full WebPKI
/// check applies except that a certificate naming another host is accepted. Either way the
/// handshake's signatures are checked, so the session keys are really the certificate's.
#[derive(Debug)]
struct Lenient {
    chain: Option<Arc<WebPkiServerVerifier>>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for Lenient {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(chain) = &self.chain else {
            return Ok(ServerCertVerified::assertion());
        };
        // The name is the last thing the WebPKI verifier checks, so a name error means the
        // chain, validity period and key usage already passed.
        match chain.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

impl<S> MakeTlsConnect<S> for RustlsConnector
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type TlsConnect = RustlsConnect;
    type Error = io::Error;

    /// `host` is the URL's host name (or address), the name `verify-full` checks. It is empty
    /// for a Unix socket, where PostgreSQL offers no TLS and tokio-postgres never asks for a
    /// handshake.
    fn make_tls_connect(&mut self, host: &str) -> Result<RustlsConnect, io::Error> {
        let server_name = match host {
            "" => None,
            host => Some(
                ServerName::try_from(host.to_owned())
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?,
            ),
        };
        Ok(RustlsConnect {
            config: self.config.clone(),
            server_name,
        })
    }
}

/// The handshake with one host.
pub struct RustlsConnect {
    config: Arc<ClientConfig>,
    server_name: Option<ServerName<'static>>,
}

impl<S> TlsConnect<S> for RustlsConnect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<RustlsStream<S>>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        Box::pin(async move {
            let server_name = self.server_name.ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidInput, "TLS needs a host name")
            })?;
            let stream = tokio_rustls::TlsConnector::from(self.config)
                .connect(server_name, stream)
                .await?;
            Ok(RustlsStream(stream))
        })
    }
}

/// An encrypted connection to the server.
pub struct RustlsStream<S>(tokio_rustls::client::TlsStream<S>);

impl<S: AsyncRead + AsyncWrite + Unpin> TlsStream for RustlsStream<S> {
    /// Binds SCRAM authentication to this TLS session (`SCRAM-SHA-256-PLUS`), so a man in the
    /// middle cannot relay the password exchange even where the mode checks no certificate.
    fn channel_binding(&self) -> ChannelBinding {
        self.0
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|chain| chain.first())
            .and_then(|certificate| tls_server_end_point(certificate))
            .map_or_else(ChannelBinding::none, ChannelBinding::tls_server_end_point)
    }
}

/// RFC 5929 §4.1 `tls-server-end-point`: the server's certificate hashed with the hash of its
/// signature algorithm, SHA-256 standing in for MD5 and SHA-1 (as PostgreSQL computes it).
/// `None` for algorithms without a hash of their own (Ed25519, RSA-PSS), where SCRAM goes
/// unbound, as with libpq.
fn tls_server_end_point(certificate: &[u8]) -> Option<Vec<u8>> {
    const RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01];
    const ECDSA: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04];
    let oid = signature_algorithm(certificate)?;
    let hash = if let Some(rsa) = oid.strip_prefix(RSA) {
        match rsa {
            // md5WithRSA, sha1WithRSA, sha256WithRSA
            [0x04] | [0x05] | [0x0b] => Hash::Sha256,
            [0x0c] => Hash::Sha384,
            [0x0d] => Hash::Sha512,
            _ => return None,
        }
    } else if let Some(ecdsa) = oid.strip_prefix(ECDSA) {
        match ecdsa {
            // ecdsa-with-SHA1, ecdsa-with-SHA256
            [0x01] | [0x03, 0x02] => Hash::Sha256,
            [0x03, 0x03] => Hash::Sha384,
            [0x03, 0x04] => Hash::Sha512,
            _ => return None,
        }
    } else {
        return None;
    };
    use sha2::Digest;
    Some(match hash {
        Hash::Sha256 => sha2::Sha256::digest(certificate).to_vec(),
        Hash::Sha384 => sha2::Sha384::digest(certificate).to_vec(),
        Hash::Sha512 => sha2::Sha512::digest(certificate).to_vec(),
    })
}

enum Hash {
    Sha256,
    Sha384,
    Sha512,
}

/// The OID of `signatureAlgorithm` in a DER certificate:
/// `Certificate ::= SEQUENCE { tbsCertificate SEQUENCE, signatureAlgorithm SEQUENCE { OID, … }, … }`.
fn signature_algorithm(certificate: &[u8]) -> Option<&[u8]> {
    const SEQUENCE: u8 = 0x30;
    const OID: u8 = 0x06;
    let (certificate, _) = der_element(certificate, SEQUENCE)?;
    let (_to_be_signed, rest) = der_element(certificate, SEQUENCE)?;
    let (algorithm, _) = der_element(rest, SEQUENCE)?;
    let (oid, _) = der_element(algorithm, OID)?;
    Some(oid)
}

/// Splits the DER element with `tag` at the start of `input` into its contents and what follows.
fn der_element(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (&found, rest) = input.split_first()?;
    let (&first_length, rest) = rest.split_first()?;
    if found != tag {
        return None;
    }
    let (length, rest) = if first_length < 0x80 {
        (usize::from(first_length), rest)
    } else {
        // Long form: the low bits count the length bytes that follow.
        let count = usize::from(first_length & 0x7f);
        if count == 0 || count > 4 || rest.len() < count {
            return None;
        }
        let (bytes, rest) = rest.split_at(count);
        let length = bytes
            .iter()
            .fold(0usize, |length, &byte| length << 8 | usize::from(byte));
        (length, rest)
    };
    (rest.len() >= length).then(|| rest.split_at(length))
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for RustlsStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for RustlsStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {

    use super::*;

    fn error_for(mode: SslMode, contents: Option<&str>) -> String {
        let directory = tempfile::tempdir().expect("dir");
        let path = directory.path().join("root.pem");
        if let Some(contents) = contents {
            std::fs::write(&path, contents).expect("write");
        }
        match RustlsConnector::new(mode, &RootCerts::File(path.clone())) {
            Ok(_) => panic!("{contents:?} was accepted as a root bundle"),
            Err(error) => {
                let message = error.to_string();
                let prefix = format!("sslrootcert={}: ", path.display());
                assert!(message.starts_with(&prefix), "{message}");
                message[prefix.len()..].to_owned()
            }
        }
    }

    #[test]
    fn a_missing_root_bundle_is_an_error_naming_sslrootcert_in_every_mode() {
        for mode in [SslMode::Prefer, SslMode::Require, SslMode::VerifyFull] {
            let reason = error_for(mode, None);
            assert!(reason.contains("No such file"), "{mode}: {reason}");
        }
    }

    #[test]
    fn a_root_bundle_without_a_certificate_is_refused() {
        assert_eq!(
            error_for(SslMode::VerifyCa, Some("")),
            "holds no PEM certificate"
        );
        let key_only = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
        assert_eq!(
            error_for(SslMode::VerifyCa, Some(key_only)),
            "holds no PEM certificate"
        );
    }

    #[test]
    fn a_damaged_root_bundle_is_refused_with_the_reason() {
        let unterminated = "-----BEGIN CERTIFICATE-----\nMIIB\n";
        let reason = error_for(SslMode::VerifyFull, Some(unterminated));
        assert!(
            reason.starts_with("not a PEM certificate bundle"),
            "{reason}"
        );
        let not_der = "-----BEGIN CERTIFICATE-----\nAAAAAAAA\n-----END CERTIFICATE-----\n";
        let reason = error_for(SslMode::VerifyFull, Some(not_der));
        assert!(
            reason.starts_with("a certificate in it is unusable"),
            "{reason}"
        );
    }

    #[test]
    fn without_a_bundle_every_mode_builds_on_the_builtin_roots() {
        for mode in [
            SslMode::Disable,
            SslMode::Prefer,
            SslMode::Require,
            SslMode::VerifyCa,
            SslMode::VerifyFull,
        ] {
            let connector = RustlsConnector::new(mode, &RootCerts::Builtin).expect("builds");
            assert_eq!(connector.config.alpn_protocols, [b"postgresql".to_vec()]);
        }
    }

    /// A certificate's outline: an opaque `tbsCertificate` of `body` bytes, the algorithm, and
    /// an empty signature.
    fn certificate(oid: &[u8], body: usize) -> Vec<u8> {
        let mut to_be_signed = vec![0x30];
        if body < 0x80 {
            to_be_signed.push(body as u8);
        } else {
            to_be_signed.extend([0x82, (body >> 8) as u8, body as u8]);
        }
        to_be_signed.extend(std::iter::repeat_n(0x05, body));
        let mut algorithm = vec![0x30, oid.len() as u8 + 2, 0x06, oid.len() as u8];
        algorithm.extend(oid);
        let content: Vec<u8> = [to_be_signed, algorithm, vec![0x03, 0x01, 0x00]].concat();
        let mut der = vec![0x30, 0x82, (content.len() >> 8) as u8, content.len() as u8];
        der.extend(content);
        der
    }

    #[test]
    fn the_end_point_hash_follows_the_signature_algorithm() {
        use sha2::Digest;
        let sha384_rsa = [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0c];
        let ecdsa_sha256 = [0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02];
        let sha1_rsa = [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x05];
        let ed25519 = [0x2b, 0x65, 0x70];
        for body in [3, 300] {
            let der = certificate(&sha384_rsa, body);
            assert_eq!(
                tls_server_end_point(&der),
                Some(sha2::Sha384::digest(&der).to_vec())
            );
            for oid in [&ecdsa_sha256[..], &sha1_rsa] {
                let der = certificate(oid, body);
                assert_eq!(
                    tls_server_end_point(&der),
                    Some(sha2::Sha256::digest(&der).to_vec())
                );
            }
            assert_eq!(tls_server_end_point(&certificate(&ed25519, body)), None);
        }
    }

    #[test]
    fn a_truncated_certificate_has_no_end_point_and_no_panic() {
        let der = certificate(&[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02], 300);
        for end in 0..der.len() {
            assert_eq!(tls_server_end_point(&der[..end]), None, "{end} bytes");
        }
    }
}
