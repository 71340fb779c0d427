//! Envoy's external authorization over gRPC: `envoy.service.auth.v3.Authorization/Check`, the
//! same decision as `/verify` for Envoy's `ext_authz` filter in gRPC mode, on its own port
//! (`verify.grpc_bind`) next to the standard gRPC health service (`grpc.health.v1.Health`).
//!
//! Envoy describes the original request in the `CheckRequest` attributes (method, scheme,
//! `:authority`, path with query, headers). An allowed request is answered OK with the identity
//! headers to set on the upstream request (overwriting any the client sent) and, unless
//! `verify.forward_token`, the client's `Authorization` header removed. A refusal is answered
//! with the HTTP status, `WWW-Authenticate` challenge and JSON body `/verify` would send, which
//! Envoy returns to the client as they are.

use std::collections::HashMap;
use std::sync::Arc;

use envoy_types::ext_authz::v3::pb::{
    Authorization, AuthorizationServer, CheckRequest, CheckResponse, HeaderAppendAction, HttpStatusCode,
};
use envoy_types::ext_authz::v3::{CheckResponseExt, DeniedHttpResponseBuilder, OkHttpResponseBuilder};
use envoy_types::pb::envoy::service::auth::v3::attribute_context::HttpRequest;
use tokio::net::TcpListener;
use tonic::{Request, Response, Status};

use super::answer::{Answer, Answers};
use super::http::{Dialect, normalize};
use super::{OriginalRequest, Verifier, bearer_token, log_decision};
use crate::metrics::{Metrics, Transport};

/// The `Authorization` service.
pub struct ExtAuthz {
    verifier: Arc<Verifier>,
    answers: Arc<Answers>,
    dialect: Arc<Dialect>,
    metrics: Arc<Metrics>,
}

impl ExtAuthz {
    /// The service over the shared decision point.
    pub fn new(verifier: Arc<Verifier>, answers: Arc<Answers>, dialect: Arc<Dialect>, metrics: Arc<Metrics>) -> Self {
        Self { verifier, answers, dialect, metrics }
    }

    /// The decision for one `CheckRequest` from a trusted Envoy.
    fn check_http(&self, http: &HttpRequest) -> CheckResponse {
        let start = std::time::Instant::now();
        let raw: HashMap<String, String>;
        let headers = if http.headers.is_empty()
            && let Some(map) = &http.header_map
        {
            // `encode_raw_headers: true`: the values come as bytes in `header_map`.
            raw = map
                .headers
                .iter()
                .map(|h| (h.key.to_ascii_lowercase(), String::from_utf8_lossy(&h.raw_value).into_owned()))
                .collect();
            &raw
        } else {
            &http.headers
        };
        let header = |name: &str| headers.get(name).map(String::as_str);
        let original = original_request(http, header);
        let authorization = header("authorization");
        let decision = self.verifier.decide(&original, authorization.and_then(bearer_token));
        self.metrics.decision(Transport::Grpc, &decision, start.elapsed());
        log_decision(&original, &decision);
        let mut response = CheckResponse::new();
        match self.answers.answer(decision, &original) {
            Answer::Allow(identity) => {
                let mut ok = OkHttpResponseBuilder::new();
                if let Some(v) = identity {
                    for (name, value) in self.answers.identity(&v) {
                        // UTF-8 as it came in the token (to_str would blank a non-ASCII name).
                        let value = std::str::from_utf8(value.as_bytes()).unwrap_or_default();
                        ok.add_header(name.as_str(), value, Some(HeaderAppendAction::OverwriteIfExistsOrAdd), true);
                    }
                }
                if !self.answers.forward_token() {
                    // SECURITY: the MCP server does not get the user's token.
                    ok.remove_header("authorization");
                }
                response.set_status(Status::ok("allowed")).set_http_response(ok);
            }
            Answer::Deny(denial) => {
                let mut denied = DeniedHttpResponseBuilder::new();
                let status =
                    HttpStatusCode::try_from(i32::from(denial.status.as_u16())).unwrap_or(HttpStatusCode::Forbidden);
                denied.set_http_status(status).set_body(denial.body);
                for (name, value) in &denial.headers {
                    let value = value.to_str().unwrap_or_default();
                    denied.add_header(name.as_str(), value, Some(HeaderAppendAction::OverwriteIfExistsOrAdd), false);
                }
                let code = match denial.status.as_u16() {
                    401 => Status::unauthenticated("not authenticated"),
                    503 => Status::unavailable("decision unavailable"),
                    _ => Status::permission_denied("not allowed"),
                };
                response.set_status(code).set_http_response(denied);
            }
        }
        response
    }
}

/// The original request from Envoy's attributes: `path` carries the query; the scheme is the
/// one Envoy saw, unless Envoy passed on an `X-Forwarded-Proto` (TLS ended in front of it).
fn original_request<'a>(http: &HttpRequest, header: impl Fn(&str) -> Option<&'a str>) -> OriginalRequest {
    let scheme = header("x-forwarded-proto")
        .map(|p| p.split(',').next().unwrap_or(p).trim())
        .filter(|p| !p.is_empty())
        .unwrap_or(if http.scheme.is_empty() { "http" } else { &http.scheme });
    let host = if http.host.is_empty() { header(":authority").or(header("host")).unwrap_or("") } else { &http.host };
    normalize(&http.method, scheme, host, &http.path).with_headers(header)
}

#[tonic::async_trait]
impl Authorization for ExtAuthz {
    async fn check(&self, request: Request<CheckRequest>) -> Result<Response<CheckResponse>, Status> {
        // SECURITY: whoever can call Check can describe any request: only configured proxies may.
        if !self.dialect.is_trusted(request.remote_addr().map(|a| a.ip())) {
            tracing::warn!(peer = ?request.remote_addr(), "ext_authz Check from an address not in server.trusted_proxies");
            return Err(Status::permission_denied("caller is not a trusted proxy (server.trusted_proxies)"));
        }
        let check = request.into_inner();
        let http = check
            .attributes
            .as_ref()
            .and_then(|a| a.request.as_ref())
            .and_then(|r| r.http.as_ref())
            .ok_or_else(|| Status::invalid_argument("CheckRequest has no attributes.request.http"))?;
        Ok(Response::new(self.check_http(http)))
    }
}

/// Serves `Authorization` and `grpc.health.v1.Health` (overall and for
/// `envoy.service.auth.v3.Authorization`: SERVING) on `listener` until `shutdown` completes.
pub async fn serve(
    ext_authz: ExtAuthz,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    let (health_reporter, health) = tonic_health::server::health_reporter();
    health_reporter.set_serving::<AuthorizationServer<ExtAuthz>>().await;
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    tonic::transport::Server::builder()
        .add_service(health)
        .add_service(AuthorizationServer::new(ext_authz))
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
}
