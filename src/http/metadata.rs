//! Discovery: RFC 8414 authorization server metadata, RFC 9728 protected resource metadata,
//! and the RFC 7517 JWK Set.

use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::json;

use crate::AppState;
use crate::oauth::client::{AuthMethod, SUPPORTED_GRANTS};

/// `GET /.well-known/oauth-authorization-server` (and the `openid-configuration` alias).
pub async fn get_authorization_server(app: web::Data<AppState>) -> HttpResponse {
    let c = &app.config;
    let base = c.base_url();
    let algs: Vec<String> = app.keys.algorithms().iter().map(|a| format!("{a:?}")).collect();
    let mut doc = json!({
        "issuer": c.server.issuer,
        "authorization_endpoint": format!("{base}/authorize"),
        "token_endpoint": format!("{base}/token"),
        "revocation_endpoint": format!("{base}/revoke"),
        "introspection_endpoint": format!("{base}/introspect"),
        "jwks_uri": format!("{base}/jwks"),
        "device_authorization_endpoint": format!("{base}/device_authorization"),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": SUPPORTED_GRANTS,
        "token_endpoint_auth_methods_supported": AuthMethod::SUPPORTED,
        "revocation_endpoint_auth_methods_supported": AuthMethod::SUPPORTED,
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "code_challenge_methods_supported": ["S256"],
        "scopes_supported": c.oauth.scopes_supported,
        "authorization_response_iss_parameter_supported": true,
        "access_token_signing_alg_values_supported": algs,
        "client_id_metadata_document_supported": app.cimd.is_some(),
    });
    if c.registration.enabled {
        doc["registration_endpoint"] = json!(format!("{base}/register"));
    }
    HttpResponse::Ok().insert_header((header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=300"))).json(doc)
}

/// `GET /.well-known/oauth-protected-resource[/{path}]` (RFC 9728 §3), for the MCP server the
/// request came for: its origin from the (trusted) forwarded headers, its path from ours.
pub async fn get_protected_resource(app: web::Data<AppState>, req: HttpRequest) -> HttpResponse {
    let origin = app.dialect.request_origin(&req);
    let path = req.path().trim_start_matches("/.well-known/oauth-protected-resource");
    let Some(resource) = app.verifier.resources().for_metadata(&origin, path, &app.config.oauth.scopes_supported)
    else {
        return HttpResponse::NotFound().json(json!({
            "error": "invalid_request",
            "error_description": "no protected resource is configured at this URL",
        }));
    };
    HttpResponse::Ok().insert_header((header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=300"))).json(
        json!({
            "resource": resource.identifier(),
            "authorization_servers": [app.config.server.issuer],
            "scopes_supported": resource.scopes,
            "bearer_methods_supported": ["header"],
        }),
    )
}

/// `GET /jwks`: current and previous public keys.
pub async fn get_jwks(app: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=300")))
        .json(app.keys.jwks())
}
