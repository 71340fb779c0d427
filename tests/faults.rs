//! Faults (issue 8): what mcp-authd does when what it depends on fails, against the real binary.
//!
//! - Redis killed (SIGKILL) under load and restarted from its AOF: /verify fails closed (503)
//!   once the revocation feed is lost, the OAuth endpoints answer 503 `temporarily_unavailable`
//!   (never a 500, never a hang), `/ready` is false while Redis is away and true after, mcp-authd
//!   reconnects by itself, and nothing acknowledged before or after is lost.
//! - mcp-authd killed (SIGKILL) in the middle of registrations and refresh grants on the
//!   embedded store, three times: every acknowledged write is there after each restart.
//! - The upstream identity provider down, silent or answering garbage: the client gets an RFC
//!   6749 §4.1.2.1 error redirect (with `state` and `iss`) within the outbound timeout.
//! - SIGTERM: in-flight requests finish, new connections are refused at once, the process exits
//!   0, and not later than `server.shutdown_grace` however long a request would take.
//!
//! The figures (requests by status in each phase, time to detect and to recover) are printed for
//! the record; what is asserted is behaviour, not speed.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::github::{GhUser, GithubStandIn};
use common::oauth::*;
use common::redis::RedisServer;
use common::server::{Options, RESOURCE, Server};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// Phases of an outage.
const BEFORE: u8 = 0;
const DOWN: u8 = 1;
const BACK: u8 = 2;
const PHASES: [&str; 3] = ["before", "down", "back"];

