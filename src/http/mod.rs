//! The HTTP surface: thin actix-web handlers, one file per endpoint group, and the one route
//! table [`configure`] used by the server and by every test.

pub mod authorize;
pub mod consent;
pub mod device;
pub mod health;
pub mod metadata;
pub mod page;
pub mod register;
pub mod token;
pub mod verify;

use actix_cors::Cors;
use actix_web::body::BoxBody;
use actix_web::dev::{Service, ServiceRequest, ServiceResponse, Transform, forward_ready};
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpMessage, HttpRequest, HttpResponse, HttpResponseBuilder, web};
use futures_util::StreamExt;
use futures_util::future::LocalBoxFuture;
use std::rc::Rc;
use tracing::Span;
use tracing_actix_web::{RequestId, RootSpanBuilder};

use crate::AppState;
use crate::error::Error;
use crate::oauth::params::Params;
use crate::ratelimit::{Bucket, RetryAfter};

/// Largest request body read by any endpoint (bytes).
pub const MAX_BODY: usize = 64 * 1024;
/// Longest time a request body may take to arrive (64 KiB take no honest client that long).
pub const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The route table. Routes are tried in order, and a pattern with a `{…}` segment costs a regex
/// match: `/verify` (every proxied MCP request) and `/health` (every probe) come first.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource(&["/verify"]).route(web::route().to(verify::any_verify)))
        .service(resource(&["/health"]).route(web::get().to(health::get_health)))
        .service(resource(&["/verify/{tail:.*}"]).route(web::route().to(verify::any_verify)))
        .service(resource(&["/ready"]).route(web::get().to(health::get_ready)))
        .service(resource(&["/metrics"]).route(web::get().to(health::get_metrics)))
        .service(
            resource(&[
                "/.well-known/oauth-authorization-server",
                "/.well-known/oauth-authorization-server/{tail:.*}",
                "/.well-known/openid-configuration",
            ])
            .wrap(cors())
            .route(web::get().to(metadata::get_authorization_server)),
        )
        .service(
            resource(&["/.well-known/oauth-protected-resource", "/.well-known/oauth-protected-resource/{tail:.*}"])
                .wrap(cors())
                .route(web::get().to(metadata::get_protected_resource)),
        )
        .service(resource(&["/jwks"]).wrap(cors()).route(web::get().to(metadata::get_jwks)))
        .service(
            resource(&["/register"])
                .wrap(RateLimit(Bucket::Register))
                .wrap(cors())
                .route(web::post().to(register::post_register)),
        )
        .service(
            resource(&["/register/{client_id}"])
                .wrap(RateLimit(Bucket::Register))
                .wrap(cors())
                .route(web::get().to(register::get_client))
                .route(web::put().to(register::put_client))
                .route(web::delete().to(register::delete_client)),
        )
        .service(
            resource(&["/authorize"]).wrap(RateLimit(Bucket::Authorize)).route(web::get().to(authorize::get_authorize)),
        )
        .service(
            resource(&["/login"])
                .wrap(RateLimit(Bucket::Login))
                .route(web::get().to(authorize::get_login))
                .route(web::post().to(authorize::post_login)),
        )
        .service(
            resource(&["/consent"])
                .wrap(RateLimit(Bucket::Login))
                .route(web::get().to(consent::get_consent))
                .route(web::post().to(consent::post_consent)),
        )
        .service(
            resource(&["/login/{provider}"])
                .wrap(RateLimit(Bucket::Login))
                .route(web::get().to(authorize::get_login_provider)),
        )
        .service(
            resource(&["/callback", "/callback/{provider}"])
                .wrap(RateLimit(Bucket::Login))
                .route(web::get().to(authorize::get_callback)),
        )
        .service(
            resource(&["/token"]).wrap(RateLimit(Bucket::Token)).wrap(cors()).route(web::post().to(token::post_token)),
        )
        .service(
            resource(&["/device_authorization"])
                .wrap(RateLimit(Bucket::Device))
                .wrap(cors())
                .route(web::post().to(device::post_device_authorization)),
        )
        .service(resource(&["/device"]).wrap(RateLimit(Bucket::Device)).route(web::get().to(device::get_device)))
        .service(
            resource(&["/device/confirm"])
                .wrap(RateLimit(Bucket::Device))
                .route(web::get().to(device::get_device_confirm))
                .route(web::post().to(device::post_device_confirm)),
        )
        .service(
            resource(&["/revoke"])
                .wrap(RateLimit(Bucket::Revoke))
                .wrap(cors())
                .route(web::post().to(token::post_revoke)),
        )
        .service(
            resource(&["/introspect"]).wrap(RateLimit(Bucket::Revoke)).route(web::post().to(token::post_introspect)),
        )
        .default_service(web::to(not_found));
}

