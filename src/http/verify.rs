//! `/verify` and `/verify/{tail}`, any method: the ForwardAuth decision (see `crate::verify`).

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};

use super::bearer;
use crate::AppState;
use crate::verify::Decision;

/// Answers the proxy's subrequest: 200 + identity, or 401/403 + challenge, or 503.
pub async fn any_verify(app: web::Data<AppState>, req: HttpRequest) -> HttpResponse {
    let original = app.dialect.original_request(&req);
    let decision = app.verifier.decide(&original, bearer(&req));
    match &decision {
        Decision::Allow(_) => {}
        Decision::Unauthorized { error: None, .. } => {
            tracing::debug!(host = %original.host, "verify: no token")
        }
        other => tracing::info!(
            audit = "verify_denied", auth = "failure", host = %original.host, path = %original.path(),
            decision = decision_name(other), "request denied"
        ),
    }
    app.dialect.respond(decision, req.headers().get(header::AUTHORIZATION))
}

fn decision_name(d: &Decision) -> &'static str {
    match d {
        Decision::Allow(_) => "allow",
        Decision::Unauthorized { error: Some(e), .. } => e,
        Decision::Unauthorized { .. } => "no token",
        Decision::Forbidden { description, .. } => description,
        Decision::NotProtected => "not a protected resource",
        Decision::Unavailable => "revocations unavailable",
    }
}
