//! txflow over HTTP.
//!
//! - [`contract`]: the wire types of `POST /predict`, shared by both sides.
//! - [`server`]: `txflow serve`, the classification service (axum).
//! - [`auth`]: bearer tokens for the service, re-read on SIGHUP.
//! - [`tls`]: the service's certificate, and its TLS listener.
//! - [`client`]: [`HttpClassifier`], the core's classifier port over that
//!   service, with batching, concurrency, retries and a circuit breaker.
//! - [`html`]: escaping text for the pages txflow writes.
//! - [`review`]: `txflow review serve`, the review page and its JSON API.
//! - [`push`]: pushing a batch run's metrics to a Prometheus Pushgateway.

pub mod auth;
pub mod client;
pub mod contract;
pub mod html;
pub mod push;
pub mod review;
pub mod server;
pub mod tls;

pub use auth::Tokens;
pub use client::{ClientConfig, HttpClassifier};
pub use server::{Auth, ServedModel, ServerConfig, serve};
