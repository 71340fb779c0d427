//! The fetch tool on real local servers (127.0.0.1, with the TEST-ONLY loopback allowance):
//! content types, pagination, the size, decompression, time and redirect bounds, robots.txt.

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::http::StatusCode;
use common::*;
use mcp_fetch::FetchConfig;
use serde_json::json;

#[tokio::test]
async fn html_becomes_markdown() {
    let origin = spawn_origin(Origin::default()).await;
    let client = client_with(test_config()).await;
    let url = format!("http://127.0.0.1:{}/page.html", origin.port());
    let text = fetch_ok(&client, &url).await;
    assert!(text.starts_with(&format!("Contents of {url} (\"Test Page\", HTML converted to Markdown):\n")), "{text}");
    assert!(text.contains("# Welcome"), "{text}");
    assert!(text.contains("Some **bold** text and a [link](/next)."), "{text}");
    assert!(text.contains("first") && text.contains("second"), "{text}");
    assert!(!text.contains("tracking") && !text.contains("color: red") && !text.contains("<h1>"), "{text}");

    let raw = fetch(&client, json!({ "url": url, "raw": true })).await;
    assert!(!raw.is_error);
    assert!(
        raw.text.contains("(text/html; charset=utf-8, as is)") && raw.text.contains("<h1>Welcome</h1>"),
        "{}",
        raw.text
    );
}

#[tokio::test]
async fn text_json_and_charsets() {
    let origin = spawn_origin(Origin::default()).await;
    let client = client_with(test_config()).await;
    let base = format!("http://127.0.0.1:{}", origin.port());
    assert_eq!(
        fetch_ok(&client, &format!("{base}/text")).await,
        format!("Contents of {base}/text (text/plain; charset=utf-8, as is):\nhello, plain text")
    );
    assert!(fetch_ok(&client, &format!("{base}/latin1")).await.ends_with("\ncafé"));
    assert_eq!(
        fetch_ok(&client, &format!("{base}/data.json")).await,
        format!(
            "Contents of {base}/data.json (JSON, pretty-printed):\n{{\n  \"name\": \"mcp\",\n  \"list\": [\n    1,\n    2\n  ]\n}}"
        )
    );
    let raw = fetch(&client, json!({ "url": format!("{base}/data.json"), "raw": true })).await;
    assert!(raw.text.ends_with("\n{\"name\":\"mcp\",\"list\":[1,2]}"), "{}", raw.text);
}

#[tokio::test]
async fn images_are_image_content_and_other_binaries_are_refused() {
    let origin = spawn_origin(Origin::default()).await;
    let client = client_with(test_config()).await;
    let base = format!("http://127.0.0.1:{}", origin.port());
    let out = fetch(&client, json!({ "url": format!("{base}/image.png") })).await;
    assert!(!out.is_error, "{}", out.text);
    assert_eq!(out.images, vec![("image/png".to_string(), PNG_B64.to_string())]);
    assert_eq!(out.text, format!("Image from {base}/image.png (image/png, 70 bytes)"));

    let err = fetch_err(&client, &format!("{base}/archive.zip")).await;
    assert_eq!(
        err,
        format!(
            "refused: {base}/archive.zip is `application/zip`, binary content that fetch does not return (it returns HTML as Markdown, text, JSON, and PNG, JPEG, GIF and WebP images)"
        )
    );
}

#[tokio::test]
async fn pagination_walks_through_long_content() {
    let origin = spawn_origin(Origin::default()).await;
    let client = client_with(test_config()).await;
    let url = format!("http://127.0.0.1:{}/long", origin.port());
    let header = format!("Contents of {url} (text/plain; charset=utf-8, as is):\n");
    let mut collected = String::new();
    let mut start = 0;
    let mut calls = 0;
    loop {
        let out = fetch(&client, json!({ "url": url, "start_index": start })).await;
        assert!(!out.is_error, "{}", out.text);
        let body = out.text.strip_prefix(&header).unwrap_or_else(|| panic!("header: {}", out.text));
        calls += 1;
        match body.split_once("\n\n<error>Content truncated. Call the fetch tool with a start_index of ") {
            Some((window, rest)) => {
                assert_eq!(window.chars().count(), 5000);
                collected.push_str(window);
                start = rest.trim_end_matches(" to get more content.</error>").parse().unwrap();
                assert_eq!(start, collected.chars().count());
            }
            None => {
                collected.push_str(body);
                break;
            }
        }
    }
    assert_eq!(calls, 3);
    assert_eq!(collected, long_text());
    let past = fetch(&client, json!({ "url": url, "start_index": 12_000 })).await;
    assert_eq!(past.text, format!("{header}<error>No more content available.</error>"));
    let small = fetch(&client, json!({ "url": url, "start_index": 15, "max_length": 10 })).await;
    assert_eq!(
        small.text,
        format!(
            "{header}1111122222\n\n<error>Content truncated. Call the fetch tool with a start_index of 25 to get more content.</error>"
        )
    );
}

