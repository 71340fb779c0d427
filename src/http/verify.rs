//! `/verify` and `/verify/{tail}`, any method: the ForwardAuth decision (see `crate::verify`).

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};

use super::bearer;
use crate::AppState;
use crate::metrics::Transport;
use crate::ratelimit::Bucket;
use crate::verify;
use crate::verify::http::respond;

/// Answers the proxy's subrequest: 200 + identity, or 401/403 + challenge, or 503.
pub async fn any_verify(app: web::Data<AppState>, req: HttpRequest) -> HttpResponse {
    let start = std::time::Instant::now();
    if app.limits.is_limited(Bucket::Verify)
        && let Err(wait) = app.limits.check_address(Bucket::Verify, app.dialect.client_ip(&req))
    {
        return super::rate_limited(&app, Bucket::Verify, wait, app.dialect.client_ip(&req));
    }
    let original = app.dialect.original_request(&req);
    let decision = app.verifier.decide(&original, bearer(&req));
    app.metrics.decision(Transport::Http, &decision, start.elapsed());
    verify::log_decision(&original, &decision);
    respond(&app.answers, decision, &original, req.headers().get(header::AUTHORIZATION))
}
