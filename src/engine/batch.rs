//! `ClaimBatch` and `CompleteBatch`: the single RPCs' steps for many keys of one
//! namespace at once — one hot-tier pipeline for the lookups, one ledger batch (the
//! batch writer takes its items together, with any single claims queued meanwhile),
//! then every item settled exactly as its single RPC would be.
//!
//! The keys of a batch are distinct (the edge refuses a batch that names one twice),
//! so no item can see another's effect: deciding them together is deciding them one
//! after another, in request order.
//!
//! **Nothing is half-done.** A claim batch whose ledger call fails fails whole with
//! `UNAVAILABLE`, and any item the ledger acquired before the failure is released
//! (nobody will be told it holds it), like a single claim whose caller went away. Every
//! `ACQUIRED` of a batch stays guarded until the whole batch is answered, so a
//! cancelled call leaves no claim behind either. A completion batch may commit some
//! items before it fails; retrying it is safe, as a completion retried with its token
//! changes nothing.

use std::time::Instant;

use futures_util::future::join_all;

use super::answers::completed_entry;
use super::unanswered::Unanswered;
use super::{ClaimCommand, CompleteCommand, Engine, EngineError, Guard, HotLookup, Pending};
use crate::cache::Write;
use crate::domain::{ClaimAnswer, Completion};
use crate::ledger::{BatchCompletion, ClaimDecision, CompleteDecision, NewClaim};
use crate::metrics;

impl Engine {
    /// Claims every key of `commands` (distinct keys); one answer per command, in
    /// order, each what [`claim`](Self::claim) would have answered.
    pub async fn claim_batch(
        &self,
        commands: Vec<ClaimCommand>,
    ) -> Result<Vec<ClaimAnswer>, EngineError> {
        let pending: Vec<Pending> = commands
            .into_iter()
            .map(|command| self.pending(command))
            .collect();

        // Step 1, for every key in one round trip.
        let writes: Vec<Write<'_>> = pending
            .iter()
            .map(|pending| Write {
                id: &pending.claim.id,
                entry: &pending.tentative,
                ttl: pending.tentative_ttl(),
            })
            .collect();
        let looked = self.hot.claim_many(&writes).await;
        let mut answers: Vec<Option<ClaimAnswer>> = Vec::with_capacity(pending.len());
        let mut asked: Vec<(usize, HotLookup)> = Vec::new();
        for (index, (item, looked)) in pending.iter().zip(looked).enumerate() {
            match self.read_hot(item, looked) {
                Ok(answer) => {
                    self.audit_claim(item, &answer);
                    answers.push(Some(answer));
                }
                Err(hot) => {
                    answers.push(None);
                    asked.push((index, hot));
                }
            }
        }

        // Step 2: the rest go to the ledger together.
        if !asked.is_empty() {
            let claims: Vec<NewClaim> = asked
                .iter()
                .map(|&(index, _)| pending[index].claim.clone())
                .collect();
            let asked_at = Instant::now();
            let decided = self
                .ledger_call("claim", async { Ok(self.ledger.claim_many(&claims).await) })
                .await;
            let abandon_all = || {
                join_all(
                    asked
                        .iter()
                        .map(|&(index, hot)| self.abandon(&pending[index], hot)),
                )
            };
            let decisions = match decided {
                Ok(decisions) => decisions,
                Err(error) => {
                    abandon_all().await;
                    return Err(error);
                }
            };
            // Held for the batch: released if it fails or its caller goes away.
            let held: Vec<Unanswered> = asked
                .iter()
                .zip(&decisions)
                .filter_map(|(&(index, _), decision)| match decision {
                    Ok(ClaimDecision::Acquired { token, .. }) => {
                        Some(Unanswered::new(self, &pending[index].claim.id, *token))
                    }
                    _ => None,
                })
                .collect();
            let decisions = match decisions.into_iter().collect::<Result<Vec<_>, _>>() {
                Ok(decisions) => decisions,
                Err(error) => {
                    abandon_all().await;
                    drop(held);
                    return Err(error.into());
                }
            };

            // Step 3, for every item at once.
            let settled = join_all(
                asked
                    .iter()
                    .zip(decisions)
                    .map(|(&(index, hot), decision)| {
                        self.settle(&pending[index], hot, asked_at, decision, Guard::Batch)
                    }),
            )
            .await;
            for (&(index, _), answer) in asked.iter().zip(settled) {
                self.audit_claim(&pending[index], &answer);
                answers[index] = Some(answer);
            }
            held.into_iter().for_each(Unanswered::answered);
        }
        Ok(answers.into_iter().flatten().collect())
    }

    /// Completes every claim of `commands` (distinct keys); one result per command, in
    /// order: the completion, or [`EngineError::NotHolder`] for a token that is not the
    /// holder's. A ledger that fails fails the whole call.
    pub async fn complete_batch(
        &self,
        commands: Vec<CompleteCommand>,
    ) -> Result<Vec<Result<Completion, EngineError>>, EngineError> {
        let ids: Vec<_> = commands.iter().map(|command| command.id.clone()).collect();
        let completions: Vec<BatchCompletion> = commands
            .into_iter()
            .map(|command| BatchCompletion {
                id: command.id,
                token: command.token,
                response: command.response,
                retention: command.retention,
            })
            .collect();
        let asked_at = Instant::now();
        let decisions = self
            .ledger_call("complete", async {
                Ok(self.ledger.complete_many(completions).await)
            })
            .await?
            .into_iter()
            .collect::<Result<Vec<_>, _>>()?;

        // The completions replace the cached claims, in one round trip; one that has
        // already expired must not leave its claim cached either.
        let mut entries = Vec::new();
        let mut expired = Vec::new();
        let mut results = Vec::with_capacity(decisions.len());
        for (id, decision) in ids.iter().zip(decisions) {
            match decision {
                CompleteDecision::Completed {
                    completion,
                    fingerprint,
                    response,
                    now,
                } => {
                    match completed_entry(&completion, fingerprint, response, now, asked_at) {
                        Some((entry, ttl)) => entries.push((id, entry, ttl)),
                        None => expired.push(id),
                    }
                    results.push(Ok(completion));
                }
                CompleteDecision::NotHolder => {
                    metrics::fencing_rejection("complete");
                    results.push(Err(EngineError::NotHolder));
                }
            }
        }
        let writes: Vec<Write<'_>> = entries
            .iter()
            .map(|(id, entry, ttl)| Write {
                id,
                entry,
                ttl: *ttl,
            })
            .collect();
        if !writes.is_empty() {
            let _ = self.hot.put_many(&writes).await;
        }
        join_all(expired.into_iter().map(|id| self.hot.remove(id))).await;
        Ok(results)
    }
}
