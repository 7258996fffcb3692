//! The `onceward.v1.Admin` service: operators' RPCs, for admin tenants only (any caller
//! when authentication is off), each in the caller's own namespaces.

use std::sync::Arc;
use std::time::Duration;

use tonic::{Request, Response, Status};

use super::{ApiError, convert, guard, observe};
use crate::domain::{Budget, Namespace, Policy, Subject, ValidationError, units};
use crate::engine::{Engine, EngineError};
use crate::ledger::AuditEvent;
use crate::proto::admin_server::{Admin, AdminServer};
use crate::proto::{
    self, ForgetRequest, ForgetResponse, GetPolicyRequest, GetSpendRequest, ListEventsRequest,
    ListEventsResponse, SetPolicyRequest, Spend,
};
use crate::tenants::{Caller, Gatekeeper};

/// Events `ListEvents` returns when the request gives no limit.
const DEFAULT_EVENTS: u32 = 100;
/// The most events one `ListEvents` returns.
const MAX_EVENTS: u32 = 1000;

/// The `onceward.v1.Admin` service.
pub struct AdminService {
    engine: Arc<Engine>,
    gatekeeper: Arc<Gatekeeper>,
}

impl AdminService {
    /// The tonic server for `engine`, behind `gatekeeper`.
    pub fn server(engine: Arc<Engine>, gatekeeper: Arc<Gatekeeper>) -> AdminServer<Self> {
        AdminServer::new(Self { engine, gatekeeper })
    }

    /// The admin caller of `request`, allowed on `namespace` (parsed here).
    fn admit<T>(
        &self,
        request: &Request<T>,
        namespace: String,
    ) -> Result<(Caller<'_>, Namespace), ApiError> {
        let bearer = guard::bearer(request.metadata().as_ref());
        let caller = self.gatekeeper.admit(bearer)?;
        let namespace = Namespace::try_from(namespace)?;
        caller.authorize_admin(&namespace)?;
        Ok((caller, namespace))
    }

    /// `namespace`'s policy as the ledger holds it (the default: none).
    async fn policy(&self, namespace: &Namespace) -> Result<Policy, ApiError> {
        let policies = self
            .engine
            .ledger()
            .policies()
            .await
            .map_err(EngineError::from)?;
        Ok(policies
            .into_iter()
            .find(|(name, _)| name == namespace)
            .map(|(_, policy)| policy)
            .unwrap_or_default())
    }
}

#[tonic::async_trait]
impl Admin for AdminService {
    async fn get_policy(
        &self,
        request: Request<GetPolicyRequest>,
    ) -> Result<Response<proto::Policy>, Status> {
        observe("GetPolicy", async {
            let namespace = request.get_ref().namespace.clone();
            let (_, namespace) = self.admit(&request, namespace)?;
            Ok(policy_to_proto(self.policy(&namespace).await?))
        })
        .await
    }

    async fn set_policy(
        &self,
        request: Request<SetPolicyRequest>,
    ) -> Result<Response<proto::Policy>, Status> {
        observe("SetPolicy", async {
            let namespace = request.get_ref().namespace.clone();
            let (caller, namespace) = self.admit(&request, namespace)?;
            let policy = policy_from_proto(request.into_inner().policy.unwrap_or_default())?;
            let by = match caller {
                Caller::Anyone => "anonymous",
                Caller::Tenant(tenant) => tenant.name(),
            };
            self.engine
                .ledger()
                .set_policy(&namespace, &policy, by)
                .await
                .map_err(EngineError::from)?;
            self.engine.policies().set(&namespace, &policy);
            tracing::info!(
                %namespace, by, killswitch = policy.killswitch,
                reason = %policy.killswitch_reason, budget = ?policy.budget,
                "policy set"
            );
            Ok(policy_to_proto(policy))
        })
        .await
    }