#[tokio::test]
async fn max_length_out_of_range_is_an_invalid_params_error() {
    let client = client_with(test_config()).await;
    for max_length in [0, 1_000_001] {
        let args = json!({ "url": "http://127.0.0.1:9/", "max_length": max_length }).as_object().unwrap().clone();
        let err = client
            .call_tool(rmcp::model::CallToolRequestParams::new("fetch").with_arguments(args))
            .await
            .expect_err("out of range");
        assert!(err.to_string().contains("max_length must be between 1 and 1000000"), "{err}");
    }
}

#[tokio::test]
async fn bodies_are_cut_at_the_size_limit() {
    let origin = spawn_origin(Origin::default()).await;
    let client = client_with(FetchConfig { max_response_bytes: 1024 * 1024, ..test_config() }).await;
    let url = format!("http://127.0.0.1:{}/big", origin.port());
    let out = fetch(&client, json!({ "url": url, "start_index": 1024 * 1024 - 3 })).await;
    assert_eq!(
        out.text,
        format!(
            "Contents of {url} (text/plain; charset=utf-8, as is):\nNote: the response is larger than the 1048576-byte limit; only its first 1048576 bytes were read.\nbbb"
        )
    );
}

#[tokio::test]
async fn a_gzip_bomb_is_cut_at_the_limit_after_decoding() {
    let bomb = gzip_bomb(64 * 1024 * 1024);
    assert!(bomb.len() < 200 * 1024, "the bomb is {} bytes compressed", bomb.len());
    let origin = spawn_origin(Origin { bomb: Arc::new(bomb), ..Origin::default() }).await;
    let limit = 256 * 1024;
    let client = client_with(FetchConfig { max_response_bytes: limit, ..test_config() }).await;
    let url = format!("http://127.0.0.1:{}/bomb", origin.port());
    let out = fetch(&client, json!({ "url": url, "start_index": limit - 4 })).await;
    assert!(!out.is_error, "{}", out.text);
    assert_eq!(
        out.text,
        format!(
            "Contents of {url} (text/plain, as is):\nNote: the response is larger than the 262144-byte limit; only its first 262144 bytes were read.\naaaa"
        )
    );
}

#[tokio::test]
async fn a_redirect_chain_of_five_is_followed_and_six_is_refused() {
    let origin = spawn_origin(Origin::default()).await;
    let client = client_with(test_config()).await;
    let base = format!("http://127.0.0.1:{}", origin.port());
    assert_eq!(
        fetch_ok(&client, &format!("{base}/redirect/5")).await,
        format!("Contents of {base}/redirect/0 (text/plain, as is):\nlanded")
    );
    assert_eq!(
        fetch_err(&client, &format!("{base}/redirect/6")).await,
        format!("too many redirects: {base}/redirect/1 redirects again after 5; at most 5 are followed")
    );
}

#[tokio::test]
async fn a_slow_server_hits_the_time_bound() {
    let origin = spawn_origin(Origin::default()).await;
    let client = client_with(FetchConfig { timeout: Duration::from_millis(800), ..test_config() }).await;
    for path in ["slow", "trickle"] {
        let url = format!("http://127.0.0.1:{}/{path}", origin.port());
        assert_eq!(fetch_err(&client, &url).await, format!("timed out: fetching {url} took longer than 0.8s"));
    }
}

#[tokio::test]
async fn http_errors_are_tool_errors() {
    let origin = spawn_origin(Origin::default()).await;
    let client = client_with(test_config()).await;
    let url = format!("http://127.0.0.1:{}/missing", origin.port());
    assert_eq!(fetch_err(&client, &url).await, format!("{url} answered HTTP 404 Not Found"));
    let closed = Counting::bind("127.0.0.1:0").await;
    let err = fetch_err(&client, &format!("http://127.0.0.1:{}/", closed.addr.port())).await;
    assert!(err.starts_with(&format!("could not fetch http://127.0.0.1:{}/robots.txt: ", closed.addr.port())), "{err}");
    // Without robots.txt in the way, the page's own connection fails the same way.
    let client = client_with(FetchConfig { robots: false, ..test_config() }).await;
    let err = fetch_err(&client, &format!("http://127.0.0.1:{}/", closed.addr.port())).await;
    assert!(err.starts_with(&format!("could not fetch http://127.0.0.1:{}/: ", closed.addr.port())), "{err}");
}

#[tokio::test]
async fn deeply_nested_html_is_converted_without_harm() {
    let origin = spawn_origin(Origin::default()).await;
    let client = client_with(test_config()).await;
    let text = fetch_ok(&client, &format!("http://127.0.0.1:{}/deep.html", origin.port())).await;
    assert!(
        text.contains("Note: the page was converted only up to where it had elements nested more than 512 deep."),
        "{text}"
    );
    assert!(text.contains("top"), "{text}");
    // The server is still there.
    assert!(fetch_ok(&client, &format!("http://127.0.0.1:{}/text", origin.port())).await.contains("hello"));
}

