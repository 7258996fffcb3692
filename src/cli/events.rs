//! `onceward events NAMESPACE [--since 24h]`: the audit trail, newest first — the
//! morning-after answer to "which sends were rejected last night, and why?".

use std::time::Duration;

use clap::Args;
use serde::Serialize;

use super::ConnectArgs;
use super::connect::channel;
use super::exit::{Exit, Failure};
use super::output::{self, Report};
use crate::domain::parse_duration;
use crate::proto::admin_client::AdminClient;
use crate::proto::{EventKind, ListEventsRequest};

/// `onceward events NAMESPACE`.
#[derive(Debug, Clone, Args)]
pub struct EventsArgs {
    /// The namespace.
    pub namespace: String,

    /// Only events this recent, e.g. 24h, 15m.
    #[arg(long, value_parser = parse_duration, default_value = "24h")]
    pub since: Duration,

    /// At most this many, newest first (1 to 1000).
    #[arg(long, default_value_t = 100)]
    pub limit: u32,

    /// Where and how.
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// `events --json`.
#[derive(Debug, Serialize)]
struct EventsJson {
    events: Vec<EventJson>,
}

#[derive(Debug, Serialize)]
struct EventJson {
    at: Option<String>,
    kind: &'static str,
    key: String,
    subject: String,
    count: u64,
    detail: String,
}

pub(super) async fn run(args: EventsArgs) -> Result<Report, Failure> {
    let since = chrono::Utc::now()
        - chrono::Duration::from_std(args.since).unwrap_or(chrono::Duration::MAX);
    let events = AdminClient::new(channel(&args.connect).await?)
        .list_events(ListEventsRequest {
            namespace: args.namespace,
            since: Some(crate::proto::timestamp(since)),
            limit: args.limit,
        })
        .await?
        .into_inner()
        .events;
    let events: Vec<EventJson> = events
        .into_iter()
        .map(|event| EventJson {
            at: output::timestamp(event.at.as_ref()),
            kind: kind_name(event.kind),
            key: event.key,
            subject: event.subject,
            count: event.count,
            detail: event.detail,
        })
        .collect();
    let lines: Vec<String> = events
        .iter()
        .map(|event| {
            let mut line = format!(
                "{} {} key={:?}",
                event.at.as_deref().unwrap_or("-"),
                event.kind,
                event.key
            );
            if !event.subject.is_empty() {
                line.push_str(&format!(" subject={:?}", event.subject));
            }
            if event.count > 1 {
                line.push_str(&format!(" count={}", event.count));
            }
            if !event.detail.is_empty() {
                line.push_str(&format!(" detail={:?}", event.detail));
            }
            line
        })
        .collect();
    let line = match lines.is_empty() {
        true => "no events".to_owned(),
        false => lines.join("\n"),
    };
    Ok(Report::new(Exit::Ok, line, &EventsJson { events }))
}

fn kind_name(kind: i32) -> &'static str {
    match EventKind::try_from(kind) {
        Ok(EventKind::Duplicate) => "DUPLICATE",
        Ok(EventKind::FingerprintMismatch) => "FINGERPRINT_MISMATCH",
        Ok(EventKind::Blocked) => "BLOCKED",
        Ok(EventKind::OverBudget) => "OVER_BUDGET",
        Ok(EventKind::Takeover) => "TAKEOVER",
        Ok(EventKind::Release) => "RELEASE",
        Ok(EventKind::Forget) => "FORGET",
        Ok(EventKind::Unspecified) | Err(_) => "UNSPECIFIED",
    }
}
