//! One database session that survives the server going away.
//!
//! Every call goes through [`Session::retrying`]: when the connection is
//! lost (the server restarted, stopped, or the network broke) the call waits
//! with the core's [`OutagePolicy`], reconnects (re-creating the session's
//! staging tables) and runs again. Errors in the data or the SQL are not
//! retried. While the database is down the [`Health`] handle says so and a
//! metric counts the outage.

use std::future::Future;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{Mutex, OwnedMutexGuard};
use tokio_postgres::Client;
use txflow_core::resilience::{OutagePolicy, RetryDecision, jitter};

use crate::error::{Error, Result};
use crate::metric;
use crate::target::Target;

/// Whether the database answered the last call; shared with `/health`.
#[derive(Debug, Clone)]
pub struct Health(Arc<AtomicBool>);

impl Health {
    fn new() -> Health {
        Health(Arc::new(AtomicBool::new(true)))
    }

    /// False from the first failed call of an outage to the first call that
    /// succeeds again.
    pub fn is_up(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    fn set(&self, up: bool) {
        self.0.store(up, Ordering::Relaxed);
        metrics::gauge!(metric::UP).set(if up { 1.0 } else { 0.0 });
    }
}

/// A connection that is re-established on demand.
pub(crate) struct Session {
    target: Target,
    client: Arc<Mutex<Option<Client>>>,
    outage: OutagePolicy,
    health: Health,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("target", &self.target)
            .field("outage", &self.outage)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// Wraps a connected client; `target` is used to reconnect.
    pub(crate) fn new(target: Target, client: Client, outage: OutagePolicy) -> Session {
        let health = Health::new();
        metrics::gauge!(metric::CONNECTIONS).increment(1.0);
        health.set(true);
        Session {
            target,
            client: Arc::new(Mutex::new(Some(client))),
            outage,
            health,
        }
    }

    /// Another connection to the same database, sharing this one's outage
    /// policy and health.
    pub(crate) fn sibling(&self, client: Client) -> Session {
        metrics::gauge!(metric::CONNECTIONS).increment(1.0);
        Session {
            target: self.target.clone(),
            client: Arc::new(Mutex::new(Some(client))),
            outage: self.outage,
            health: self.health.clone(),
        }
    }

    pub(crate) fn target(&self) -> &Target {
        &self.target
    }

    pub(crate) fn health(&self) -> Health {
        self.health.clone()
    }

    pub(crate) fn set_max_outage(&mut self, max_outage: Duration) {
        self.outage.max_outage = max_outage;
    }

    /// Runs `op` on a live connection; while the database is unreachable,
    /// waits, reconnects and runs it again, for as long as the outage policy
    /// allows. `op` must be safe to repeat (every write here is an
    /// idempotent upsert in one transaction).
    pub(crate) async fn retrying<T, F, Fut>(&self, what: &'static str, mut op: F) -> Result<T>
    where
        F: FnMut(Live) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let mut attempt = 0u32;
        let mut down_since: Option<Instant> = None;
        loop {
            let started = Instant::now();
            let result = match self.live().await {
                Ok(live) => op(live).await,
                Err(e) => Err(e),
            };
            if result.is_ok() {
                metrics::histogram!(metric::OPERATION_SECONDS, "operation" => what)
                    .record(started.elapsed().as_secs_f64());
            }
            let error = match result {
                Ok(value) => {
                    if let Some(since) = down_since {
                        self.health.set(true);
                        tracing::info!(what, down_for = ?since.elapsed(), attempts = attempt,
                            "the database is back");
                    }
                    return Ok(value);
                }
                Err(e) if e.is_unavailable() => e,
                Err(e) => return Err(e),
            };
            // Drop the broken connection; the next attempt makes a new one.
            if self.client.lock().await.take().is_some() {
                metrics::gauge!(metric::CONNECTIONS).decrement(1.0);
            }
            attempt += 1;
            let since = *down_since.get_or_insert_with(|| {
                self.health.set(false);
                metrics::counter!(metric::OUTAGES).increment(1);
                Instant::now()
            });
            match self
                .outage
                .after_failure(attempt, since.elapsed(), jitter())
            {
                RetryDecision::RetryAfter(delay) => {
                    tracing::warn!(what, error = %error, retry_in = ?delay, attempt,
                        "the database is unreachable; waiting");
                    tokio::time::sleep(delay).await;
                }
                RetryDecision::GiveUp => {
                    return Err(Error::Outage {
                        what,
                        waited: since.elapsed(),
                        last: Box::new(error),
                    });
                }
            }
        }
    }

    /// The connection, made anew when there is none or it closed; held
    /// exclusively until the [`Live`] is dropped.
    async fn live(&self) -> Result<Live> {
        let mut slot = Arc::clone(&self.client).lock_owned().await;
        if slot.as_ref().is_none_or(Client::is_closed) {
            let client = self.target.connect().await?;
            metrics::counter!(metric::RECONNECTS).increment(1);
            if slot.is_none() {
                metrics::gauge!(metric::CONNECTIONS).increment(1.0);
            }
            tracing::info!(database = %self.target.shown(), "connected to the database again");
            *slot = Some(client);
        }
        Ok(Live(slot))
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if self.client.try_lock().is_ok_and(|slot| slot.is_some()) {
            metrics::gauge!(metric::CONNECTIONS).decrement(1.0);
        }
    }
}

/// A live connection, held exclusively (owned, so that the futures using it
/// need no borrowed lifetime and stay `Send`).
pub(crate) struct Live(OwnedMutexGuard<Option<Client>>);

impl Deref for Live {
    type Target = Client;

    fn deref(&self) -> &Client {
        match &*self.0 {
            Some(client) => client,
            None => unreachable!("a Live is only made around a connected client"),
        }
    }
}

impl DerefMut for Live {
    fn deref_mut(&mut self) -> &mut Client {
        match &mut *self.0 {
            Some(client) => client,
            None => unreachable!("a Live is only made around a connected client"),
        }
    }
}
