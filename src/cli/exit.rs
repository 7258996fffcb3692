//! Exit codes: the client's contract with shell scripts.
//!
//! A script guards a side effect with `onceward claim …; case $? in 0) …`, so every
//! claim outcome has a code of its own, and so do the errors a script reacts to
//! differently: its own bug (invalid argument), a lost claim (failed precondition) and
//! a sidecar it cannot reach (unavailable, safe to retry). Codes 10–13 are answers,
//! not errors, and sit apart from the small numbers shells and clap already use.

use tonic::Code;

use crate::proto::code_label;

/// The exit code table, as printed under each client command's `--help`.
pub const EXIT_CODES_HELP: &str = "\
Exit codes:
   0  acquired (claim), done (complete, release, extend), found (lookup)
  10  in progress: another claim holds the key; retry later
  11  completed: a replay; the stored response follows on stdout
  12  fingerprint mismatch: the key was claimed with a different payload
  13  not found (lookup)
   2  usage error
   3  invalid argument (rejected by the sidecar, or an unreadable input file)
   4  failed precondition: the token is not the current holder's
   5  unavailable: cannot connect, or the sidecar's ledger is down; safe to retry
   1  any other error";

/// How a client invocation ends, as the process exit code.
///
/// | code | meaning |
/// |---|---|
/// | 0 | `claim` acquired; `complete`, `release`, `extend` succeeded; `lookup` found the key |
/// | 10 | in progress: a live claim holds the key |
/// | 11 | completed: a replay of the stored response |
/// | 12 | fingerprint mismatch |
/// | 13 | `lookup` found no record |
/// | 2 | usage error (clap exits with it before [`super::run`] runs) |
/// | 3 | invalid argument |
/// | 4 | failed precondition: not the holder |
/// | 5 | unavailable: cannot connect, or the ledger is down |
/// | 1 | any other error |
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// 0: the command did what it was asked.
    Ok,
    /// 1: any error without a code of its own.
    Other,
    /// 3: the sidecar rejected an argument, or an input file could not be read.
    InvalidArgument,
    /// 4: the fencing token is not the current holder's.
    FailedPrecondition,
    /// 5: the sidecar cannot be reached, or it cannot reach its ledger.
    Unavailable,
    /// 10: a live claim holds the key.
    InProgress,
    /// 11: the key was completed; its stored response is replayed.
    Completed,
    /// 12: the key exists with a different fingerprint.
    FingerprintMismatch,
    /// 13: `lookup` found no record for the key.
    NotFound,
}

impl Exit {
    /// The process exit code.
    pub fn code(self) -> i32 {
        match self {
            Exit::Ok => 0,
            Exit::Other => 1,
            Exit::InvalidArgument => 3,
            Exit::FailedPrecondition => 4,
            Exit::Unavailable => 5,
            Exit::InProgress => 10,
            Exit::Completed => 11,
            Exit::FingerprintMismatch => 12,
            Exit::NotFound => 13,
        }
    }
}

/// A failed invocation: its exit code, the gRPC code name shown in `--json`, and a
/// message for people.
#[derive(Debug)]
pub struct Failure {
    /// How the process exits.
    pub exit: Exit,
    /// A gRPC status code name, e.g. `FAILED_PRECONDITION`, also for local failures,
    /// so scripts switch on one vocabulary.
    pub code: &'static str,
    /// What went wrong.
    pub message: String,
}

impl Failure {
    /// A failure that happened on this side of the wire.
    pub fn local(exit: Exit, code: Code, message: impl Into<String>) -> Self {
        Self {
            exit,
            code: code_label(code),
            message: message.into(),
        }
    }
}

impl From<tonic::Status> for Failure {
    fn from(status: tonic::Status) -> Self {
        let exit = match status.code() {
            Code::InvalidArgument => Exit::InvalidArgument,
            Code::FailedPrecondition => Exit::FailedPrecondition,
            Code::Unavailable => Exit::Unavailable,
            _ => Exit::Other,
        };
        // A status the transport made up (connection reset mid-call) carries its cause
        // as a source, not in the message.
        let message = match std::error::Error::source(&status) {
            Some(cause) => format!("{}: {cause}", status.message()),
            None => status.message().to_owned(),
        };
        Self {
            exit,
            code: code_label(status.code()),
            message,
        }
    }
}