    async fn get_spend(
        &self,
        request: Request<GetSpendRequest>,
    ) -> Result<Response<Spend>, Status> {
        observe("GetSpend", async {
            let namespace = request.get_ref().namespace.clone();
            let (_, namespace) = self.admit(&request, namespace)?;
            let subject = Subject::try_from(request.into_inner().subject)?;
            let Some(budget) = self.policy(&namespace).await?.budget else {
                return Err(ApiError::Precondition(format!(
                    "namespace {namespace} has no budget: set one with SetPolicy"
                )));
            };
            let spent = self
                .engine
                .ledger()
                .spent(&namespace, &subject, budget.window)
                .await
                .map_err(EngineError::from)?;
            Ok(Spend {
                window_start: Some(proto::timestamp(spent.window_start)),
                window_end: Some(proto::timestamp(spent.window_end)),
                cost: spent.cost,
                claims: spent.claims,
            })
        })
        .await
    }

    async fn forget(
        &self,
        request: Request<ForgetRequest>,
    ) -> Result<Response<ForgetResponse>, Status> {
        observe("Forget", async {
            let namespace = request.get_ref().namespace.clone();
            let (_, _) = self.admit(&request, namespace)?;
            let request = request.into_inner();
            let id = convert::record_id(request.namespace, request.key)?;
            let found = self.engine.forget(&id, request.force).await?;
            Ok(ForgetResponse { found })
        })
        .await
    }

    async fn list_events(
        &self,
        request: Request<ListEventsRequest>,
    ) -> Result<Response<ListEventsResponse>, Status> {
        observe("ListEvents", async {
            let namespace = request.get_ref().namespace.clone();
            let (_, namespace) = self.admit(&request, namespace)?;
            let request = request.into_inner();
            let limit = match request.limit {
                0 => DEFAULT_EVENTS,
                limit if limit > MAX_EVENTS => {
                    return Err(ValidationError::new(
                        "limit",
                        format!("must be at most {MAX_EVENTS}, got {limit}"),
                    )
                    .into());
                }
                limit => limit,
            };
            let since = request
                .since
                .map(|since| {
                    chrono::DateTime::from_timestamp(since.seconds, since.nanos.max(0) as u32)
                        .ok_or_else(|| ValidationError::new("since", "is out of range"))
                })
                .transpose()?;
            let events = self
                .engine
                .ledger()
                .events(&namespace, since, limit)
                .await
                .map_err(EngineError::from)?;
            Ok(ListEventsResponse {
                events: events.into_iter().map(event_to_proto).collect(),
            })
        })
        .await
    }
}

/// Parses a policy, naming the field out of bounds.
fn policy_from_proto(policy: proto::Policy) -> Result<Policy, ValidationError> {
    let budget = policy
        .budget
        .map(|budget| -> Result<Budget, ValidationError> {
            let window = budget
                .window
                .ok_or_else(|| {
                    ValidationError::new("policy.budget.window", "is required with a budget")
                })
                .and_then(|window| {
                    let seconds = u64::try_from(window.seconds).ok();
                    let nanos = u32::try_from(window.nanos).ok();
                    seconds
                        .zip(nanos)
                        .map(|(seconds, nanos)| Duration::new(seconds, nanos))
                        .ok_or_else(|| {
                            ValidationError::new("policy.budget.window", "must not be negative")
                        })
                })?;
            Ok(Budget {
                max_cost: units("policy.budget.max_cost", budget.max_cost)?,
                max_claims: units("policy.budget.max_claims", budget.max_claims)?,
                window,
                require_subject: budget.require_subject,
            })
        })
        .transpose()?;
    Policy {
        killswitch: policy.killswitch,
        killswitch_reason: policy.killswitch_reason,
        budget,
    }
    .validate()
}

fn policy_to_proto(policy: Policy) -> proto::Policy {
    proto::Policy {
        killswitch: policy.killswitch,
        killswitch_reason: policy.killswitch_reason,
        budget: policy.budget.map(|budget| proto::Budget {
            max_cost: budget.max_cost,
            max_claims: budget.max_claims,
            window: Some(proto::duration(budget.window)),
            require_subject: budget.require_subject,
        }),
    }
}

fn event_to_proto(event: AuditEvent) -> proto::Event {
    proto::Event {
        at: Some(proto::timestamp(event.at)),
        key: event.key,
        subject: event.subject.as_str().to_owned(),
        kind: event.kind.code().into(),
        count: event.count,
        detail: event.detail,
    }
}
