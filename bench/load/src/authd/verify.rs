//! A fixed number of `/verify` calls the way Traefik's forwardAuth makes them
//! (`X-Forwarded-Method/-Proto/-Host/-Uri` describing the original request), for counting what
//! mcp-authd does per call (Redis commands) rather than for timing.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use futures_util::future::join_all;
use url::Url;

/// The forwardAuth headers for a request `POST <resource>`.
pub fn forwarded_headers(resource: &str) -> Result<Vec<(&'static str, String)>> {
    let url = Url::parse(resource).context("--resource")?;
    let host = match url.port() {
        Some(p) => format!("{}:{p}", url.host_str().unwrap_or_default()),
        None => url.host_str().unwrap_or_default().to_owned(),
    };
    Ok(vec![
        ("x-forwarded-method", "POST".to_owned()),
        ("x-forwarded-proto", url.scheme().to_owned()),
        ("x-forwarded-host", host),
        ("x-forwarded-uri", url.path().to_owned()),
    ])
}

/// What the calls got.
#[derive(Debug, Default)]
pub struct Counted {
    /// Calls made.
    pub requests: u64,
    /// Answers by HTTP status (0: no answer).
    pub statuses: BTreeMap<u16, u64>,
    /// Wall time.
    pub wall: Duration,
}

impl Counted {
    /// Calls that did not get a 200.
    pub fn not_ok(&self) -> u64 {
        self.requests - self.statuses.get(&200).copied().unwrap_or(0)
    }
}

/// `requests` calls of `GET <base>/verify`, `concurrency` at a time, token `i` of the call being
/// `tokens[i % tokens.len()]`.
pub async fn count(
    base: &str,
    resource: &str,
    tokens: &[String],
    requests: usize,
    concurrency: usize,
) -> Result<Counted> {
    let http = super::flow::http()?;
    let url = Url::parse(base)?.join("/verify")?;
    let headers = Arc::new(forwarded_headers(resource)?);
    let tokens = Arc::new(tokens.iter().map(|t| format!("Bearer {t}")).collect::<Vec<_>>());
    anyhow::ensure!(!tokens.is_empty(), "no token");
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let tasks = (0..concurrency).map(|_| {
        let (http, url, headers, tokens, next) =
            (http.clone(), url.clone(), headers.clone(), tokens.clone(), next.clone());
        tokio::spawn(async move {
            let mut statuses = BTreeMap::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= requests {
                    break;
                }
                let mut req = http.get(url.clone()).header("authorization", &tokens[i % tokens.len()]);
                for (k, v) in headers.iter() {
                    req = req.header(*k, v);
                }
                let status = match req.send().await {
                    Ok(res) => {
                        let s = res.status().as_u16();
                        let _ = res.bytes().await;
                        s
                    }
                    Err(_) => 0,
                };
                *statuses.entry(status).or_insert(0u64) += 1;
            }
            statuses
        })
    });
    let mut counted = Counted::default();
    for done in join_all(tasks).await {
        for (s, n) in done? {
            *counted.statuses.entry(s).or_insert(0) += n;
            counted.requests += n;
        }
    }
    counted.wall = start.elapsed();
    Ok(counted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traefik_headers() {
        let h = forwarded_headers("https://mcp.example.com/mcp").unwrap();
        assert_eq!(h[1], ("x-forwarded-proto", "https".to_owned()));
        assert_eq!(h[2], ("x-forwarded-host", "mcp.example.com".to_owned()));
        assert_eq!(h[3], ("x-forwarded-uri", "/mcp".to_owned()));
        let h = forwarded_headers("http://localhost:9000/a/mcp").unwrap();
        assert_eq!(h[2].1, "localhost:9000");
        assert_eq!(h[3].1, "/a/mcp");
    }
}
