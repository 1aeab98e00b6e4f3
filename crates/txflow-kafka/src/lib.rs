//! txflow on the Kafka API.
//!
//! - [`event`]: the transaction event as it travels on the `transactions`
//!   topic (JSON), decoded into the core's raw record so that events are
//!   validated by exactly the rules the batch pipeline uses.

pub mod event;
