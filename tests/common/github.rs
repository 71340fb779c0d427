//! A loopback stand-in for GitHub's OAuth and REST endpoints, as documented by GitHub
//! (`/login/oauth/authorize`, `/login/oauth/access_token`, `/api/v3/user`, `/user/emails`,
//! `/user/orgs`, `/user/teams`). mcp-authd reaches it through the GitHub Enterprise URL settings. Its
//! "authorize" step approves at once as the configured user, like a browser that is signed in.
#![allow(dead_code)] // each test binary uses a different part of this helper

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::json;
use sha2::{Digest, Sha256};

/// The OAuth App credentials mcp-authd is configured with.
pub const CLIENT_ID: &str = "gh-client-id";
/// Its secret.
pub const CLIENT_SECRET: &str = "gh-client-secret-3b9d";

/// Who is "signed in" at the stand-in.
#[derive(Clone)]
pub struct GhUser {
    /// Numeric id.
    pub id: u64,
    /// Login.
    pub login: String,
    /// Public e-mail (null when `None`; then `/user/emails` answers).
    pub email: Option<String>,
    /// Organisations.
    pub orgs: Vec<String>,
}

#[derive(Default)]
struct State {
    user: Option<GhUser>,
    codes: HashMap<String, (String, String)>, // code -> (challenge, redirect_uri)
    tokens: HashMap<String, GhUser>,
    exchanges: usize,
    /// Teams of whoever is signed in: (organisation, team slug).
    teams: Vec<(String, String)>,
    /// The `scope` of the last authorization request.
    scope: String,
}

/// The running stand-in.
pub struct GithubStandIn {
    /// Its base URL.
    pub base: String,
    state: Arc<Mutex<State>>,
    handle: actix_web::dev::ServerHandle,
}

fn random() -> String {
    mcp_authd::oauth::secret::random_token(16)
}

async fn authorize(state: web::Data<Arc<Mutex<State>>>, q: web::Query<HashMap<String, String>>) -> HttpResponse {
    let mut st = state.lock().unwrap();
    assert_eq!(q.get("client_id").map(String::as_str), Some(CLIENT_ID), "client_id sent to GitHub");
    assert_eq!(q.get("code_challenge_method").map(String::as_str), Some("S256"), "mcp-authd uses PKCE upstream");
    let redirect = q.get("redirect_uri").cloned().unwrap_or_default();
    st.scope = q.get("scope").cloned().unwrap_or_default();
    let code = random();
    st.codes.insert(code.clone(), (q.get("code_challenge").cloned().unwrap_or_default(), redirect.clone()));
    let mut url = url::Url::parse(&redirect).unwrap();
    url.query_pairs_mut()
        .append_pair("code", &code)
        .append_pair("state", q.get("state").map(String::as_str).unwrap_or(""));
    HttpResponse::Found().insert_header(("Location", url.to_string())).finish()
}

async fn access_token(state: web::Data<Arc<Mutex<State>>>, form: web::Form<HashMap<String, String>>) -> HttpResponse {
    let mut st = state.lock().unwrap();
    st.exchanges += 1;
    let err = |e: &str| HttpResponse::Ok().json(json!({ "error": e }));
    if form.get("client_id").map(String::as_str) != Some(CLIENT_ID)
        || form.get("client_secret").map(String::as_str) != Some(CLIENT_SECRET)
    {
        return err("incorrect_client_credentials");
    }
    let Some((challenge, redirect)) = form.get("code").and_then(|c| st.codes.remove(c)) else {
        return err("bad_verification_code");
    };
    let verifier = form.get("code_verifier").cloned().unwrap_or_default();
    if URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes())) != challenge {
        return err("bad_verification_code");
    }
    if form.get("redirect_uri") != Some(&redirect) {
        return err("redirect_uri_mismatch");
    }
    let Some(user) = st.user.clone() else {
        return err("access_denied");
    };
    let token = format!("gho_{}", random());
    st.tokens.insert(token.clone(), user);
    HttpResponse::Ok().json(json!({ "access_token": token, "token_type": "bearer", "scope": "read:user,user:email" }))
}

fn user_of(state: &Mutex<State>, req: &HttpRequest) -> Option<GhUser> {
    let auth = req.headers().get("authorization")?.to_str().ok()?;
    let token = auth.strip_prefix("Bearer ").or_else(|| auth.strip_prefix("token "))?;
    state.lock().unwrap().tokens.get(token).cloned()
}

