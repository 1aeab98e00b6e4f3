//! TLS for `txflow serve` (rustls): the certificate chain and key in PEM,
//! and a listener whose handshakes run beside the accept loop, so a slow
//! or broken client never holds up the others.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// A handshake not finished in this time is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the certificate or key cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading the certificate {}: {cause}; give a PEM file (-----BEGIN CERTIFICATE-----) with --tls-cert", .file.display())]
    Cert {
        file: PathBuf,
        cause: rustls::pki_types::pem::Error,
    },
    #[error("the certificate file {} holds no certificate; give a PEM file with --tls-cert", .file.display())]
    NoCert { file: PathBuf },
    #[error("reading the private key {}: {cause}; give a PEM key (PKCS#8, PKCS#1 or SEC1) with --tls-key", .file.display())]
    Key {
        file: PathBuf,
        cause: rustls::pki_types::pem::Error,
    },
    #[error("the certificate {} and key {} do not go together: {cause}", .cert.display(), .key.display())]
    Mismatch {
        cert: PathBuf,
        key: PathBuf,
        cause: rustls::Error,
    },
}

/// The server side of TLS: the chain (leaf first) and its private key.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|cause| TlsError::Cert {
            file: cert.to_owned(),
            cause,
        })?;
    if chain.is_empty() {
        return Err(TlsError::NoCert {
            file: cert.to_owned(),
        });
    }
    let private = PrivateKeyDer::from_pem_file(key).map_err(|cause| TlsError::Key {
        file: key.to_owned(),
        cause,
    })?;
    let mismatch = |cause| TlsError::Mismatch {
        cert: cert.to_owned(),
        key: key.to_owned(),
        cause,
    };
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(mismatch)?
    .with_no_client_auth()
    .with_single_cert(chain, private)
    .map_err(mismatch)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Accepts TCP connections and hands axum those whose TLS handshake
/// succeeded.
#[derive(Debug)]
pub(crate) struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
    accepting: tokio::task::JoinHandle<()>,
}

impl TlsListener {
    pub(crate) fn new(listener: TcpListener, config: Arc<rustls::ServerConfig>) -> TlsListener {
        let local = listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        let acceptor = TlsAcceptor::from(config);
        let (sender, ready) = mpsc::channel(64);
        let accepting = tokio::spawn(async move {
            loop {
                let (stream, peer) = match listener.accept().await {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // Out of file descriptors and the like: wait, go on.
                        tracing::warn!(error = %e, "accepting a connection");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let acceptor = acceptor.clone();
                let sender = sender.clone();
                tokio::spawn(async move {
                    let failure = match tokio::time::timeout(
                        HANDSHAKE_TIMEOUT,
                        acceptor.accept(stream),
                    )
                    .await
                    {
                        Ok(Ok(tls)) => {
                            let _ = sender.send((tls, peer)).await;
                            return;
                        }
                        Ok(Err(e)) => e.to_string(),
                        Err(_) => "timed out".to_owned(),
                    };
                    metrics::counter!(crate::server::metric::TLS_HANDSHAKE_FAILURES).increment(1);
                    tracing::debug!(%peer, error = %failure, "TLS handshake failed");
                });
            }
        });
        TlsListener {
            ready,
            local,
            accepting,
        }
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(accepted) => accepted,
            // The accept loop ended (aborted): nothing more will come.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.local)
    }
}

/// A reqwest client builder for `url`, with rustls's provider installed.
/// A plain `http://` URL verifies no certificate, so the system's roots
/// are not loaded for it (reading them cost 3 to 4 ms of every run's
/// start-up, measured against `--classifier reference`).
pub(crate) fn client_builder(url: &reqwest::Url) -> reqwest::ClientBuilder {
    default_tls_provider();
    let builder = reqwest::Client::builder();
    if url.scheme() == "http" {
        builder.tls_certs_only(Vec::new())
    } else {
        builder
    }
}

/// rustls's process-wide provider, which reqwest uses: *ring*, unless the
/// application installed one first (txflow's binary does the same).
fn default_tls_provider() {
    // Fails only when a provider is installed already: the goal.
    let _ = rustls::crypto::ring::default_provider().install_default();
}
