//! TLS for tally's own connections to its servers (PostgreSQL now).
//!
//! rustls with the ring provider, never OpenSSL or aws-lc: the static musl
//! image has no C library to link a TLS stack against. This module loads
//! trust roots and client identities from PEM files, builds client
//! configurations for the three levels of checking a server's certificate
//! (none, chain only, chain and name), and turns handshake failures into
//! reasons a person can act on.
//!
//! Nothing here ever puts a certificate, a key or a line of a PEM file into
//! an error: only paths, the setting that named them and a reason.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::verify_server_cert_signed_by_trust_anchor;
use rustls::crypto::{WebPkiSupportedAlgorithms, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{
    AlertDescription, CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore,
    SignatureScheme,
};

/// Makes ring the process's rustls provider. Another part of the process
/// may have installed it first; any installed provider is then kept.
pub fn install_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Where the certificates that vouch for a server come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Roots {
    /// A PEM file of CA certificates (a private CA).
    File(PathBuf),
    /// The public roots built into tally (Mozilla's set, as webpki-roots
    /// ships it), so a FROM-scratch image needs no CA bundle.
    System,
}

impl Roots {
    /// Loads the roots; `setting` names the parameter that gave them, for
    /// errors (`sslrootcert`).
    pub fn load(&self, setting: &str) -> anyhow::Result<RootCertStore> {
        match self {
            Roots::System => Ok(RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            }),
            Roots::File(path) => {
                let mut store = RootCertStore::empty();
                for cert in read_certificates(path, setting)? {
                    store.add(cert).map_err(|e| {
                        anyhow::anyhow!(
                            "{setting}={}: a certificate in it is not a usable CA certificate ({e})",
                            path.display()
                        )
                    })?;
                }
                Ok(store)
            }
        }
    }
}

impl fmt::Display for Roots {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Roots::File(path) => write!(f, "{}", path.display()),
            Roots::System => f.write_str("system"),
        }
    }
}

/// How much of a server's certificate is checked.
#[derive(Debug, Clone)]
pub enum Verify {
    /// Nothing: the connection is encrypted, but anyone in the middle can
    /// present any certificate.
    Nothing,
    /// The chain up to one of these roots, not the host name (a server
    /// whose certificate names another host, or no host, is accepted).
    Chain(Arc<RootCertStore>),
    /// The chain and that the certificate names the host connected to.
    ChainAndName(Arc<RootCertStore>),
}

/// A client certificate and its key, PEM files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientIdentity {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A client configuration that checks the server as `verify` says and,
/// with `identity`, presents that client certificate. `cert_setting` and
/// `key_setting` name the parameters of the identity's files, for errors.
pub fn client_config(
    verify: Verify,
    identity: Option<&ClientIdentity>,
    (cert_setting, key_setting): (&str, &str),
) -> anyhow::Result<ClientConfig> {
    install_provider();
    let builder = ClientConfig::builder();
    let builder = match verify {
        Verify::ChainAndName(roots) => builder.with_root_certificates(roots),
        Verify::Chain(roots) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Unnamed::new(Some(roots)))),
        Verify::Nothing => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Unnamed::new(None))),
    };
    match identity {
        None => Ok(builder.with_no_client_auth()),
        Some(identity) => {
            let chain = read_certificates(&identity.cert, cert_setting)?;
            let key = read_private_key(&identity.key, key_setting)?;
            builder.with_client_auth_cert(chain, key).map_err(|_| {
                anyhow::anyhow!(
                    "{key_setting}={}: the key does not match the certificate in {cert_setting}={} \
                     or is of a kind tally cannot use",
                    identity.key.display(),
                    identity.cert.display()
                )
            })
        }
    }
}

/// The certificates of a PEM file, at least one.
fn read_certificates(path: &Path, setting: &str) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let pem = std::fs::read(path)
        .with_context(|| format!("{setting}={}: cannot read the file", path.display()))?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        // The parser's own message may quote a line of the file.
        .map_err(|_| anyhow::anyhow!("{setting}={}: the file is not valid PEM", path.display()))?;
    if certs.is_empty() {
        bail!(
            "{setting}={}: the file holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
            path.display()
        );
    }
    Ok(certs)
}

/// The private key of a PEM file (PKCS#8, PKCS#1 or SEC1).
fn read_private_key(path: &Path, setting: &str) -> anyhow::Result<PrivateKeyDer<'static>> {
    let pem = std::fs::read(path)
        .with_context(|| format!("{setting}={}: cannot read the file", path.display()))?;
    // The parser's own message may quote a line of the key: never shown.
    PrivateKeyDer::from_pem_slice(&pem).map_err(|_| {
        anyhow::anyhow!(
            "{setting}={}: the file holds no PEM private key",
            path.display()
        )
    })
}

/// The rustls error inside an error chain (a handshake that failed under
/// a database driver's or an I/O error), if there is one.
pub fn rustls_error<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    let mut next = Some(error);
    while let Some(e) = next {
        if let Some(found) = e.downcast_ref::<rustls::Error>() {
            return Some(found);
        }
        // `io::Error::source` skips the error it wraps: look inside.
        if let Some(inner) = e
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref)
            && let Some(found) = rustls_error(inner)
        {
            return Some(found);
        }
        next = e.source();
    }
    None
}

