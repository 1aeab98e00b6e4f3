//! The process's TLS cryptography. txflow's libraries do not pick one: the
//! binary installs *ring* as rustls's process default before anything
//! opens a connection (HTTPS clients, S3, OTLP; PostgreSQL and the
//! service's TLS name it themselves). *ring* rather than aws-lc: the same
//! TLS 1.2 and 1.3 suites, X25519 and the NIST curves (not the
//! post-quantum hybrid X25519MLKEM768), and a build 32 CPU-seconds shorter
//! (README, Development). Kafka's TLS is librdkafka's (OpenSSL).

/// Installs *ring* as the process's rustls provider (once; later calls
/// keep the first).
pub fn install_crypto() {
    // Fails only when a provider is installed already, which is the goal.
    let _ = rustls::crypto::ring::default_provider().install_default();
}
