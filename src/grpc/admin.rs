//! The `onceward.v1.Admin` service: operators' RPCs, for admin tenants only (any caller
//! when authentication is off), each in the caller's own namespaces.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::{ApiError, convert, guard, observe};
use crate::engine::Engine;
use crate::proto::admin_server::{Admin, AdminServer};
use crate::proto::{ForgetRequest, ForgetResponse};
use crate::tenants::Gatekeeper;

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
}

#[tonic::async_trait]
impl Admin for AdminService {
    async fn forget(
        &self,
        request: Request<ForgetRequest>,
    ) -> Result<Response<ForgetResponse>, Status> {
        observe("Forget", async {
            let bearer = guard::bearer(request.metadata().as_ref());
            let caller = self.gatekeeper.admit(bearer).map_err(ApiError::from)?;
            let request = request.into_inner();
            let id = convert::record_id(request.namespace, request.key)?;
            caller.authorize_admin(&id.namespace)?;
            let found = self.engine.forget(&id, request.force).await?;
            Ok(ForgetResponse { found })
        })
        .await
    }
}
