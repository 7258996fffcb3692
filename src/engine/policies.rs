//! Which namespaces have a policy, as this sidecar knows it: the claim path's only
//! use of policies outside the ledger.
//!
//! The ledger decides every claim of a namespace with a policy by the policy it reads
//! in the claim's own transaction (the killswitch and the budget, atomic with the
//! insert), so this book only routes: a claim in a namespace with no policy takes the
//! plain path, every other one the guarded path. It also answers `require_subject`,
//! which is request validation.
//!
//! The book re-reads every policy every [`REFRESH_EVERY`] (one small query), so a
//! policy set through any sidecar reaches this one within that — well inside the
//! second rule 11.2 allows — with no notification to lose. If it cannot read them for
//! longer than [`TRUSTED_FOR`], it stops trusting what it has and sends every claim
//! the guarded way: a sidecar that cannot read its policies fails closed, since a
//! guarded claim cannot be decided without the ledger either.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use crate::domain::{Namespace, Policy};
use crate::ledger::Ledger;

/// How often the book re-reads the policies.
pub const REFRESH_EVERY: Duration = Duration::from_millis(250);
/// How long a read stays trusted.
pub const TRUSTED_FOR: Duration = Duration::from_secs(1);

/// The policies this sidecar last read, and when.
#[derive(Debug, Default)]
pub struct PolicyBook {
    state: RwLock<State>,
}

#[derive(Debug, Default)]
struct State {
    policies: HashMap<Namespace, Policy>,
    /// When the policies were last read in full; `None`: never.
    read_at: Option<Instant>,
    /// When a policy was last set through this sidecar: a read that began before it
    /// is older than what the book holds, and is not taken in.
    set_at: Option<Instant>,
}

impl PolicyBook {
    /// Whether claims in `namespace` must be decided by its policy: it has one, or the
    /// book cannot vouch that it has none.
    pub fn guarded(&self, namespace: &Namespace) -> bool {
        let state = self.read();
        !state.trusted() || state.policies.contains_key(namespace)
    }

    /// Whether `namespace`'s policy (as last read) refuses claims without a subject.
    pub fn requires_subject(&self, namespace: &Namespace) -> bool {
        self.read()
            .policies
            .get(namespace)
            .is_some_and(Policy::requires_subject)
    }

    /// Takes in `namespace`'s new policy at once (set through this sidecar).
    pub fn set(&self, namespace: &Namespace, policy: &Policy) {
        let mut state = self.write();
        state.set_at = Some(Instant::now());
        if policy.is_empty() {
            state.policies.remove(namespace);
        } else {
            crate::metrics::policy_set(namespace);
            state.policies.insert(namespace.clone(), policy.clone());
        }
    }

    /// Reads every policy from `ledger`; on failure keeps what it had, which stops
    /// being trusted [`TRUSTED_FOR`] after the last good read.
    pub async fn refresh(&self, ledger: &dyn Ledger) {
        let asked_at = Instant::now();
        match ledger.policies().await {
            Ok(policies) => self.take_in(policies, asked_at),
            Err(error) => {
                tracing::debug!(error = %crate::errors::chain(&error), "cannot read the policies");
            }
        }
    }

    /// Takes in the policies a read that began at `asked_at` returned, unless a policy
    /// was set through this sidecar since: then the book already holds newer, and the
    /// next read brings the rest.
    fn take_in(&self, policies: Vec<(Namespace, Policy)>, asked_at: Instant) {
        let mut state = self.write();
        if state.set_at.is_some_and(|set_at| set_at >= asked_at) {
            return;
        }
        for (namespace, _) in &policies {
            if !state.policies.contains_key(namespace) {
                crate::metrics::policy_set(namespace);
            }
        }
        state.policies = policies.into_iter().collect();
        state.read_at = Some(asked_at);
    }

    /// Re-reads the policies every [`REFRESH_EVERY`] until the task is aborted.
    pub fn spawn_refresher(
        self: &Arc<Self>,
        ledger: Arc<dyn Ledger>,
    ) -> tokio::task::JoinHandle<()> {
        let book = Arc::clone(self);
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(REFRESH_EVERY);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                let refreshed = tokio::time::timeout(TRUSTED_FOR, book.refresh(ledger.as_ref()));
                if refreshed.await.is_err() {
                    tracing::debug!("reading the policies timed out");
                }
            }
        })
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl State {
    fn trusted(&self) -> bool {
        self.read_at.is_some_and(|at| at.elapsed() < TRUSTED_FOR)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ns(name: &str) -> Namespace {
        Namespace::try_from(name.to_owned()).unwrap()
    }

    #[test]
    fn a_book_it_cannot_vouch_for_guards_every_namespace() {
        let book = PolicyBook::default();
        assert!(book.guarded(&ns("sms")), "never read: fail closed");
        book.write().read_at = Some(Instant::now());
        assert!(!book.guarded(&ns("sms")));
        book.set(
            &ns("sms"),
            &Policy {
                killswitch: true,
                ..Policy::default()
            },
        );
        assert!(book.guarded(&ns("sms")));
        assert!(!book.guarded(&ns("email")));
        book.write().read_at = Some(Instant::now() - TRUSTED_FOR);
        assert!(book.guarded(&ns("email")), "stale: fail closed");
        book.set(&ns("sms"), &Policy::default());
        book.write().read_at = Some(Instant::now());
        assert!(!book.guarded(&ns("sms")), "an empty policy is no policy");
    }

    #[test]
    fn a_read_that_began_before_a_set_does_not_undo_it() {
        let book = PolicyBook::default();
        let asked_at = Instant::now();
        book.set(
            &ns("sms"),
            &Policy {
                killswitch: true,
                ..Policy::default()
            },
        );
        book.take_in(Vec::new(), asked_at);
        assert!(book.read().policies.contains_key(&ns("sms")), "kept");
        book.take_in(Vec::new(), Instant::now());
        assert!(
            !book.read().policies.contains_key(&ns("sms")),
            "a later read wins"
        );
    }
}
