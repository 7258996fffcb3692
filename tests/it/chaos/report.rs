//! What comes back from the workers: how each one ended, what happened to each
//! operation, and the tally of everything they saw, which the run holds the vendor's
//! table, the ledger and the sidecars' metrics against.

use std::collections::BTreeMap;
use std::time::Duration;

use super::ClaimCounts;

/// What a worker saw, for the summary and the final checks.
#[derive(Debug, Default)]
pub struct Tally {
    /// Claim answers from processes that were scraped afterwards: the metrics must
    /// show exactly these, label by label.
    pub live_claims: ClaimCounts,
    /// Claim answers from a process between its last scrape and its SIGKILL.
    pub scraped_claims: ClaimCounts,
    /// Claims sent after a process's last scrape that got no answer: in flight at
    /// the SIGKILL, or sent just after it. The server may have counted (and, for an
    /// ACQUIRED, committed) them, but no scrape can show it.
    pub claims_lost_to_kill: u64,
    /// Claims sent to a dead process: refused, they reached no server.
    pub claims_refused_while_dead: u64,
    /// Everything else, by a readable name.
    pub events: BTreeMap<&'static str, u64>,
    /// ACQUIRED answers dropped on purpose, and what became of each (the claimant, docs/PROTOCOL.md).
    pub lost_acquired: LostAcquired,
}

/// What became of the ACQUIRED answers the workers dropped on purpose. Each worker
/// sends one claimant on every retry of its claim, so its next Claim is the same
/// claim: the ledger answers ACQUIRED again with the token of the lost answer.
#[derive(Debug, Default)]
pub struct LostAcquired {
    /// Re-acquired with the same token, and how long after the answer was lost.
    pub same_token: Vec<Duration>,
    /// Re-acquired with another token while the lost claim's lease still ran: a
    /// claimant the ledger did not recognise (the run fails on it).
    pub other_token_within_lease: u64,
    /// Not re-acquired before its lease ran out (the retry was held up past it).
    pub outlived_its_lease: u64,
}

/// How one worker ended.
#[derive(Debug, Clone)]
pub enum WorkerEnd {
    /// It made the vendor call and its Complete was acknowledged.
    Completed { token: u64, response: String },
    /// A Claim replayed the stored response.
    Replayed { response: String },
    /// It died after ACQUIRED, before the vendor call (its token is abandoned).
    Died,
    /// A client with another fingerprint got FINGERPRINT_MISMATCH.
    Mismatched,
    /// It gave up or saw something no honest client should.
    Failed(String),
}

/// What happened to one operation.
#[derive(Debug)]
pub struct OpReport {
    /// Its key.
    pub key: String,
    /// How each worker ended.
    pub ends: Vec<WorkerEnd>,
    /// Tokens of ACQUIRED answers nobody used: a dying worker's, a dropped reply's.
    pub abandoned_tokens: Vec<u64>,
}
