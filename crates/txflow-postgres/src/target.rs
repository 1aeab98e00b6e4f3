//! Where and how txflow reaches PostgreSQL: libpq's connection URL with
//! its `sslmode` and `sslrootcert` parameters, TLS by rustls.
//!
//! | `sslmode` | TLS | the server's certificate |
//! |---|---|---|
//! | `disable` | never | — |
//! | `prefer` (default) | when the server offers it | not checked |
//! | `require` | always | not checked, unless a CA is given (then as `verify-ca`) |
//! | `verify-ca` | always | signed by the CA |
//! | `verify-full` | always | signed by the CA and naming the host |
//!
//! The CA comes from `sslrootcert=FILE` (PEM), `sslrootcert=system` (the
//! operating system's store) or, as in libpq, `~/.postgresql/root.crt`.
//! Every command that opens a database goes through [`Target`].

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio_postgres::Client;
use tokio_postgres::config::SslMode as DriverSslMode;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::error::{Error, Result};

/// libpq's `sslmode` values that txflow honours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl FromStr for SslMode {
    type Err = ();

    fn from_str(s: &str) -> std::result::Result<SslMode, ()> {
        Ok(match s {
            "disable" => SslMode::Disable,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            _ => return Err(()),
        })
    }
}

/// Client certificates are not supported yet: refused by name rather than
/// ignored, so that nobody believes they are sent.
const UNSUPPORTED_PARAMETERS: [&str; 4] = ["sslcert", "sslkey", "sslpassword", "sslcrl"];

/// A parsed database URL: what to connect to, with which TLS, and how to
/// name it in messages (password hidden).
#[derive(Clone)]
pub struct Target {
    config: Arc<tokio_postgres::Config>,
    tls: MakeRustlsConnect,
    mode: SslMode,
    shown: String,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("url", &self.shown)
            .field("sslmode", &self.mode)
            .finish_non_exhaustive()
    }
}

impl Target {
    /// Parses `postgres://user:password@host:port/db?sslmode=…&sslrootcert=…`
    /// (libpq's URL form; other driver parameters such as
    /// `connect_timeout` or `application_name` pass through). Loads the CA
    /// file now, so that a wrong path is reported before anything runs.
    pub fn parse(url: &str) -> Result<Target> {
        let shown = crate::redact(url);
        let invalid = |problem: String| Error::Config {
            url: shown.clone(),
            problem,
        };
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(invalid(
                "not a postgres:// URL; write postgres://user:password@host:port/database".into(),
            ));
        }
        let (base, query) = url.split_once('?').unwrap_or((url, ""));
        let mut mode = SslMode::Prefer;
        let mut root: Option<String> = None;
        let mut passed = url::form_urlencoded::Serializer::new(String::new());
        for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
            match key.as_ref() {
                "sslmode" => {
                    mode = value.parse().map_err(|()| {
                        invalid(format!(
                            "sslmode={value} is not one of disable, prefer, require, verify-ca, verify-full"
                        ))
                    })?;
                }
                "sslrootcert" => root = Some(value.into_owned()),
                k if UNSUPPORTED_PARAMETERS.contains(&k) => {
                    return Err(invalid(format!(
                        "{k}: client certificates are not supported yet; authenticate with a password (user:password@ in the URL)"
                    )));
                }
                _ => {
                    passed.append_pair(&key, &value);
                }
            }
        }
        let passed = passed.finish();
        let driver_url = if passed.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{passed}")
        };
        let mut config = tokio_postgres::Config::from_str(&driver_url).map_err(|e| {
            invalid(
                std::error::Error::source(&e)
                    .map_or_else(|| e.to_string(), |cause| format!("{e}: {cause}")),
            )
        })?;
        let roots = match root.as_deref() {
            Some(file) => Some(load_roots(file).map_err(invalid)?),
            None => match default_root_file() {
                Some(file) => Some(load_roots(&file.to_string_lossy()).map_err(invalid)?),
                None => None,
            },
        };
        let verifier: Arc<dyn ServerCertVerifier> = match (mode, roots) {
            (SslMode::VerifyCa | SslMode::VerifyFull, None) => {
                return Err(invalid(format!(
                    "sslmode={} needs the CA that signed the server's certificate: add sslrootcert=/path/to/ca.pem (or sslrootcert=system)",
                    mode_name(mode)
                )));
            }
            (SslMode::VerifyFull, Some(roots)) => webpki(roots).map_err(invalid)?,
            (SslMode::VerifyCa | SslMode::Require, Some(roots)) => Arc::new(Lenient {
                chain: Some(webpki(roots).map_err(invalid)?),
                provider: provider(),
            }),
            (SslMode::Disable | SslMode::Prefer | SslMode::Require, _) => Arc::new(Lenient {
                chain: None,
                provider: provider(),
            }),
        };
        config.ssl_mode(match mode {
            SslMode::Disable => DriverSslMode::Disable,
            SslMode::Prefer => DriverSslMode::Prefer,
            _ => DriverSslMode::Require,
        });
        let tls = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| invalid(format!("TLS set-up: {e}")))?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        Ok(Target {
            config: Arc::new(config),
            tls: MakeRustlsConnect::new(tls),
            mode,
            shown,
        })
    }

    /// The URL with its password hidden, for messages and logs.
    pub fn shown(&self) -> &str {
        &self.shown
    }

    /// Connects and drives the connection on the current Tokio runtime.
    pub async fn connect(&self) -> Result<Client> {
        let (client, connection) = self
            .config
            .connect(self.tls.clone())
            .await
            .map_err(|cause| Error::connect(&self.shown, self.mode, cause))?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::error!(error = %e, "PostgreSQL connection closed");
            }
        });
        Ok(client)
    }
}