/// Answers counted by (phase, what, status); a request that got no answer counts as status 0.
#[derive(Default)]
struct Tally(Mutex<BTreeMap<(u8, &'static str, u16), u64>>);

impl Tally {
    fn add(&self, phase: u8, what: &'static str, status: u16) {
        *self.0.lock().unwrap().entry((phase, what, status)).or_default() += 1;
    }
    /// The statuses `what` got in `phase`.
    fn statuses(&self, phase: u8, what: &str) -> BTreeMap<u16, u64> {
        let all = self.0.lock().unwrap();
        all.iter().filter(|((p, w, _), _)| *p == phase && *w == what).map(|((_, _, s), n)| (*s, *n)).collect()
    }
    fn report(&self) -> String {
        let all = self.0.lock().unwrap();
        all.iter()
            .map(|((p, w, s), n)| format!("  {:<6} {w:<9} {s}: {n}", PHASES[*p as usize]))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// A client with a bound on every request: a hang shows up as status 0.
fn bounded() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

async fn status_of(req: reqwest::RequestBuilder) -> (u16, Value) {
    match req.send().await {
        Ok(res) => {
            let status = res.status().as_u16();
            (status, res.json().await.unwrap_or(Value::Null))
        }
        Err(_) => (0, Value::Null),
    }
}

fn verify_req(c: &reqwest::Client, s: &Server, token: &str) -> reqwest::RequestBuilder {
    verify_request(c, &s.url("/verify"), Some(token), RESOURCE)
}

fn registration() -> Value {
    json!({"redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none", "client_name": "fault test"})
}

/// Polls `path` until it answers `want`; how long that took.
async fn until_status(c: &reqwest::Client, s: &Server, path: &str, want: u16, limit: Duration) -> Duration {
    let start = Instant::now();
    loop {
        if status_of(c.get(s.url(path))).await.0 == want {
            return start.elapsed();
        }
        assert!(start.elapsed() < limit, "{path} did not answer {want} within {limit:?}:\n{}", s.logs());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_under_load_fails_closed_and_recovers_without_losing_anything() {
    let mut redis = RedisServer::start_with_args(&["--appendonly", "yes", "--appendfsync", "always"]);
    let s = Arc::new(Server::start_with(Options {
        toml: format!("[store]\ntype = \"redis\"\nredis_url = \"{}\"\n", redis.url),
        ..Options::default()
    }));
    let before_outage = register_public(&s).await;
    let tokens = tokens_for(&s, &before_outage, RESOURCE).await;
    let access = tokens["access_token"].as_str().unwrap().to_owned();
    let first_refresh = tokens["refresh_token"].as_str().unwrap().to_owned();

    let phase = Arc::new(AtomicU8::new(BEFORE));
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    // Clients registered (201) during the run, to be read back at the end.
    let acknowledged = Arc::new(Mutex::new(Vec::<(String, String)>::new()));
    let mut load = Vec::new();
    for _ in 0..2 {
        let (s, phase, stop, tally, access) = (s.clone(), phase.clone(), stop.clone(), tally.clone(), access.clone());
        load.push(tokio::spawn(async move {
            let c = bounded();
            while !stop.load(Ordering::Relaxed) {
                let status = status_of(verify_req(&c, &s, &access)).await.0;
                tally.add(phase.load(Ordering::Relaxed), "verify", status);
            }
        }));
    }
    {
        let (s, phase, stop, tally, acknowledged) =
            (s.clone(), phase.clone(), stop.clone(), tally.clone(), acknowledged.clone());
        load.push(tokio::spawn(async move {
            let c = bounded();
            while !stop.load(Ordering::Relaxed) {
                let (status, body) = status_of(c.post(s.url("/register")).json(&registration())).await;
                tally.add(phase.load(Ordering::Relaxed), "register", status);
                if status == 201 {
                    let id = body["client_id"].as_str().unwrap().to_owned();
                    let rat = body["registration_access_token"].as_str().unwrap().to_owned();
                    acknowledged.lock().unwrap().push((id, rat));
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }));
    }
    // One refresh chain: a refused grant must leave the token usable (nothing half-done).
    let chain = {
        let (s, phase, stop, tally, client_id) =
            (s.clone(), phase.clone(), stop.clone(), tally.clone(), before_outage.id.clone());
        tokio::spawn(async move {
            let c = bounded();
            let mut current = first_refresh;
            // Whether the last attempt failed in a way that may have used the token anyway: the
            // rotation ran in Redis just as it died, and its answer was lost (mcp-authd then
            // answers 503, or nothing reaches us). The next use of that token reads as a reuse,
            // which ends the login: right, as nobody can tell the two apart.
            let mut uncertain = false;
            while !stop.load(Ordering::Relaxed) {
                let form = [("grant_type", "refresh_token"), ("refresh_token", &current), ("client_id", &client_id)];
                let (status, body) = status_of(c.post(s.url("/token")).form(&form)).await;
                // Counted in the phase it was answered in (the kill may come mid-request).
                let p = phase.load(Ordering::Relaxed);
                tally.add(p, "refresh", status);
                match status {
                    200 => {
                        current = body["refresh_token"].as_str().unwrap().to_owned();
                        uncertain = false;
                    }
                    503 => {
                        assert_eq!(body["error"], "temporarily_unavailable", "{body}");
                        uncertain = true;
                    }
                    0 => uncertain = true,
                    400 if uncertain
                        && body["error_description"].as_str().is_some_and(|d| d.contains("already used")) =>
                    {
                        return None;
                    }
                    other => panic!("refresh answered {other} {body} in phase {}", PHASES[p as usize]),
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Some(current)
        })
    };
    let c = bounded();
    tokio::time::sleep(Duration::from_millis(800)).await;

    // Redis dies.
    phase.store(DOWN, Ordering::Relaxed);
    let killed = Instant::now();
    redis.stop();
    let not_ready_after = until_status(&c, &s, "/ready", 503, Duration::from_secs(10)).await;
    // Fail closed: once the feed is known lost, /verify refuses to vouch for anything.
    let start = Instant::now();
    loop {
        if status_of(verify_req(&c, &s, &access)).await.0 == 503 {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "/verify still allows 10 s into the outage");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let closed_after = killed.elapsed();
    tokio::time::sleep(Duration::from_millis(1500)).await;

    // Redis comes back from its AOF, on the same port.
    phase.store(BACK, Ordering::Relaxed);
    let restarted = Instant::now();
    let _redis = tokio::task::spawn_blocking(move || {
        redis.restart();
        redis
    })
    .await
    .unwrap();
    let ready_after = until_status(&c, &s, "/ready", 200, Duration::from_secs(20)).await;
    let start = Instant::now();
    loop {
        if status_of(verify_req(&c, &s, &access)).await.0 == 200 {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "/verify did not recover:\n{}", s.logs());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let verify_back_after = restarted.elapsed();
    tokio::time::sleep(Duration::from_millis(800)).await;
    stop.store(true, Ordering::Relaxed);
    for task in load {
        task.await.unwrap();
    }
    let last_refresh = chain.await.unwrap();

    eprintln!(
        "redis outage: /ready false {not_ready_after:?} after the kill, /verify closed {closed_after:?} after; \
         after the restart /ready true in {ready_after:?}, /verify allows again in {verify_back_after:?}\n{}",
        tally.report()
    );

    // Never a 500, never a hang, in any phase.
    for p in [BEFORE, DOWN, BACK] {
        for what in ["verify", "register", "refresh"] {
            for status in tally.statuses(p, what).keys() {
                assert!(
                    matches!(status, 200 | 201 | 503) || (p == DOWN && *status == 0 && what != "verify"),
                    "{what} answered {status} in phase {}:\n{}",
                    PHASES[p as usize],
                    tally.report()
                );
            }
        }
    }
    assert_eq!(tally.statuses(BEFORE, "verify").keys().collect::<Vec<_>>(), vec![&200]);
    assert!(tally.statuses(DOWN, "verify").contains_key(&503), "fail closed during the outage");
    assert!(tally.statuses(DOWN, "register").contains_key(&503), "registration unavailable during the outage");
    assert!(tally.statuses(BACK, "register").contains_key(&201), "registration works again");
    if last_refresh.is_some() {
        assert!(tally.statuses(BACK, "refresh").contains_key(&200), "refresh works again");
    }

    // Nothing acknowledged is lost: the client from before, every client registered, the chain.
    let clients: Vec<(String, String)> = acknowledged.lock().unwrap().clone();
    assert!(!clients.is_empty());
    for (id, rat) in clients.iter().chain([(before_outage.id.clone(), before_outage.registration_token.clone())].iter())
    {
        let res = c.get(s.url(&format!("/register/{id}"))).bearer_auth(rat).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK, "client {id} lost");
    }
    // The chain's last token still works, unless the kill caught a rotation in flight (above);
    // either way a login works after the outage.
    let access_after = match &last_refresh {
        Some(token) => {
            let (status, body) = refresh(&s, &before_outage.id, token).await;
            assert_eq!(status, StatusCode::OK, "the chain's last token still works: {body}");
            body["access_token"].as_str().unwrap().to_owned()
        }
        None => {
            eprintln!("the kill caught a rotation in flight: that login ended, as it must");
            tokens_for(&s, &before_outage, RESOURCE).await["access_token"].as_str().unwrap().to_owned()
        }
    };
    assert_eq!(verify(&s, Some(&access_after), RESOURCE).await.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_an_outage_grace_tokens_judged_before_keep_their_standing_for_a_while() {
    let mut redis = RedisServer::start();
    let s = Server::start_with(Options {
        toml: format!("[store]\ntype = \"redis\"\nredis_url = \"{}\"\n\n[verify]\noutage_grace = 30\n", redis.url),
        ..Options::default()
    });
    let c = bounded();
    let client = register_public(&s).await;
    let seen = tokens_for(&s, &client, RESOURCE).await["access_token"].as_str().unwrap().to_owned();
    let revoked = tokens_for(&s, &client, RESOURCE).await["access_token"].as_str().unwrap().to_owned();
    let unseen = s.mint(&["--sub", "svc", "--aud", RESOURCE]);
    assert_eq!(status_of(verify_req(&c, &s, &seen)).await.0, 200);
    assert_eq!(status_of(verify_req(&c, &s, &revoked)).await.0, 200);
    let (status, _) = post_form(&s, "/revoke", &[("token", &revoked), ("client_id", &client.id)], None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(status_of(verify_req(&c, &s, &revoked)).await.0, 401);

    redis.stop();
    until_status(&c, &s, "/ready", 503, Duration::from_secs(10)).await;
    // Give the feed time to notice (it does within milliseconds of the connection dropping).
    let start = Instant::now();
    while status_of(verify_req(&c, &s, &unseen)).await.0 != 503 {
        assert!(start.elapsed() < Duration::from_secs(10), "an unseen token is let through in the outage");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(status_of(verify_req(&c, &s, &seen)).await.0, 200, "judged before: still allowed");
    assert_eq!(status_of(verify_req(&c, &s, &revoked)).await.0, 401, "revoked before: still refused");
    assert_eq!(status_of(verify_req(&c, &s, &unseen)).await.0, 503, "never judged: cannot be checked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_writes_loses_no_acknowledged_write_on_the_embedded_store() {
    let mut s = Server::start();
    let client = register_public(&s).await;
    // Two refresh chains; per chain, every token acknowledged (the last is the one in use).
    let mut history: Vec<Vec<String>> = Vec::new();
    for _ in 0..2 {
        history.push(vec![tokens_for(&s, &client, RESOURCE).await["refresh_token"].as_str().unwrap().to_owned()]);
    }
    let mut acknowledged: Vec<(String, String)> = Vec::new();
    for round in 0..3u64 {
        let stop = Arc::new(AtomicBool::new(false));
        let mut writers = Vec::new();
        for _ in 0..3 {
            let (url, stop) = (s.url("/register"), stop.clone());
            writers.push(tokio::spawn(async move {
                let c = bounded();
                let mut got = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let (status, body) = status_of(c.post(&url).json(&registration())).await;
                    if status == 201 {
                        got.push((
                            body["client_id"].as_str().unwrap().to_owned(),
                            body["registration_access_token"].as_str().unwrap().to_owned(),
                        ));
                    }
                }
                got
            }));
        }
        let mut refreshers = Vec::new();
        for h in &history {
            let (url, stop, client_id) = (s.url("/token"), stop.clone(), client.id.clone());
            let mut current = h.last().unwrap().clone();
            refreshers.push(tokio::spawn(async move {
                let c = bounded();
                let mut issued = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let form =
                        [("grant_type", "refresh_token"), ("refresh_token", &current), ("client_id", &client_id)];
                    let (status, body) = status_of(c.post(&url).form(&form)).await;
                    if status != 200 {
                        break; // the kill
                    }
                    current = body["refresh_token"].as_str().unwrap().to_owned();
                    issued.push(current.clone());
                }
                issued
            }));
        }
        tokio::time::sleep(Duration::from_millis(400 + 300 * round)).await;
        // Killed in the middle of it all: the writers see their connections drop.
        s.kill();
        stop.store(true, Ordering::Relaxed);
        for w in writers {
            acknowledged.extend(w.await.unwrap());
        }
        for (h, r) in history.iter_mut().zip(refreshers) {
            h.extend(r.await.unwrap());
        }
        s.restart();

        // Every acknowledged registration is there.
        let c = bounded();
        for (id, rat) in &acknowledged {
            let res = c.get(s.url(&format!("/register/{id}"))).bearer_auth(rat).send().await.unwrap();
            assert_eq!(res.status(), StatusCode::OK, "round {round}: acknowledged client {id} lost:\n{}", s.logs());
        }
        eprintln!("round {round}: {} registrations acknowledged so far, all there", acknowledged.len());
    }
    // Every acknowledged rotation is there: an earlier token of each chain reads as used, which
    // only the store can know. The last one may have been used by a request the kill cut off:
    // fresh or used are both right for it, unknown is not.
    for h in &history {
        assert!(h.len() >= 2, "each chain made progress");
        let (status, body) = refresh(&s, &client.id, h.last().unwrap()).await;
        assert!(
            status == StatusCode::OK || body["error_description"].as_str().unwrap_or("").contains("already used"),
            "the last acknowledged token: {status} {body}"
        );
        let (status, body) = refresh(&s, &client.id, &h[h.len() - 2]).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert!(body["error_description"].as_str().unwrap().contains("already used"), "rotation lost: {body}");
    }
}

/// A stand-in for an identity provider in trouble, on its own port.
enum Trouble {
    /// Nothing listens.
    Down,
    /// Accepts and never answers.
    Silent,
    /// Answers 200 with something that is not what was asked for.
    Garbage,
    /// Answers garbage, but only after this long.
    Slow(Duration),
}

/// Starts `trouble` on a loopback port; the base URL.
fn troubled(trouble: Trouble) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    match trouble {
        Trouble::Down => drop(listener),
        Trouble::Silent => {
            std::thread::spawn(move || {
                let mut held = Vec::new();
                for conn in listener.incoming().flatten() {
                    held.push(conn);
                }
            });
        }
        Trouble::Garbage | Trouble::Slow(_) => {
            let delay = match trouble {
                Trouble::Slow(d) => d,
                _ => Duration::ZERO,
            };
            std::thread::spawn(move || {
                for mut conn in listener.incoming().flatten() {
                    std::thread::sleep(delay);
                    let mut buf = [0u8; 4096];
                    let _ = conn.set_read_timeout(Some(Duration::from_millis(200)));
                    let _ = conn.read(&mut buf);
                    let body = "<html><script>alert(1)</script>{\"access_token\":";
                    let _ = write!(
                        conn,
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                }
            });
        }
    }
    base
}

/// A GitHub login for a public client, up to the provider sending the browser back: the
/// callback URL and the browser's cookie.
async fn up_to_the_callback(s: &Server) -> (String, String) {
    let client = register_public(s).await;
    let p = pkce();
    let http = http();
    let res = http.get(authorize_url(s, &client.id, REDIRECT, &p.challenge, RESOURCE)).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::FOUND);
    let cookie = cookie_of(&res);
    // The stand-in's authorization page signs the user in and sends them back with a code.
    let res = http.get(location(&res)).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::FOUND);
    let callback = location(&res);
    assert!(callback.starts_with(&s.url("/callback/github?")), "{callback}");
    (callback, cookie)
}

/// [`up_to_the_callback`], then the callback: its answer and how long it took.
async fn login_through(s: &Server) -> (reqwest::Response, Duration) {
    let (callback, cookie) = up_to_the_callback(s).await;
    let start = Instant::now();
    let res = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
        .get(&callback)
        .header("cookie", cookie)
        .send()
        .await
        .expect("the callback answers (no hang past the outbound timeout)");
    (res, start.elapsed())
}

async fn idp_case(name: &str, token_url: Option<String>, api_url: Option<String>) {
    let gh = GithubStandIn::start(GhUser {
        id: 583231,
        login: "octocat".into(),
        email: Some("octocat@users.example.com".into()),
        orgs: vec![],
    });
    let mut config = gh.config("");
    if let Some(t) = token_url {
        config = config.replace(&format!("{}/login/oauth/access_token", gh.base), &t);
    }
    if let Some(a) = api_url {
        config = config.replace(&format!("{}/api/v3", gh.base), &a);
    }
    let s = Server::start_with(Options { toml: config, no_local_users: true, ..Options::default() });
    let (res, took) = login_through(&s).await;
    eprintln!("identity provider {name}: the client heard back in {took:?}");
    assert_eq!(res.status(), StatusCode::FOUND, "{name}");
    let back = location(&res);
    assert!(back.starts_with(REDIRECT), "{name}: {back}");
    assert_eq!(param(&back, "error").as_deref(), Some("server_error"), "{name}: {back}");
    assert_eq!(param(&back, "state").as_deref(), Some("st-123"), "{name}");
    assert_eq!(param(&back, "iss").as_deref(), Some(s.base.as_str()), "{name}");
    assert!(param(&back, "code").is_none());
    assert!(
        !back.contains("alert") && !back.contains("%3Cscript"),
        "{name}: nothing of the provider's answer is passed on: {back}"
    );
    // And the server is fine: the next request is served.
    assert_eq!(http().get(s.url("/health")).send().await.unwrap().status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_identity_provider_down_silent_or_answering_garbage_gets_the_client_an_error_redirect() {
    let gh_api_garbage = troubled(Trouble::Garbage);
    tokio::join!(
        idp_case("down", Some(format!("{}/login/oauth/access_token", troubled(Trouble::Down))), None),
        // The outbound timeout (15 s) bounds this one.
        idp_case("silent", Some(format!("{}/login/oauth/access_token", troubled(Trouble::Silent))), None),
        idp_case(
            "garbage token answer",
            Some(format!("{}/login/oauth/access_token", troubled(Trouble::Garbage))),
            None
        ),
        idp_case("garbage user API", None, Some(format!("{gh_api_garbage}/api/v3"))),
    );
}

/// SIGTERM: a request in flight (a callback waiting 2 s on a slow identity provider) gets its
/// whole answer, new connections are refused at once, and the process exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_in_flight_requests_finish_refuses_new_ones_and_exits_cleanly() {
    let gh = GithubStandIn::start(GhUser { id: 1, login: "octocat".into(), email: None, orgs: vec![] });
    let slow = format!("{}/login/oauth/access_token", troubled(Trouble::Slow(Duration::from_secs(2))));
    let config = gh.config("").replace(&format!("{}/login/oauth/access_token", gh.base), &slow);
    let mut s = Server::start_with(Options { toml: config, no_local_users: true, ..Options::default() });
    let (callback, cookie) = up_to_the_callback(&s).await;
    let inflight = tokio::spawn(async move { bounded().get(callback).header("cookie", cookie).send().await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!inflight.is_finished(), "the callback waits on the identity provider");

    let signalled = Instant::now();
    s.terminate();
    // New connections are refused while the callback is still being answered.
    while std::net::TcpStream::connect(("127.0.0.1", s.port)).is_ok() {
        assert!(signalled.elapsed() < Duration::from_secs(1), "still accepting 1 s after SIGTERM");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(!inflight.is_finished(), "refusing new connections before the in-flight request is done");
    let refused_after = signalled.elapsed();

    let res = inflight.await.unwrap().expect("the in-flight request is answered, not cut off");
    assert_eq!(res.status(), StatusCode::FOUND);
    let back = location(&res);
    assert!(back.starts_with(REDIRECT) && back.contains("error=server_error"), "{back}");
    let status = tokio::task::spawn_blocking(move || {
        let status = s.wait_exit(Duration::from_secs(35));
        (status, s)
    })
    .await
    .unwrap();
    eprintln!("SIGTERM: new connections refused after {refused_after:?}, exit after {:?}", signalled.elapsed());
    assert!(status.0.success(), "exit status {:?}:\n{}", status.0, status.1.logs());
}

/// SIGTERM with a request that outlives `server.shutdown_grace`: the process does not wait for
/// it past the grace period.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_does_not_wait_past_the_grace_period() {
    let gh = GithubStandIn::start(GhUser { id: 1, login: "octocat".into(), email: None, orgs: vec![] });
    let slow = format!("{}/login/oauth/access_token", troubled(Trouble::Silent));
    let config = gh.config("").replace(&format!("{}/login/oauth/access_token", gh.base), &slow);
    let mut s = Server::start_with(Options {
        toml: config,
        no_local_users: true,
        env: vec![("MCP_AUTHD__SERVER__SHUTDOWN_GRACE".into(), "1".into())],
        ..Options::default()
    });
    let (callback, cookie) = up_to_the_callback(&s).await;
    let inflight = tokio::spawn(async move { bounded().get(callback).header("cookie", cookie).send().await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let signalled = Instant::now();
    s.terminate();
    let status = tokio::task::spawn_blocking(move || s.wait_exit(Duration::from_secs(10))).await.unwrap();
    let took = signalled.elapsed();
    assert!(status.success(), "{status:?}");
    assert!(took < Duration::from_secs(5), "exited {took:?} after SIGTERM with a 1 s grace");
    assert!(inflight.await.unwrap().is_err(), "the request past the grace is cut off");
}
