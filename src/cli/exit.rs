//! Exit codes: the client's contract with shell scripts.
//!
//! A script guards a side effect with `onceward claim …; case $? in 0) …`, so every
//! claim outcome has a code of its own, and so do the errors a script reacts to
//! differently: its own bug (invalid argument), a lost claim (failed precondition), a
//! sidecar it cannot reach (unavailable, safe to retry), a sidecar that refuses its
//! credentials (not allowed) and a configuration that cannot work (a bad address, an
//! unreadable certificate, a failed TLS handshake: retrying will not help). Codes
//! 10–15 are answers, not errors, and sit apart from the small numbers shells and clap
//! already use.

use tonic::Code;

use onceward_client::tls_failure;

use crate::proto::code_label;

/// The exit code table, as printed under each client command's `--help`.
pub const EXIT_CODES_HELP: &str = "\
Exit codes:
   0  acquired (claim), done (complete, release, extend), found (lookup), forgotten (forget)
  10  in progress: another claim holds the key; retry later
  11  completed: a replay; the stored response follows on stdout
  12  fingerprint mismatch: the key was claimed with a different payload
  13  not found (lookup, forget)
  14  blocked: the namespace's killswitch is engaged (claim)
  15  over budget: the subject's budget for this window is spent (claim)
   2  usage error
   3  invalid argument (rejected by the sidecar, or an unreadable input file)
   4  failed precondition: the token is not the current holder's, or (forget) a live
      claim without --force
   5  unavailable: cannot connect, or the sidecar's ledger is down; safe to retry
   6  not allowed: no or a wrong bearer token (UNAUTHENTICATED), or the namespace
      is not granted to the token's tenant (PERMISSION_DENIED)
   7  configuration error: a bad --addr, an unreadable token or certificate file,
      a failed TLS handshake; will not succeed on retry
   1  any other error";

/// How a client invocation ends, as the process exit code.
///
/// | code | meaning |
/// |---|---|
/// | 0 | `claim` acquired; `complete`, `release`, `extend` succeeded; `lookup` found the key |
/// | 10 | in progress: a live claim holds the key |
/// | 11 | completed: a replay of the stored response |
/// | 12 | fingerprint mismatch |
/// | 13 | `lookup` or `forget` found no record |
/// | 14 | `claim` blocked by the namespace's killswitch |
/// | 15 | `claim` over the subject's budget |
/// | 2 | usage error (clap exits with it before [`super::run`] runs) |
/// | 3 | invalid argument |
/// | 4 | failed precondition: not the holder |
/// | 5 | unavailable: cannot connect, or the ledger is down |
/// | 6 | not allowed: `UNAUTHENTICATED` or `PERMISSION_DENIED` |
/// | 7 | configuration error: address, credential files, TLS handshake |
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
    /// 6: the sidecar refused the caller: no or a wrong bearer token, or a namespace
    /// its tenant was not granted.
    NotAllowed,
    /// 7: the address, a credential file or the TLS handshake cannot work; unlike 5,
    /// retrying will not help until the configuration changes.
    Misconfigured,
    /// 10: a live claim holds the key.
    InProgress,
    /// 11: the key was completed; its stored response is replayed.
    Completed,
    /// 12: the key exists with a different fingerprint.
    FingerprintMismatch,
    /// 13: `lookup` or `forget` found no record for the key.
    NotFound,
    /// 14: the namespace's killswitch blocked the claim.
    Blocked,
    /// 15: the subject's budget refused the claim.
    OverBudget,
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
            Exit::NotAllowed => 6,
            Exit::Misconfigured => 7,
            Exit::InProgress => 10,
            Exit::Completed => 11,
            Exit::FingerprintMismatch => 12,
            Exit::NotFound => 13,
            Exit::Blocked => 14,
            Exit::OverBudget => 15,
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
    /// The transport failed the call: no status came from the sidecar (a connection
    /// reset or closed, an answer that was no HTTP/2).
    pub transport: bool,
}

impl Failure {
    /// A failure that happened on this side of the wire.
    pub fn local(exit: Exit, code: Code, message: impl Into<String>) -> Self {
        Self {
            exit,
            code: code_label(code),
            message: message.into(),
            transport: false,
        }
    }

    /// A configuration that cannot work (exit 7). Its code in `--json` is
    /// `INVALID_ARGUMENT`: the caller's settings are wrong, so do not retry.
    pub fn misconfigured(message: impl Into<String>) -> Self {
        Self::local(Exit::Misconfigured, Code::InvalidArgument, message)
    }
}

impl From<tonic::Status> for Failure {
    fn from(status: tonic::Status) -> Self {
        // A client certificate the sidecar refused shows with the first request, after
        // the handshake looked done.
        if let Some(tls) = tls_failure(&status) {
            return Self::misconfigured(format!("TLS handshake failed: {tls}"));
        }
        let exit = match status.code() {
            Code::InvalidArgument => Exit::InvalidArgument,
            Code::FailedPrecondition => Exit::FailedPrecondition,
            Code::Unavailable => Exit::Unavailable,
            Code::Unauthenticated | Code::PermissionDenied => Exit::NotAllowed,
            _ => Exit::Other,
        };
        // A status the transport made up (connection reset mid-call) carries its cause
        // as a source, not in the message.
        let cause = std::error::Error::source(&status);
        let message = match cause {
            Some(cause) => format!("{}: {cause}", status.message()),
            None => status.message().to_owned(),
        };
        Self {
            exit,
            code: code_label(status.code()),
            message,
            transport: cause.is_some(),
        }
    }
}
