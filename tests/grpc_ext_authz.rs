//! Envoy ext_authz over gRPC, against the real binary with a real tonic client (envoy-types'
//! generated `AuthorizationClient`, tonic-health's `HealthClient`): the same decisions as
//! `/verify`, told the way Envoy acts on them (OK + headers to set / remove, or Denied + the
//! HTTP status, `WWW-Authenticate` and body the client gets).

mod common;

use std::collections::HashMap;

use common::server::{OTHER_RESOURCE, Options, RESOURCE, Server, free_port};
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Request as AttrRequest};
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use envoy_types::pb::envoy::service::auth::v3::check_response::HttpResponse;
use envoy_types::pb::envoy::service::auth::v3::{AttributeContext, CheckRequest, CheckResponse};
use tonic::Code;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

struct Grpc {
    server: Server,
    port: u16,
}

fn start(trusted: &str) -> Grpc {
    let port = free_port();
    let server = Server::start_with(Options {
        toml: format!(
            "[oauth]\nscopes_supported = [\"mcp\", \"admin\"]\n\n[verify]\ngrpc_bind = \"127.0.0.1:{port}\"\n\n\
             [[resources]]\nurl = \"https://tools.example.com/mcp\"\n\
             [[resources.rules]]\nmethod = \"tools/call\"\nname = \"environmentDump\"\nrequired_scopes = [\"admin\"]\n"
        ),
        env: vec![("MCP_AUTHD__SERVER__TRUSTED_PROXIES".into(), trusted.into())],
        ..Options::default()
    });
    Grpc { server, port }
}

impl Grpc {
    async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://127.0.0.1:{}", self.port)).unwrap().connect().await.unwrap()
    }

    async fn check(&self, url: &str, headers: &[(&str, &str)]) -> Result<CheckResponse, tonic::Status> {
        let url = url::Url::parse(url).unwrap();
        let http = HttpRequest {
            method: "POST".into(),
            scheme: url.scheme().into(),
            host: url.host_str().unwrap().into(),
            path: url.path().into(),
            headers: headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            ..Default::default()
        };
        let req = CheckRequest {
            attributes: Some(AttributeContext {
                request: Some(AttrRequest { http: Some(http), ..Default::default() }),
                ..Default::default()
            }),
        };
        AuthorizationClient::new(self.channel().await).check(req).await.map(|r| r.into_inner())
    }
}

