//! `onceward policy get|set` and `onceward spend`: a namespace's spend guard (the
//! killswitch and the per-subject budget), and what a subject has spent.

use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};
use serde::Serialize;

use super::ConnectArgs;
use super::connect::channel;
use super::exit::{Exit, Failure};
use super::output::{self, Report, push_field};
use crate::domain::{format_duration, parse_duration};
use crate::proto::admin_client::AdminClient;
use crate::proto::{Budget, GetPolicyRequest, GetSpendRequest, Policy, SetPolicyRequest};

/// `onceward policy get|set NAMESPACE`.
#[derive(Debug, Clone, Subcommand)]
pub enum PolicyCommand {
    /// Show the namespace's policy.
    Get(PolicyGetArgs),
    /// Change the namespace's policy: the flags given change, the rest stay.
    Set(PolicySetArgs),
}

impl PolicyCommand {
    pub(super) fn connect_args(&self) -> &ConnectArgs {
        match self {
            PolicyCommand::Get(args) => &args.connect,
            PolicyCommand::Set(args) => &args.connect,
        }
    }
}

/// `onceward policy get NAMESPACE`.
#[derive(Debug, Clone, Args)]
pub struct PolicyGetArgs {
    /// The namespace.
    pub namespace: String,

    /// Where and how.
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// On or off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Switch {
    /// Engaged.
    On,
    /// Released.
    Off,
}

/// `onceward policy set NAMESPACE [flags]`.
#[derive(Debug, Clone, Args)]
pub struct PolicySetArgs {
    /// The namespace.
    pub namespace: String,

    /// Engage (no new ACQUIRED in the namespace; duplicates still answered) or release
    /// the killswitch.
    #[arg(long, value_enum)]
    pub killswitch: Option<Switch>,

    /// The killswitch's reason, shown to callers it blocks.
    #[arg(long)]
    pub reason: Option<String>,

    /// Most budget units one subject may spend per window (0: no cost limit).
    #[arg(long, value_name = "N")]
    pub max_cost: Option<u64>,

    /// Most claims one subject may make per window, the fan-out cap (0: no limit).
    #[arg(long, value_name = "N")]
    pub max_claims: Option<u64>,

    /// The budget's window, aligned to the Unix epoch, e.g. 1m, 24h (1s to 31d).
    #[arg(long, value_parser = parse_duration)]
    pub window: Option<Duration>,

    /// Refuse claims that name no subject (INVALID_ARGUMENT).
    #[arg(long, value_name = "true|false", num_args = 0..=1, default_missing_value = "true")]
    pub require_subject: Option<bool>,

    /// Remove the budget (the killswitch stays as it is).
    #[arg(long, conflicts_with_all = ["max_cost", "max_claims", "window", "require_subject"])]
    pub no_budget: bool,

