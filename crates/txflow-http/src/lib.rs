//! txflow over HTTP.
//!
//! - [`contract`]: the wire types of `POST /predict`, shared by both sides.
//! - [`server`]: `txflow serve`, the classification service (axum).
//! - [`client`]: [`HttpClassifier`], the core's classifier port over that
//!   service, with batching, concurrency, retries and a circuit breaker.

pub mod client;
pub mod contract;
pub mod server;

pub use client::{ClientConfig, HttpClassifier};
pub use server::{Model, ServerConfig, serve};