/// (gRPC code, HTTP status, headers) of a Denied response.
fn denied(res: &CheckResponse) -> (Code, i32, HashMap<String, String>, String) {
    let code = Code::from(res.status.as_ref().unwrap().code);
    let Some(HttpResponse::DeniedResponse(d)) = &res.http_response else { panic!("not denied: {res:?}") };
    let headers =
        d.headers.iter().filter_map(|h| h.header.as_ref()).map(|h| (h.key.clone(), h.value.clone())).collect();
    (code, d.status.as_ref().unwrap().code, headers, d.body.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_answers_like_verify() {
    let g = start("127.0.0.1/32");
    let tools = "https://tools.example.com/mcp";
    let token = g.server.mint(&["--sub", "u1", "--aud", tools, "--name", "Zoë", "--email", "o@example.com"]);
    let bearer = format!("Bearer {token}");

    // Allowed: OK, the identity headers overwrite whatever the client sent, the token is removed.
    let res = g
        .check(tools, &[("authorization", &bearer), ("mcp-method", "tools/list"), ("x-user-id", "forged")])
        .await
        .unwrap();
    assert_eq!(Code::from(res.status.as_ref().unwrap().code), Code::Ok, "{res:?}");
    let Some(HttpResponse::OkResponse(ok)) = &res.http_response else { panic!("{res:?}") };
    let set: HashMap<_, _> = ok
        .headers
        .iter()
        .map(|h| {
            // OVERWRITE_IF_EXISTS_OR_ADD, so a client's own X-User-Id is replaced, not appended to.
            assert_eq!(h.append_action, 2, "{h:?}");
            let hv = h.header.as_ref().unwrap();
            (hv.key.as_str(), hv.value.as_str())
        })
        .collect();
    assert_eq!(set["x-user-id"], "u1");
    assert_eq!(set["x-user-name"], "Zoë", "a UTF-8 name goes through as it is");
    assert_eq!(set["x-user-email"], "o@example.com");
    assert_eq!(set["x-client-id"], "mcp-authd-cli");
    assert_eq!(set["x-scope"], "mcp");
    assert_eq!(ok.headers_to_remove, vec!["authorization".to_string()]);

    // No token: 401 with the RFC 9728 pointer, and the scope to ask for.
    let (code, status, headers, body) = denied(&g.check(tools, &[("mcp-method", "initialize")]).await.unwrap());
    assert_eq!((code, status), (Code::Unauthenticated, 401));
    assert_eq!(
        headers["www-authenticate"],
        "Bearer resource_metadata=\"https://tools.example.com/.well-known/oauth-protected-resource/mcp\", scope=\"mcp\""
    );
    assert_eq!(headers["content-type"], "application/json");
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["error"], "invalid_token");
    // ... which includes what the rule for this tool needs, so one login is enough.
    let call = [("mcp-method", "tools/call"), ("mcp-name", "environmentDump")];
    let (_, status, headers, _) = denied(&g.check(tools, &call).await.unwrap());
    assert_eq!(status, 401);
    assert!(headers["www-authenticate"].ends_with("scope=\"mcp admin\""), "{headers:?}");

    // A token that is not ours: 401 invalid_token.
    let (code, status, headers, _) = denied(&g.check(tools, &[("authorization", "Bearer abc.def.ghi")]).await.unwrap());
    assert_eq!((code, status), (Code::Unauthenticated, 401));
    assert!(headers["www-authenticate"].contains("error=\"invalid_token\""), "{headers:?}");

    // A token for another resource (RFC 8707 audience): 401.
    let other = format!("Bearer {}", g.server.mint(&["--sub", "u1", "--aud", OTHER_RESOURCE]));
    let (code, status, headers, _) = denied(&g.check(tools, &[("authorization", &other)]).await.unwrap());
    assert_eq!((code, status), (Code::Unauthenticated, 401));
    assert!(headers["www-authenticate"].contains("another resource"), "{headers:?}");

    // The per-tool rule: 403 insufficient_scope for step-up.
    let call = [("authorization", bearer.as_str()), ("mcp-method", "tools/call"), ("mcp-name", "environmentDump")];
    let (code, status, headers, body) = denied(&g.check(tools, &call).await.unwrap());
    assert_eq!((code, status), (Code::PermissionDenied, 403));
    assert!(headers["www-authenticate"].starts_with("Bearer error=\"insufficient_scope\", scope=\"admin\""));
    assert!(body.contains("insufficient_scope"), "{body}");

    // A URL no resource covers.
    let (_, status, _, _) =
        denied(&g.check("https://elsewhere.example.com/mcp", &[("authorization", &bearer)]).await.unwrap());
    assert_eq!(status, 403);
    let (_, status, _, _) =
        denied(&g.check(RESOURCE, &[("authorization", &bearer), ("mcp-method", "tools/list")]).await.unwrap());
    assert_eq!(status, 401, "token for tools.example.com used on mcp.example.com");

    // A CheckRequest without HTTP attributes is a caller error, not a decision.
    let err = AuthorizationClient::new(g.channel().await).check(CheckRequest::default()).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);

    // The standard health service says SERVING, overall and for the Authorization service.
    let mut health = HealthClient::new(g.channel().await);
    for service in ["", "envoy.service.auth.v3.Authorization"] {
        let res = health.check(HealthCheckRequest { service: service.into() }).await.unwrap().into_inner();
        assert_eq!(res.status(), ServingStatus::Serving, "{service:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_refuses_callers_that_are_not_trusted_proxies() {
    // SECURITY: a caller of Check describes the request it wants allowed; only proxies may call.
    let g = start("10.0.0.0/8");
    let token = g.server.mint(&["--sub", "u1", "--aud", "https://tools.example.com/mcp"]);
    let err =
        g.check("https://tools.example.com/mcp", &[("authorization", &format!("Bearer {token}"))]).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert!(g.server.logs().contains("not in server.trusted_proxies"));
}
