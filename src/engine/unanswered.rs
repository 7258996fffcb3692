//! The guard that keeps a committed claim from being held by nobody when the claim's
//! caller goes away between the ledger's `Acquired` and its answer.

use std::sync::Arc;

use super::Engine;
use crate::cache::HotTier;
use crate::domain::{FencingToken, RecordId};
use crate::ledger::Ledger;

/// An `ACQUIRED` the ledger committed that its caller has not been handed yet. If the
/// claim's future is dropped in between (its RPC was cancelled), nobody holds the
/// claim, so it is released, from a task of its own — as the ledgers do for a claim
/// that commits after its caller gave up (rule 5 of docs/PROTOCOL.md: never a claim in limbo).
pub(super) struct Unanswered {
    ledger: Arc<dyn Ledger>,
    hot: Arc<dyn HotTier>,
    held: Option<(RecordId, FencingToken)>,
}

impl Unanswered {
    pub(super) fn new(engine: &Engine, id: &RecordId, token: FencingToken) -> Self {
        Self {
            ledger: engine.ledger.clone(),
            hot: engine.hot.clone(),
            held: Some((id.clone(), token)),
        }
    }

    /// The answer is on its way to the caller.
    pub(super) fn answered(mut self) {
        self.held = None;
    }
}

impl Drop for Unanswered {
    fn drop(&mut self) {
        let Some((id, token)) = self.held.take() else {
            return;
        };
        let (ledger, hot) = (self.ledger.clone(), self.hot.clone());
        tokio::spawn(async move {
            if let Ok(true) = ledger.release_unheld(&id, token).await {
                let _ = hot.remove(&id).await;
                tracing::info!(%id, token = token.get(), "released a claim whose caller went away before its answer");
            }
        });
    }
}
