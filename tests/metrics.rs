//! `GET /metrics` (Prometheus text format) counts what happened: decisions by transport and
//! outcome with their latency, tokens issued by grant, refresh-token reuse.

mod common;

use common::oauth::*;
use common::server::{RESOURCE, Server};
use reqwest::StatusCode;

async fn metrics(s: &Server) -> String {
    let res = http().get(s.url("/metrics")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.headers()["content-type"].to_str().unwrap().starts_with("text/plain; version=0.0.4"));
    res.text().await.unwrap()
}

/// The value of the sample line `name{labels}` (or `name`).
fn sample(text: &str, series: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("{series} missing from:\n{text}"))
        .parse::<f64>()
        .unwrap() as u64
}

#[tokio::test]
async fn metrics_count_decisions_tokens_and_reuse() {
    let s = Server::start();
    let before = metrics(&s).await;
    assert_eq!(sample(&before, "mcp_authd_decisions_total{transport=\"http\",outcome=\"allowed\"}"), 0);

    let client = register_public(&s).await;
    let tokens = tokens_for(&s, &client, RESOURCE).await;
    let access = tokens["access_token"].as_str().unwrap();
    for _ in 0..3 {
        assert_eq!(verify(&s, Some(access), RESOURCE).await.status(), StatusCode::OK);
    }
    assert_eq!(verify(&s, None, RESOURCE).await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(verify(&s, Some("a.b.c"), RESOURCE).await.status(), StatusCode::UNAUTHORIZED);
    // Rotate the refresh token, then present the old one again: reuse.
    let old = tokens["refresh_token"].as_str().unwrap();
    let (st, _) = refresh(&s, &client.id, old).await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = refresh(&s, &client.id, old).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);

    let m = metrics(&s).await;
    let decisions =
        |outcome: &str| sample(&m, &format!("mcp_authd_decisions_total{{transport=\"http\",outcome=\"{outcome}\"}}"));
    assert_eq!(decisions("allowed"), 3);
    assert_eq!(decisions("no_token"), 1);
    assert_eq!(decisions("invalid_token"), 1);
    assert_eq!(sample(&m, "mcp_authd_decision_seconds_count{transport=\"http\"}"), 5);
    assert_eq!(sample(&m, "mcp_authd_decision_seconds_bucket{transport=\"http\",le=\"+Inf\"}"), 5);
    assert_eq!(sample(&m, "mcp_authd_tokens_issued_total{grant_type=\"authorization_code\"}"), 1);
    assert_eq!(sample(&m, "mcp_authd_tokens_issued_total{grant_type=\"refresh_token\"}"), 1);
    assert_eq!(sample(&m, "mcp_authd_refresh_token_reuse_total"), 1);
    // Every sample line parses as a number (a scraper would choke otherwise).
    for line in m.lines().filter(|l| !l.starts_with('#')) {
        let value = line.rsplit(' ').next().unwrap();
        assert!(value.parse::<f64>().is_ok(), "{line}");
    }
}

/// The Grafana dashboard in deploy/ queries only series mcp-authd exports (it would show empty
/// panels after a rename otherwise).
#[tokio::test]
async fn the_grafana_dashboard_queries_exported_series() {
    let s = Server::start();
    let exported = metrics(&s).await;
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/grafana/mcp-authd.json")).unwrap(),
    )
    .expect("the dashboard is JSON");
    let mut queried = 0;
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            for (i, _) in expr.match_indices("mcp_authd_") {
                let name: String = expr[i..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
                assert!(
                    exported.lines().any(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} "))),
                    "panel {:?} queries {name}, which /metrics does not export",
                    panel["title"]
                );
                queried += 1;
            }
        }
    }
    assert!(queried >= 9, "the dashboard queries mcp-authd's series ({queried})");
}
