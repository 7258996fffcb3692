//! The gRPC edge: proto in, domain through the engine, proto out.
//!
//! Raw proto types never pass this layer; every request is parsed into a validated
//! command here (`convert`), and every error leaves through the one mapping in
//! `error`. Each handler records its latency and status code on every exit path.
//!
//! Before a handler runs, `transport` has accepted the connection (a cap, a handshake
//! deadline, TLS) and `guard` has given the call its deadline, checked its token on
//! the headers and read its body within a time limit; `codec` answers a body that is
//! no protobuf `INVALID_ARGUMENT`. In front of all of them, `connect` turns Connect and
//! gRPC-Web calls into gRPC ones.

mod admin;
pub(crate) mod codec;
pub mod connect;
pub mod convert;
mod error;
pub(crate) mod guard;
pub(crate) mod tls;
pub mod transport;

pub use admin::AdminService;
pub use error::ApiError;

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use tonic::{Request, Response, Status};

use crate::domain::{Limits, ValidationError};
use crate::engine::{ClaimCommand, Engine};
use crate::metrics;
use crate::proto::onceward_server::{Onceward, OncewardServer};
use crate::proto::{
    ClaimBatchRequest, ClaimBatchResponse, ClaimRequest, ClaimResponse, CompleteBatchRequest,
    CompleteBatchResponse, CompleteRequest, CompleteResponse, CompleteResult, ExtendLeaseRequest,
    ExtendLeaseResponse, LookupRequest, LookupResponse, ReleaseRequest, ReleaseResponse,
};
use crate::tenants::{Caller, Gatekeeper};

/// The `onceward.v1.Onceward` service.
pub struct OncewardService {
    engine: Arc<Engine>,
    gatekeeper: Arc<Gatekeeper>,
}

/// Room for every field but `response` in the largest message.
const MESSAGE_OVERHEAD: usize = 64 * 1024;

impl OncewardService {
    /// The tonic server for `engine`, behind `gatekeeper`. The transport refuses
    /// messages larger than the biggest allowed response plus the other fields.
    pub fn server(engine: Arc<Engine>, gatekeeper: Arc<Gatekeeper>) -> OncewardServer<Self> {
        let max_message = max_message_bytes(engine.limits());
        OncewardServer::new(Self { engine, gatekeeper })
            .max_decoding_message_size(max_message)
            .max_encoding_message_size(max_message)
    }

    /// Refuses a claim without a subject in a namespace whose policy requires one.
    fn subject_given(&self, command: &ClaimCommand) -> Result<(), ValidationError> {
        let namespace = &command.id.namespace;
        if command.spend.subject.is_empty() && self.engine.policies().requires_subject(namespace) {
            return Err(ValidationError::new(
                "subject",
                format!("is required: namespace {namespace}'s policy has require_subject"),
            ));
        }
        Ok(())
    }

    /// Identifies the caller by its bearer token and charges its rate budget.
    fn admit<T>(&self, request: &Request<T>) -> Result<Caller<'_>, ApiError> {
        let bearer = guard::bearer(request.metadata().as_ref());
        Ok(self.gatekeeper.admit(bearer)?)
    }
}

/// The transport limit: the largest message the server decodes or encodes.
pub fn max_message_bytes(limits: &Limits) -> usize {
    limits.max_response_bytes + MESSAGE_OVERHEAD
}

#[tonic::async_trait]
impl Onceward for OncewardService {
    async fn claim(
        &self,
        request: Request<ClaimRequest>,
    ) -> Result<Response<ClaimResponse>, Status> {
        observe("Claim", async {
            let caller = self.admit(&request)?;
            let command = convert::claim_command(request.into_inner(), self.engine.limits())?;
            caller.authorize(&command.id.namespace)?;
            self.subject_given(&command)?;
            let answer = self.engine.claim(command).await?;
            Ok(convert::claim_response(answer))
        })
        .await
    }

    async fn complete(
        &self,
        request: Request<CompleteRequest>,
    ) -> Result<Response<CompleteResponse>, Status> {
        observe("Complete", async {
            let caller = self.admit(&request)?;
            let command = convert::complete_command(request.into_inner(), self.engine.limits())?;
            caller.authorize(&command.id.namespace)?;
            let completion = self.engine.complete(command).await?;
            Ok(CompleteResponse {
                expires_at: Some(crate::proto::timestamp(completion.expires_at)),
            })
        })
        .await
    }

    async fn release(
        &self,
        request: Request<ReleaseRequest>,
    ) -> Result<Response<ReleaseResponse>, Status> {
        observe("Release", async {
            let caller = self.admit(&request)?;
            let request = request.into_inner();
            let id = convert::record_id(request.namespace, request.key)?;
            caller.authorize(&id.namespace)?;
            let token = convert::token(request.fencing_token);
            self.engine.release(&id, token).await?;
            Ok(ReleaseResponse {})
        })
        .await
    }

