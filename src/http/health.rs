//! Liveness and readiness (the Helm probes), and the Prometheus metrics.

use std::sync::atomic::Ordering;

use actix_web::{HttpResponse, web};
use serde_json::json;

use crate::AppState;

/// `GET /health`: the process answers.
pub async fn get_health() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

/// `GET /ready`: the store answers and the server is not draining.
pub async fn get_ready(app: web::Data<AppState>) -> HttpResponse {
    if app.draining.load(Ordering::Acquire) {
        return HttpResponse::ServiceUnavailable().json(json!({ "status": "draining" }));
    }
    match app.store.ping().await {
        Ok(()) => HttpResponse::Ok().json(json!({ "status": "ready" })),
        Err(err) => {
            tracing::warn!(error = %err, "readiness: store unreachable");
            HttpResponse::ServiceUnavailable().json(json!({ "status": "store unavailable" }))
        }
    }
}

/// `GET /metrics`: Prometheus text exposition (see `crate::metrics`).
pub async fn get_metrics(app: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain; version=0.0.4; charset=utf-8").body(app.metrics.render())
}