/// Why a handshake failed, in words that show no certificate's contents:
/// a name mismatch says which host was expected, not which names the
/// certificate holds.
pub fn reason(error: &rustls::Error) -> String {
    use CertificateError as C;
    match error {
        rustls::Error::InvalidCertificate(cert) => match cert {
            C::UnknownIssuer => {
                "the server's certificate is not signed by a trusted CA (unknown issuer)".into()
            }
            C::NotValidForName => {
                "the server's certificate does not name the host (name mismatch)".into()
            }
            C::NotValidForNameContext { expected, .. } => format!(
                "the server's certificate does not name the host {} (name mismatch)",
                host_of(expected)
            ),
            C::Expired | C::ExpiredContext { .. } => "the server's certificate has expired".into(),
            C::NotValidYet | C::NotValidYetContext { .. } => {
                "the server's certificate is not valid yet".into()
            }
            C::BadSignature => "the server's certificate has a bad signature".into(),
            C::InvalidPurpose | C::InvalidPurposeContext { .. } => {
                "the server's certificate is not for servers (extended key usage)".into()
            }
            other => format!("the server's certificate was refused ({other:?})"),
        },
        rustls::Error::AlertReceived(alert) => match alert {
            AlertDescription::CertificateRequired => {
                "the server requires a client certificate".into()
            }
            AlertDescription::UnknownCA
            | AlertDescription::BadCertificate
            | AlertDescription::CertificateUnknown
            | AlertDescription::UnsupportedCertificate
            | AlertDescription::AccessDenied => {
                format!("the server refused tally's client certificate ({alert:?})")
            }
            other => format!("the server ended the TLS handshake ({other:?})"),
        },
        other => format!("the TLS handshake failed ({other})"),
    }
}

fn host_of(name: &ServerName<'_>) -> String {
    match name {
        ServerName::DnsName(dns) => format!("{:?}", dns.as_ref()),
        ServerName::IpAddress(ip) => format!("{:?}", std::net::IpAddr::from(*ip).to_string()),
        other => format!("{other:?}"),
    }
}

/// Checks what libpq checks without the name: with roots, the chain up to
/// them and the certificate's purpose (`verify-ca`); without, nothing
/// (`require`, `prefer`). Either way the server must hold the key of the
/// certificate it presented, as a handshake must. rustls has no such
/// verifier (its WebPKI one always checks the name), so this one calls the
/// chain check that the WebPKI verifier is built on and stops there.
#[derive(Debug)]
struct Unnamed {
    roots: Option<Arc<RootCertStore>>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl Unnamed {
    fn new(roots: Option<Arc<RootCertStore>>) -> Self {
        Unnamed {
            roots,
            algorithms: provider_algorithms(),
        }
    }
}

impl ServerCertVerifier for Unnamed {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Some(roots) = &self.roots {
            let cert = ParsedCertificate::try_from(end_entity)?;
            verify_server_cert_signed_by_trust_anchor(
                &cert,
                roots,
                intermediates,
                now,
                self.algorithms.all,
            )?;
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// The signature algorithms of the installed provider (ring's, unless
/// another was installed first).
fn provider_algorithms() -> WebPkiSupportedAlgorithms {
    install_provider();
    rustls::crypto::CryptoProvider::get_default()
        .map(|p| p.signature_verification_algorithms)
        .unwrap_or_else(|| {
            rustls::crypto::ring::default_provider().signature_verification_algorithms
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_file_names_the_setting_and_the_path() {
        let err = Roots::File("/nonexistent/ca.crt".into())
            .load("sslrootcert")
            .unwrap_err();
        let message = format!("{err:#}");
        assert!(
            message.starts_with("sslrootcert=/nonexistent/ca.crt: cannot read the file"),
            "{message}"
        );
    }

    #[test]
    fn a_file_without_certificates_is_refused_without_quoting_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("junk.pem");
        std::fs::write(
            &path,
            "-----BEGIN SECRET-----\nc2VjcmV0\n-----END SECRET-----\n",
        )
        .unwrap();
        let message = format!(
            "{:#}",
            Roots::File(path.clone()).load("sslrootcert").unwrap_err()
        );
        assert_eq!(
            message,
            format!(
                "sslrootcert={}: the file holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
                path.display()
            )
        );
        let key = read_private_key(&path, "sslkey").unwrap_err().to_string();
        assert_eq!(
            key,
            format!(
                "sslkey={}: the file holds no PEM private key",
                path.display()
            )
        );
        assert!(!key.contains("c2VjcmV0") && !message.contains("c2VjcmV0"));
    }

    #[test]
    fn the_system_roots_are_built_in() {
        let roots = Roots::System.load("sslrootcert").unwrap();
        assert!(roots.len() > 100, "{} roots", roots.len());
    }

    #[test]
    fn reasons_name_the_expected_host_only() {
        let name = ServerName::try_from("db.example").unwrap().to_owned();
        let error = rustls::Error::InvalidCertificate(CertificateError::NotValidForNameContext {
            expected: name,
            presented: vec!["DnsName(\"other.internal\")".into()],
        });
        assert_eq!(
            reason(&error),
            "the server's certificate does not name the host \"db.example\" (name mismatch)"
        );
        assert_eq!(
            reason(&rustls::Error::InvalidCertificate(
                CertificateError::UnknownIssuer
            )),
            "the server's certificate is not signed by a trusted CA (unknown issuer)"
        );
    }

    #[test]
    fn the_rustls_error_is_found_inside_io_errors() {
        let io = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer),
        );
        let found = rustls_error(&io).unwrap();
        assert_eq!(
            found,
            &rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer)
        );
    }
}