#[tokio::test]
async fn the_user_agent_is_sent_and_configurable() {
    let origin = spawn_origin(Origin::default()).await;
    let url = format!("http://127.0.0.1:{}/headers", origin.port());
    let text = fetch_ok(&client_with(test_config()).await, &url).await;
    assert!(text.ends_with(&format!("\n{}", mcp_fetch::fetch::DEFAULT_USER_AGENT)), "{text}");
    let custom = client_with(FetchConfig { user_agent: "OtherBot/2.0".into(), ..test_config() }).await;
    assert!(fetch_ok(&custom, &url).await.ends_with("\nOtherBot/2.0"));
}

fn robots_origin(status: StatusCode, body: &str) -> Origin {
    Origin { robots: Some((status, body.to_string())), ..Origin::default() }
}

#[tokio::test]
async fn robots_txt_disallow_is_honoured_and_cached() {
    let origin = robots_origin(StatusCode::OK, "User-agent: *\nDisallow: /private\n");
    let (robots_hits, hits) = (origin.robots_hits.clone(), origin.hits.clone());
    let addr = spawn_origin(origin).await;
    let client = client_with(test_config()).await;
    let base = format!("http://127.0.0.1:{}", addr.port());
    let err = fetch_err(&client, &format!("{base}/private/page")).await;
    assert_eq!(
        err,
        format!(
            "refused by robots.txt: its robots.txt disallows this path for user-agent `mcp-fetch` ({base}/robots.txt), so {base}/private/page is not fetched; the site asks automated clients to stay away"
        )
    );
    assert!(fetch_ok(&client, &format!("{base}/public/page")).await.contains("public page"));
    // A redirect into a disallowed path is refused too.
    let err = fetch_err(&client, &format!("{base}/to?url=/private/page")).await;
    assert!(err.starts_with("refused by robots.txt"), "{err}");
    assert_eq!(robots_hits.load(Ordering::SeqCst), 1, "robots.txt is fetched once per origin and cached");
    // robots.txt, /public/page, /to: the disallowed page was never requested.
    assert_eq!(hits.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn robots_txt_group_for_our_token_wins() {
    let body = "User-agent: mcp-fetch\nDisallow: /public\n\nUser-agent: *\nDisallow:\n";
    let addr = spawn_origin(robots_origin(StatusCode::OK, body)).await;
    let url = format!("http://127.0.0.1:{}/public/page", addr.port());
    assert!(fetch_err(&client_with(test_config()).await, &url).await.contains("user-agent `mcp-fetch`"));
    let other = client_with(FetchConfig { user_agent: "OtherBot/2.0".into(), ..test_config() }).await;
    assert!(fetch_ok(&other, &url).await.contains("public page"));
}

#[tokio::test]
async fn ignore_robots_turns_it_off() {
    let origin = robots_origin(StatusCode::OK, "User-agent: *\nDisallow: /\n");
    let robots_hits = origin.robots_hits.clone();
    let addr = spawn_origin(origin).await;
    let client = client_with(FetchConfig { robots: false, ..test_config() }).await;
    assert!(
        fetch_ok(&client, &format!("http://127.0.0.1:{}/private/page", addr.port())).await.contains("private page")
    );
    assert_eq!(robots_hits.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn robots_txt_redirected_to_a_refused_address_disallows() {
    let origin = robots_origin(StatusCode::OK, "");
    let addr = spawn_origin(origin).await;
    // robots.txt itself is fine here; a second origin whose robots.txt redirects to 10.0.0.1.
    let router = axum::Router::new().route(
        "/robots.txt",
        axum::routing::get(|| async {
            (StatusCode::FOUND, [(axum::http::header::LOCATION, "http://10.0.0.1/robots.txt")])
        }),
    );
    let redirecting = spawn_router(router).await;
    let client = client_with(test_config()).await;
    assert!(fetch_ok(&client, &format!("http://127.0.0.1:{}/public/page", addr.port())).await.contains("public page"));
    let err = fetch_err(&client, &format!("http://127.0.0.1:{}/page", redirecting.port())).await;
    assert!(err.starts_with("refused by robots.txt: its robots.txt could not be fetched (refused the redirect to http://10.0.0.1/robots.txt"), "{err}");
}

#[tokio::test]
async fn robots_txt_server_errors_disallow_and_404_allows() {
    let failing = spawn_origin(robots_origin(StatusCode::SERVICE_UNAVAILABLE, "")).await;
    let client = client_with(test_config()).await;
    let err = fetch_err(&client, &format!("http://127.0.0.1:{}/public/page", failing.port())).await;
    assert!(err.contains("its robots.txt answered HTTP 503"), "{err}");
    let forbidden = spawn_origin(robots_origin(StatusCode::FORBIDDEN, "")).await;
    let err = fetch_err(&client, &format!("http://127.0.0.1:{}/public/page", forbidden.port())).await;
    assert!(err.contains("its robots.txt answered HTTP 403"), "{err}");
    let none = spawn_origin(Origin::default()).await;
    assert!(fetch_ok(&client, &format!("http://127.0.0.1:{}/public/page", none.port())).await.contains("public page"));
}