/// The per-address limit of a bucket in front of a resource (`.wrap(RateLimit(bucket))` inside
/// its CORS layer, so that preflights are not counted and refusals carry the CORS headers a
/// browser client needs to read them).
#[derive(Clone, Copy)]
struct RateLimit(Bucket);

impl<S> Transform<S, ServiceRequest> for RateLimit
where
    S: Service<ServiceRequest, Response = ServiceResponse<BoxBody>, Error = actix_web::Error> + 'static,
{
    type Response = ServiceResponse<BoxBody>;
    type Error = actix_web::Error;
    type Transform = RateLimited<S>;
    type InitError = ();
    type Future = std::future::Ready<Result<Self::Transform, ()>>;

    fn new_transform(&self, service: S) -> Self::Future {
        std::future::ready(Ok(RateLimited { service: Rc::new(service), bucket: self.0 }))
    }
}

/// The service [`RateLimit`] wraps around a resource.
struct RateLimited<S> {
    service: Rc<S>,
    bucket: Bucket,
}

impl<S> Service<ServiceRequest> for RateLimited<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<BoxBody>, Error = actix_web::Error> + 'static,
{
    type Response = ServiceResponse<BoxBody>;
    type Error = actix_web::Error;
    type Future = LocalBoxFuture<'static, Result<Self::Response, Self::Error>>;

    forward_ready!(service);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        if let Some(app) = req.app_data::<web::Data<AppState>>() {
            let addr = app.dialect.client_ip(req.request());
            if let Err(wait) = app.limits.check_address(self.bucket, addr) {
                let res = rate_limited(app, self.bucket, wait, addr);
                return Box::pin(std::future::ready(Ok(req.into_response(res))));
            }
        }
        Box::pin(self.service.call(req))
    }
}

/// The answer to a request over its limit: an HTML page for people's browsers, the RFC JSON
/// error for clients; both `429` with `Retry-After`.
pub fn rate_limited(app: &AppState, bucket: Bucket, wait: RetryAfter, addr: Option<std::net::IpAddr>) -> HttpResponse {
    app.metrics.rate_limited(bucket);
    // Debug only: a flood would otherwise flood the log too; the metric counts every refusal.
    tracing::debug!(limit = %bucket, client_ip = ?addr, retry_after = wait.secs(), "rate limited");
    if bucket.is_browser() {
        let mut res =
            page::error(429, &format!("Too many requests from your address. Try again in {} seconds.", wait.secs()));
        res.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(wait.secs()));
        res
    } else {
        actix_web::ResponseError::error_response(&Error::RateLimited(wait))
    }
}

/// A resource whose unsupported methods get a JSON 405 rather than an empty one.
fn resource(paths: &[&str]) -> actix_web::Resource {
    web::resource(paths.to_vec()).default_service(web::to(method_not_allowed))
}

async fn method_not_allowed() -> HttpResponse {
    HttpResponse::MethodNotAllowed().json(serde_json::json!({
        "error": "invalid_request",
        "error_description": "this endpoint does not accept that HTTP method",
    }))
}

/// CORS for the endpoints browser-based MCP clients call directly (metadata, registration,
/// token). No cookies are involved there, so any origin may call them.
fn cors() -> Cors {
    Cors::default()
        .allow_any_origin()
        .allowed_methods(["GET", "POST", "PUT", "DELETE"])
        .allow_any_header()
        .expose_headers([header::WWW_AUTHENTICATE, header::RETRY_AFTER])
        .max_age(3600)
}

async fn not_found() -> HttpResponse {
    HttpResponse::NotFound().json(serde_json::json!({ "error": "not_found", "error_description": "no such endpoint" }))
}