    async fn extend_lease(
        &self,
        request: Request<ExtendLeaseRequest>,
    ) -> Result<Response<ExtendLeaseResponse>, Status> {
        observe("ExtendLease", async {
            let caller = self.admit(&request)?;
            let request = request.into_inner();
            let id = convert::record_id(request.namespace, request.key)?;
            caller.authorize(&id.namespace)?;
            let token = convert::token(request.fencing_token);
            let lease = convert::lease(request.lease, self.engine.limits())?;
            let lease_expires_at = self.engine.extend_lease(&id, token, lease).await?;
            Ok(ExtendLeaseResponse {
                lease_expires_at: Some(crate::proto::timestamp(lease_expires_at)),
            })
        })
        .await
    }

    async fn claim_batch(
        &self,
        request: Request<ClaimBatchRequest>,
    ) -> Result<Response<ClaimBatchResponse>, Status> {
        observe("ClaimBatch", async {
            let caller = self.admit(&request)?;
            let commands =
                convert::claim_batch_commands(request.into_inner(), self.engine.limits())?;
            if let Some(first) = commands.first() {
                caller.authorize(&first.id.namespace)?;
            }
            for (index, command) in commands.iter().enumerate() {
                self.subject_given(command)
                    .map_err(|error| convert::BatchError::Item { index, error })?;
            }
            metrics::batch_items("ClaimBatch", commands.len());
            let answers = self.engine.claim_batch(commands).await?;
            Ok(ClaimBatchResponse {
                results: answers.into_iter().map(convert::claim_response).collect(),
            })
        })
        .await
    }

    async fn complete_batch(
        &self,
        request: Request<CompleteBatchRequest>,
    ) -> Result<Response<CompleteBatchResponse>, Status> {
        observe("CompleteBatch", async {
            let caller = self.admit(&request)?;
            let commands =
                convert::complete_batch_commands(request.into_inner(), self.engine.limits())?;
            if let Some(first) = commands.first() {
                caller.authorize(&first.id.namespace)?;
            }
            metrics::batch_items("CompleteBatch", commands.len());
            let results = self.engine.complete_batch(commands).await?;
            Ok(CompleteBatchResponse {
                results: results
                    .into_iter()
                    .map(|result| match result {
                        Ok(completion) => CompleteResult {
                            code: tonic::Code::Ok as u32,
                            message: String::new(),
                            expires_at: Some(crate::proto::timestamp(completion.expires_at)),
                        },
                        Err(_) => CompleteResult {
                            code: tonic::Code::FailedPrecondition as u32,
                            message: error::NOT_HOLDER.to_owned(),
                            expires_at: None,
                        },
                    })
                    .collect(),
            })
        })
        .await
    }

    async fn lookup(
        &self,
        request: Request<LookupRequest>,
    ) -> Result<Response<LookupResponse>, Status> {
        observe("Lookup", async {
            let caller = self.admit(&request)?;
            let request = request.into_inner();
            let id = convert::record_id(request.namespace, request.key)?;
            caller.authorize(&id.namespace)?;
            let record = self.engine.lookup(&id).await?;
            Ok(LookupResponse {
                found: record.is_some(),
                record: record.map(convert::record),
            })
        })
        .await
    }
}

/// Reports a message over the transport limit as `RESOURCE_EXHAUSTED`, as the gRPC
/// spec and docs/PROTOCOL.md have it; tonic's decoder says `OUT_OF_RANGE`. No handler
/// of onceward answers `OUT_OF_RANGE`, so every such status is the transport limit's.
pub fn transport_limit_as_resource_exhausted<B>(
    mut response: http::Response<B>,
) -> http::Response<B> {
    const OUT_OF_RANGE: &str = "11";
    const RESOURCE_EXHAUSTED: &str = "8";
    let headers = response.headers_mut();
    if headers
        .get("grpc-status")
        .is_some_and(|code| code == OUT_OF_RANGE)
    {
        headers.insert(
            "grpc-status",
            http::HeaderValue::from_static(RESOURCE_EXHAUSTED),
        );
    }
    response
}

/// Runs a handler body, maps its error to a status and records the call's latency
/// and code, whichever way it ends.
async fn observe<T>(
    method: &'static str,
    body: impl Future<Output = Result<T, ApiError>>,
) -> Result<Response<T>, Status> {
    let started = Instant::now();
    let result = body.await.map(Response::new).map_err(Status::from);
    let code = match &result {
        Ok(_) => tonic::Code::Ok,
        Err(status) => status.code(),
    };
    metrics::rpc_finished(method, crate::proto::code_label(code), started.elapsed());
    result
}