    /// Where and how.
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// `policy --json`: the policy as the sidecar returned it.
#[derive(Debug, Serialize)]
struct PolicyJson {
    namespace: String,
    killswitch: bool,
    killswitch_reason: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    budget: Option<BudgetJson>,
}

#[derive(Debug, Serialize)]
struct BudgetJson {
    max_cost: u64,
    max_claims: u64,
    window_seconds: f64,
    require_subject: bool,
}

pub(super) async fn run(command: PolicyCommand) -> Result<Report, Failure> {
    match command {
        PolicyCommand::Get(args) => {
            let mut admin = AdminClient::new(channel(&args.connect).await?);
            let policy = admin
                .get_policy(GetPolicyRequest {
                    namespace: args.namespace.clone(),
                })
                .await?
                .into_inner();
            Ok(report(args.namespace, policy))
        }
        PolicyCommand::Set(args) => {
            let mut admin = AdminClient::new(channel(&args.connect).await?);
            let current = admin
                .get_policy(GetPolicyRequest {
                    namespace: args.namespace.clone(),
                })
                .await?
                .into_inner();
            let policy = changed(current, &args)?;
            let stored = admin
                .set_policy(SetPolicyRequest {
                    namespace: args.namespace.clone(),
                    policy: Some(policy),
                })
                .await?
                .into_inner();
            Ok(report(args.namespace, stored))
        }
    }
}

/// `current` with the flags of `args` applied.
fn changed(mut policy: Policy, args: &PolicySetArgs) -> Result<Policy, Failure> {
    if let Some(switch) = args.killswitch {
        policy.killswitch = switch == Switch::On;
        if switch == Switch::Off && args.reason.is_none() {
            policy.killswitch_reason.clear();
        }
    }
    if let Some(reason) = &args.reason {
        policy.killswitch_reason = reason.clone();
    }
    if args.no_budget {
        policy.budget = None;
        return Ok(policy);
    }
    let touches_budget = args.max_cost.is_some()
        || args.max_claims.is_some()
        || args.window.is_some()
        || args.require_subject.is_some();
    if !touches_budget {
        return Ok(policy);
    }
    let mut budget = match policy.budget.take() {
        Some(budget) => budget,
        None => Budget {
            window: Some(crate::proto::duration(args.window.ok_or_else(|| {
                Failure::local(
                    Exit::InvalidArgument,
                    tonic::Code::InvalidArgument,
                    "--window is required to give the namespace a budget, e.g. --window 24h",
                )
            })?)),
            ..Budget::default()
        },
    };
    if let Some(max_cost) = args.max_cost {
        budget.max_cost = max_cost;
    }
    if let Some(max_claims) = args.max_claims {
        budget.max_claims = max_claims;
    }
    if let Some(window) = args.window {
        budget.window = Some(crate::proto::duration(window));
    }
    if let Some(require_subject) = args.require_subject {
        budget.require_subject = require_subject;
    }
    policy.budget = Some(budget);
    Ok(policy)
}

fn report(namespace: String, policy: Policy) -> Report {
    let window = policy
        .budget
        .as_ref()
        .and_then(|budget| output::duration(budget.window.as_ref()));
    let json = PolicyJson {
        namespace,
        killswitch: policy.killswitch,
        killswitch_reason: policy.killswitch_reason.clone(),
        budget: policy.budget.as_ref().map(|budget| BudgetJson {
            max_cost: budget.max_cost,
            max_claims: budget.max_claims,
            window_seconds: window.unwrap_or_default().as_secs_f64(),
            require_subject: budget.require_subject,
        }),
    };
    let mut line = format!(
        "killswitch={}",
        if policy.killswitch { "on" } else { "off" }
    );
    if !policy.killswitch_reason.is_empty() {
        push_field(
            &mut line,
            "reason",
            Some(format!("{:?}", policy.killswitch_reason)),
        );
    }
    match &policy.budget {
        Some(budget) => {
            push_field(&mut line, "max_cost", Some(budget.max_cost));
            push_field(&mut line, "max_claims", Some(budget.max_claims));
            push_field(&mut line, "window", window.map(format_duration));
            push_field(&mut line, "require_subject", Some(budget.require_subject));
        }
        None => line.push_str(" budget=none"),
    }
    Report::new(Exit::Ok, line, &json)
}

/// `onceward spend NAMESPACE SUBJECT`.
#[derive(Debug, Clone, Args)]
pub struct SpendArgs {
    /// The namespace (it must have a budget).
    pub namespace: String,

    /// Whose spend.
    pub subject: String,

    /// Where and how.
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// `spend --json`.
#[derive(Debug, Serialize)]
struct SpendJson {
    window_start: Option<String>,
    window_end: Option<String>,
    cost: u64,
    claims: u64,
}

pub(super) async fn spend(args: SpendArgs) -> Result<Report, Failure> {
    let spent = AdminClient::new(channel(&args.connect).await?)
        .get_spend(GetSpendRequest {
            namespace: args.namespace,
            subject: args.subject,
        })
        .await?
        .into_inner();
    let json = SpendJson {
        window_start: output::timestamp(spent.window_start.as_ref()),
        window_end: output::timestamp(spent.window_end.as_ref()),
        cost: spent.cost,
        claims: spent.claims,
    };
    let mut line = format!("cost={} claims={}", spent.cost, spent.claims);
    push_field(&mut line, "window_start", json.window_start.as_ref());
    push_field(&mut line, "window_end", json.window_end.as_ref());
    Ok(Report::new(Exit::Ok, line, &json))
}