pub(crate) fn mode_name(mode: SslMode) -> &'static str {
    match mode {
        SslMode::Disable => "disable",
        SslMode::Prefer => "prefer",
        SslMode::Require => "require",
        SslMode::VerifyCa => "verify-ca",
        SslMode::VerifyFull => "verify-full",
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// libpq's default CA file, when it exists.
fn default_root_file() -> Option<PathBuf> {
    let home = std::env::var_os("HOME")?;
    let file = Path::new(&home).join(".postgresql/root.crt");
    file.is_file().then_some(file)
}

fn load_roots(file: &str) -> std::result::Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    if file == "system" {
        let found = rustls_native_certs::load_native_certs();
        let (added, _) = roots.add_parsable_certificates(found.certs);
        if added == 0 {
            return Err(
                "sslrootcert=system: the operating system's certificate store is empty or unreadable; give sslrootcert=/path/to/ca.pem"
                    .into(),
            );
        }
        return Ok(roots);
    }
    let certs = CertificateDer::pem_file_iter(file)
        .and_then(|certs| certs.collect::<std::result::Result<Vec<_>, _>>())
        .map_err(|e| format!("sslrootcert={file}: cannot read PEM certificates: {e}"))?;
    if certs.is_empty() {
        return Err(format!(
            "sslrootcert={file}: no certificate in the file; give the CA's PEM file (-----BEGIN CERTIFICATE-----)"
        ));
    }
    for cert in certs {
        roots
            .add(cert)
            .map_err(|e| format!("sslrootcert={file}: not a usable CA certificate: {e}"))?;
    }
    Ok(roots)
}

fn webpki(roots: RootCertStore) -> std::result::Result<Arc<WebPkiServerVerifier>, String> {
    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
        .build()
        .map_err(|e| format!("TLS set-up: {e}"))
}

/// The verifier of `prefer`, `require` and `verify-ca`, as in libpq: with a
/// CA (`verify-ca`, or `require` given one) the chain must lead to it, the
/// name is not checked; without one (`prefer`, `require`) the channel is
/// encrypted and the server not authenticated. The handshake's signatures
/// are checked either way. (`verify-full` uses rustls's own verifier.)
#[derive(Debug)]
struct Lenient {
    chain: Option<Arc<WebPkiServerVerifier>>,
    provider: Arc<CryptoProvider>,
}

impl Lenient {
    fn algorithms(&self) -> &WebPkiSupportedAlgorithms {
        &self.provider.signature_verification_algorithms
    }
}

impl ServerCertVerifier for Lenient {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        let Some(chain) = &self.chain else {
            return Ok(ServerCertVerified::assertion());
        };
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
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, self.algorithms())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, self.algorithms())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms().supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn txflow_reads_the_tls_parameters_and_passes_the_others() {
        let t = Target::parse(
            "postgres://u:pw@h:5/db?sslmode=require&application_name=x&connect_timeout=3",
        )
        .expect("valid");
        assert_eq!(t.mode, SslMode::Require);
        assert_eq!(t.config.get_application_name(), Some("x"));
        assert_eq!(t.config.get_ssl_mode(), DriverSslMode::Require);
        assert_eq!(
            t.shown(),
            "postgres://u:***@h:5/db?sslmode=require&application_name=x&connect_timeout=3"
        );
    }

    #[test]
    fn prefer_is_the_default() {
        let t = Target::parse("postgres://h/db").expect("valid");
        assert_eq!(t.mode, SslMode::Prefer);
        assert_eq!(t.config.get_ssl_mode(), DriverSslMode::Prefer);
    }

    #[test]
    fn mistakes_name_the_parameter_and_the_fix_never_the_password() {
        let err = |url: &str| Target::parse(url).expect_err("refused").to_string();
        let e = err("postgres://u:pw@h/db?sslmode=verify_full");
        assert!(e.contains("sslmode=verify_full is not one of"), "{e}");
        assert!(!e.contains("pw@"), "{e}");
        let e = err("postgres://u:pw@h/db?sslmode=verify-full");
        assert!(e.contains("add sslrootcert="), "{e}");
        let e = err("postgres://u:pw@h/db?sslmode=verify-ca&sslrootcert=/nonexistent/ca.pem");
        assert!(
            e.contains("sslrootcert=/nonexistent/ca.pem: cannot read"),
            "{e}"
        );
        let e = err("postgres://u:pw@h/db?sslcert=/c.pem");
        assert!(e.contains("client certificates are not supported"), "{e}");
        let e = err("postgres://u:pw@h/db?nonsense=1");
        assert!(e.contains("nonsense"), "{e}");
        assert!(!e.contains(":pw"), "{e}");
    }
}