async fn api_user(state: web::Data<Arc<Mutex<State>>>, req: HttpRequest) -> HttpResponse {
    match user_of(&state, &req) {
        Some(u) => HttpResponse::Ok().json(json!({ "id": u.id, "login": u.login, "email": u.email, "name": null })),
        None => HttpResponse::Unauthorized().json(json!({ "message": "Bad credentials" })),
    }
}

async fn api_emails(state: web::Data<Arc<Mutex<State>>>, req: HttpRequest) -> HttpResponse {
    match user_of(&state, &req) {
        Some(u) => HttpResponse::Ok().json(json!([
            { "email": format!("{}@users.example.com", u.login), "primary": true, "verified": true },
            { "email": "other@example.com", "primary": false, "verified": true },
        ])),
        None => HttpResponse::Unauthorized().json(json!({ "message": "Bad credentials" })),
    }
}

async fn api_orgs(state: web::Data<Arc<Mutex<State>>>, req: HttpRequest) -> HttpResponse {
    match user_of(&state, &req) {
        Some(u) => HttpResponse::Ok().json(u.orgs.iter().map(|o| json!({ "login": o })).collect::<Vec<_>>()),
        None => HttpResponse::Unauthorized().json(json!({ "message": "Bad credentials" })),
    }
}

async fn api_teams(state: web::Data<Arc<Mutex<State>>>, req: HttpRequest) -> HttpResponse {
    if user_of(&state, &req).is_none() {
        return HttpResponse::Unauthorized().json(json!({ "message": "Bad credentials" }));
    }
    let teams = state.lock().unwrap().teams.clone();
    // The documented shape (GET /user/teams), trimmed to what matters here.
    HttpResponse::Ok().json(
        teams
            .iter()
            .map(|(org, slug)| json!({ "slug": slug, "name": slug.to_uppercase(), "organization": { "login": org } }))
            .collect::<Vec<_>>(),
    )
}

impl GithubStandIn {
    /// Starts on a free loopback port, with `user` signed in.
    pub fn start(user: GhUser) -> Self {
        let state = Arc::new(Mutex::new(State { user: Some(user), ..State::default() }));
        let data = web::Data::new(state.clone());
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            actix_web::rt::System::new().block_on(async move {
                let server = HttpServer::new(move || {
                    App::new()
                        .app_data(data.clone())
                        .route("/login/oauth/authorize", web::get().to(authorize))
                        .route("/login/oauth/access_token", web::post().to(access_token))
                        .route("/api/v3/user", web::get().to(api_user))
                        .route("/api/v3/user/emails", web::get().to(api_emails))
                        .route("/api/v3/user/orgs", web::get().to(api_orgs))
                        .route("/api/v3/user/teams", web::get().to(api_teams))
                })
                .workers(1)
                .disable_signals()
                .listen(listener)
                .unwrap()
                .run();
                tx.send(server.handle()).unwrap();
                server.await.unwrap();
            });
        });
        let handle = rx.recv().unwrap();
        Self { base, state, handle }
    }

    /// The `[github]` configuration pointing mcp-authd here (the GitHub Enterprise settings).
    pub fn config(&self, extra: &str) -> String {
        format!(
            "[github]\nclient_id = \"{CLIENT_ID}\"\nclient_secret = \"{CLIENT_SECRET}\"\n\
             authorize_url = \"{b}/login/oauth/authorize\"\ntoken_url = \"{b}/login/oauth/access_token\"\napi_url = \"{b}/api/v3\"\n{extra}\n",
            b = self.base
        )
    }

    /// Changes who is signed in.
    pub fn sign_in(&self, user: GhUser) {
        self.state.lock().unwrap().user = Some(user);
    }

    /// Sets the teams of whoever signs in: (organisation, team slug).
    pub fn set_teams(&self, teams: &[(&str, &str)]) {
        self.state.lock().unwrap().teams = teams.iter().map(|(o, t)| (o.to_string(), t.to_string())).collect();
    }

    /// The scopes mcp-authd asked GitHub for in its last authorization request.
    pub fn last_scope(&self) -> String {
        self.state.lock().unwrap().scope.clone()
    }

    /// How many code exchanges mcp-authd made.
    pub fn exchanges(&self) -> usize {
        self.state.lock().unwrap().exchanges
    }
}

impl Drop for GithubStandIn {
    fn drop(&mut self) {
        let h = self.handle.clone();
        std::thread::spawn(move || actix_web::rt::System::new().block_on(h.stop(false)));
    }
}