/// Reads a body of at most [`MAX_BODY`] bytes, arriving within [`BODY_TIMEOUT`].
pub async fn read_body(mut payload: web::Payload) -> Result<web::Bytes, Error> {
    let read = async {
        let mut body = web::BytesMut::new();
        while let Some(chunk) = payload.next().await {
            let chunk = chunk.map_err(|_| Error::invalid_request("the request body could not be read"))?;
            if body.len() + chunk.len() > MAX_BODY {
                return Err(Error::invalid_request(format!("the request body exceeds {MAX_BODY} bytes")));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body.freeze())
    };
    // SECURITY: a client trickling its body would hold a connection (and a worker's attention)
    // for as long as it likes; the head has its own timeout (`server.request_timeout`).
    tokio::time::timeout(BODY_TIMEOUT, read).await.map_err(|_| {
        Error::invalid_request(format!("the request body did not arrive within {} s", BODY_TIMEOUT.as_secs()))
    })?
}

/// An `application/x-www-form-urlencoded` body (RFC 6749 §3.2), parsed strictly.
pub async fn read_form(req: &HttpRequest, payload: web::Payload) -> Result<Params, Error> {
    let ct = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !ct.trim_start().to_ascii_lowercase().starts_with("application/x-www-form-urlencoded") {
        return Err(Error::invalid_request("the body must be application/x-www-form-urlencoded"));
    }
    Params::parse(&read_body(payload).await?).map_err(Error::invalid_request)
}

/// The `Authorization: Bearer` token, if any (RFC 6750 §2.1).
pub fn bearer(req: &HttpRequest) -> Option<&str> {
    crate::verify::bearer_token(req.headers().get(header::AUTHORIZATION)?.to_str().ok()?)
}

/// A response that no cache may keep (RFC 6749 §5.1).
pub fn no_store(mut res: HttpResponseBuilder) -> HttpResponseBuilder {
    res.insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")));
    res.insert_header((header::PRAGMA, HeaderValue::from_static("no-cache")));
    res
}

/// Request spans without query strings (they can hold codes) and with a request id taken
/// from a well-formed `X-Request-Id` or generated.
pub struct RequestSpan;

impl RootSpanBuilder for RequestSpan {
    fn on_request_start(request: &ServiceRequest) -> Span {
        // `/verify` answers every proxied MCP request and `/health` every probe: their spans are
        // debug-level, so that at the default level they cost nothing (refusals are logged by
        // `verify::log_decision` with their own fields).
        let path = request.path();
        let span = if path == "/verify" || path == "/health" || path.starts_with("/verify/") {
            tracing::debug_span!(
                "request",
                method = %request.method(),
                path = %path,
                request_id = tracing::field::Empty,
                status = tracing::field::Empty,
            )
        } else {
            tracing::info_span!(
                "request",
                method = %request.method(),
                path = %path,
                request_id = tracing::field::Empty,
                client_ip = tracing::field::Empty,
                status = tracing::field::Empty,
            )
        };
        if span.is_disabled() {
            return span;
        }
        // Who, for every audit event of the request (the address the rate limits use).
        if let Some(app) = request.app_data::<web::Data<AppState>>()
            && let Some(ip) = app.dialect.client_ip(request.request())
        {
            span.record("client_ip", tracing::field::display(ip));
        }
        let incoming = request
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .filter(|v| v.len() <= 64 && v.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)))
            .map(str::to_owned);
        let id = incoming
            .unwrap_or_else(|| request.extensions().get::<RequestId>().map(|r| r.to_string()).unwrap_or_default());
        span.record("request_id", tracing::field::display(&id));
        span
    }

    fn on_request_end<B: actix_web::body::MessageBody>(
        span: Span,
        outcome: &Result<ServiceResponse<B>, actix_web::Error>,
    ) {
        let status = match outcome {
            Ok(res) => res.status().as_u16(),
            Err(e) => e.as_response_error().status_code().as_u16(),
        };
        span.record("status", status);
        let _enter = span.enter();
        if status >= 500 {
            tracing::warn!(status, "request failed");
        } else {
            tracing::debug!(status, "request done");
        }
    }
}
