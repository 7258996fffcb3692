//! Forgetting a record, and hearing of the records other sidecars forgot: the delete
//! notifies the channel `onceward_forget` in its own statement (Postgres delivers it on
//! commit), and every sidecar on the ledger listens to it.

use std::time::Duration;

use sqlx::postgres::PgListener;

use super::sql::{FORGET, RECORD_EXISTS};
use super::{PostgresLedger, once_more_if_the_connection_fails};
use crate::domain::{IdempotencyKey, Namespace, RecordId};
use crate::ledger::{ForgetHook, Forgotten, LedgerError};

/// The notification channel.
const CHANNEL: &str = "onceward_forget";
/// The pause before listening again after the listener failed.
const RELISTEN_AFTER: Duration = Duration::from_millis(500);

impl PostgresLedger {
    pub(super) async fn forget_record(
        &self,
        id: &RecordId,
        force: bool,
    ) -> Result<Forgotten, LedgerError> {
        let deleted = once_more_if_the_connection_fails(|| {
            sqlx::query(FORGET)
                .bind(id.namespace.as_str())
                .bind(id.key.as_str())
                .bind(force)
                .fetch_optional(&self.pool)
        })
        .await?;
        if deleted.is_some() {
            return Ok(Forgotten::Deleted);
        }
        let exists: bool = once_more_if_the_connection_fails(|| {
            sqlx::query_scalar(RECORD_EXISTS)
                .bind(id.namespace.as_str())
                .bind(id.key.as_str())
                .fetch_one(&self.pool)
        })
        .await?;
        Ok(if exists {
            Forgotten::Held
        } else {
            Forgotten::Absent
        })
    }

    /// Listens for forgotten records until aborted. Whenever the listener may have
    /// missed notifications (at start, after its connection failed), `hook(None)`
    /// drops every in-memory copy: nothing forgotten meanwhile survives.
    pub(super) fn watch(&self, hook: ForgetHook) -> tokio::task::JoinHandle<()> {
        let pool = self.pool.clone();
        tokio::spawn(async move {
            loop {
                let listening = async {
                    let mut listener = PgListener::connect_with(&pool).await?;
                    listener.listen(CHANNEL).await?;
                    Ok::<_, sqlx::Error>(listener)
                };
                let mut listener = match listening.await {
                    Ok(listener) => listener,
                    Err(error) => {
                        tracing::warn!(%error, "cannot listen for forgotten records; trying again");
                        tokio::time::sleep(RELISTEN_AFTER).await;
                        continue;
                    }
                };
                hook(None);
                loop {
                    match listener.try_recv().await {
                        Ok(Some(notification)) => hook(parse(notification.payload())),
                        // The connection was lost; the next call listens again.
                        Ok(None) => hook(None),
                        Err(error) => {
                            tracing::warn!(%error, "listening for forgotten records failed");
                            hook(None);
                            break;
                        }
                    }
                }
                tokio::time::sleep(RELISTEN_AFTER).await;
            }
        })
    }
}

/// `namespace:key` (a namespace never holds `:`); `None` for anything else, which
/// drops every copy rather than keep one that should have gone.
fn parse(payload: &str) -> Option<RecordId> {
    let (namespace, key) = payload.split_once(':')?;
    Some(RecordId {
        namespace: Namespace::try_from(namespace.to_owned()).ok()?,
        key: IdempotencyKey::try_from(key.to_owned()).ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn a_payload_is_a_namespace_and_a_key_that_may_hold_colons() {
        let id = parse("payments:order:42").unwrap();
        assert_eq!(
            (id.namespace.as_str(), id.key.as_str()),
            ("payments", "order:42")
        );
        assert!(parse("no-colon").is_none());
        assert!(parse("bad namespace:k").is_none());
    }
}
