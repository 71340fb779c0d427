//! `mcp-bench authd grpc`: Envoy's ext_authz gRPC `Check` (envoy.service.auth.v3.Authorization)
//! as Envoy calls it, with envoy-types' generated tonic client: one HTTP/2 channel per
//! connection, one `Check` in flight on each, the original request described by its HTTP
//! attributes (method, scheme, host, path, headers with the bearer token).

use std::path::PathBuf;

use anyhow::{Context, Result};
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Request as AttrRequest};
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use envoy_types::pb::envoy::service::auth::v3::check_response::HttpResponse;
use envoy_types::pb::envoy::service::auth::v3::{AttributeContext, CheckRequest, CheckResponse};
use futures_util::future::join_all;
use tonic::transport::Channel;
use url::Url;

use super::load::{self, Outcome, Timing, Worker};
use super::results::{self, Common, Record, Row};

/// Options of `mcp-bench authd grpc`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    common: Common,
    #[command(flatten)]
    timing: Timing,
    /// mcp-authd's `verify.grpc_bind` address (`127.0.0.1:PORT`).
    #[arg(long)]
    addr: String,
    /// The protected resource URL the described request goes to.
    #[arg(long)]
    resource: String,
    /// A file whose first line is the access token to send.
    #[arg(long, value_name = "PATH")]
    token_file: PathBuf,
}

/// The `CheckRequest` Envoy sends for `POST <resource>` with `Authorization: Bearer <token>`.
pub fn check_request(resource: &str, token: &str) -> Result<CheckRequest> {
    let url = Url::parse(resource).context("--resource")?;
    let http = HttpRequest {
        method: "POST".into(),
        scheme: url.scheme().into(),
        host: url.host_str().context("--resource has no host")?.into(),
        path: url.path().into(),
        protocol: "HTTP/1.1".into(),
        headers: [
            ("authorization".to_owned(), format!("Bearer {token}")),
            ("mcp-method".to_owned(), "tools/list".to_owned()),
            ("content-type".to_owned(), "application/json".to_owned()),
        ]
        .into(),
        ..Default::default()
    };
    Ok(CheckRequest {
        attributes: Some(AttributeContext {
            request: Some(AttrRequest { http: Some(http), ..Default::default() }),
            ..Default::default()
        }),
    })
}

/// Allowed: gRPC status OK and an `OkResponse` (with the identity headers to set).
pub fn allowed(res: &CheckResponse) -> bool {
    res.status.as_ref().is_some_and(|s| s.code == 0)
        && matches!(&res.http_response, Some(HttpResponse::OkResponse(ok)) if !ok.headers.is_empty())
}

struct CheckWorker {
    client: AuthorizationClient<Channel>,
    request: CheckRequest,
}

impl Worker for CheckWorker {
    async fn once(&mut self) -> Outcome {
        match self.client.check(self.request.clone()).await {
            Ok(res) if allowed(res.get_ref()) => Outcome::Expected,
            Ok(_) => Outcome::Unexpected,
            Err(_) => Outcome::Error,
        }
    }
}

/// Runs the Check load and appends its row.
pub async fn run(args: Args) -> Result<()> {
    let token = std::fs::read_to_string(&args.token_file)
        .with_context(|| format!("reading {}", args.token_file.display()))?
        .lines()
        .next()
        .context("empty token file")?
        .trim()
        .to_owned();
    let request = check_request(&args.resource, &token)?;
    let endpoint = format!("http://{}", args.addr);
    let channels = (0..args.timing.connections).map(|_| {
        let endpoint = endpoint.clone();
        async move { Channel::from_shared(endpoint)?.connect().await.context("connecting to the gRPC port") }
    });
    let channels = join_all(channels).await.into_iter().collect::<Result<Vec<_>>>()?;
    let mut first = AuthorizationClient::new(channels[0].clone());
    let res = first.check(request.clone()).await.context("the first Check")?.into_inner();
    anyhow::ensure!(allowed(&res), "the valid token is not allowed by Check: {res:?}");
    let workers = channels
        .into_iter()
        .map(|c| CheckWorker { client: AuthorizationClient::new(c), request: request.clone() })
        .collect();
    let (measured, _) = load::run(workers, args.timing.warmup(), args.timing.duration()).await?;
    let row = Row::from_measured(&args.common, args.timing.connections, "gRPC OK", &measured);
    eprintln!("{}", row.summary());
    results::append(&args.common.rows, &Record::Load(row))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describes_the_original_request() {
        let req = check_request("https://mcp.example.com/mcp", "abc").unwrap();
        let http = req.attributes.unwrap().request.unwrap().http.unwrap();
        assert_eq!((http.method.as_str(), http.scheme.as_str()), ("POST", "https"));
        assert_eq!((http.host.as_str(), http.path.as_str()), ("mcp.example.com", "/mcp"));
        assert_eq!(http.headers["authorization"], "Bearer abc");
        assert!(!allowed(&CheckResponse::default()));
    }
}
