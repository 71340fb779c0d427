//! The `mcp-authd` command: `serve`, `check-config`, `keys`, `token`, `hash-password`, `login`.

mod login;

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Duration;

use actix_web::{App, HttpServer, web};
use anyhow::Context;
use clap::{Parser, Subcommand};
use mcp_authd::config::Config;
use mcp_authd::jwt::{AccessClaims, Keys};
use mcp_authd::oauth::secret::random_token;
use mcp_authd::upstream::{Upstreams, local::hash_password};
use mcp_authd::verify::grpc::{self, ExtAuthz};
use mcp_authd::{AppState, admin, http, http_client};
use tracing_actix_web::TracingLogger;

/// OAuth 2.1 authorization server and ForwardAuth decision point for MCP servers.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// Configuration file (TOML). Default: ./mcp-authd.toml if it exists, else built-in
    /// defaults; MCP_AUTHD__SECTION__KEY environment variables override either.
    #[arg(long, short, global = true, env = "MCP_AUTHD_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve {
        /// Add a local user `demo` for trying things out; its password comes from
        /// MCP_AUTHD_DEMO_PASSWORD or is generated and printed.
        #[arg(long)]
        demo: bool,
    },
    /// Validate the configuration; exit 1 listing every problem.
    CheckConfig,
    /// Signing keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Access tokens for service accounts and tests.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Hash a password (read from standard input) for a [[local.users]] entry.
    HashPassword,
    /// Registered clients, through the running server's admin socket.
    Clients {
        #[command(subcommand)]
        command: ClientsCommand,
    },
    /// Revoke tokens, through the running server's admin socket.
    Tokens {
        #[command(subcommand)]
        command: TokensCommand,
    },
    /// Get an access token from a running server through the device flow (RFC 8628): prints the
    /// URL and code to approve on stderr, then the token on stdout. Stores nothing.
    Login {
        /// The server's issuer URL.
        #[arg(long)]
        issuer: String,
        /// The MCP server the token is for (RFC 8707); the server's only one when omitted.
        #[arg(long)]
        resource: Option<String>,
        /// Scopes to ask for (space separated).
        #[arg(long)]
        scope: Option<String>,
        /// A registered device-code client to use; a public one is registered when omitted.
        #[arg(long, allow_hyphen_values = true)]
        client_id: Option<String>,
        /// Print the whole token response (JSON: refresh token, expiry, scope).
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum ClientsCommand {
    /// Every client, newest first.
    List {
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// One client's metadata (JSON).
    Show {
        /// Client ids are random and may start with '-'.
        #[arg(allow_hyphen_values = true)]
        client_id: String,
    },
    /// Delete a client and revoke its tokens.
    Delete {
        #[arg(allow_hyphen_values = true)]
        client_id: String,
    },
}

#[derive(Subcommand)]
enum TokensCommand {
    /// Revoke every token issued to a user or a client until now (access tokens and the
    /// refresh tokens of their logins).
    #[command(group(clap::ArgGroup::new("whose").required(true).args(["user", "client"])))]
    Revoke {
        /// The user: its id (`sub`, the X-User-Id header), e.g. `local:alice` or a GitHub user id.
        #[arg(long, allow_hyphen_values = true)]
        user: Option<String>,
        /// The client (`client_id`).
        #[arg(long, allow_hyphen_values = true)]
        client: Option<String>,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Generate a new signing key; the previous one stays in /jwks until its tokens expire.
    /// Restart the servers to start signing with it.
    Rotate,
    /// Print the public JWK Set.
    Show,
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Sign an access token directly (logged as an audit event).
    Mint {
        /// Subject (user id).
        #[arg(long)]
        sub: String,
        /// Audience: the protected resource URL.
        #[arg(long)]
        aud: String,
        /// Space-separated scopes.
        #[arg(long, default_value = "mcp")]
        scope: String,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 3600)]
        ttl: i64,
        /// Client id recorded in the token.
        #[arg(long, default_value = "mcp-authd-cli", allow_hyphen_values = true)]
        client_id: String,
        /// User name recorded in the token.
        #[arg(long)]
        name: Option<String>,
        /// E-mail address recorded in the token.
        #[arg(long)]
        email: Option<String>,
        /// A group / organisation recorded in the token (repeatable).
        #[arg(long = "group")]
        groups: Vec<String>,
    },
}

fn config_path(cli: Option<PathBuf>) -> Option<PathBuf> {
    cli.or_else(|| Some(PathBuf::from("mcp-authd.toml")).filter(|p| p.exists()))
}

fn load(path: Option<&Path>) -> anyhow::Result<Config> {
    Config::load(path).map_err(|e| anyhow::anyhow!("{e}"))
}

fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if json || std::env::var("LOG_FORMAT").is_ok_and(|v| v == "json") {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn main() -> anyhow::Result<()> {
    return_large_blocks();
    actix_web::rt::System::new().block_on(run())
}

/// Has glibc give large blocks back to the system when they are freed. A local login's argon2id
/// works in 19 MiB; by default glibc raises its mmap threshold past the first such block freed,
/// and from then on keeps them in its per-thread arenas: a burst of logins left hundreds of MiB
/// resident for good. A fixed threshold (as `MALLOC_MMAP_THRESHOLD_=131072` would set, which
/// still wins when given) maps each one and unmaps it after: the cost, a few page faults per
/// login, is small beside argon2id's own.
fn return_large_blocks() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_none() {
        // SAFETY: mallopt only changes allocator parameters; called before any other thread exists.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
        }
    }
}

async fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let path = config_path(cli.config);
    match cli.command {
        Command::Serve { demo } => {
            let config = load(path.as_deref())?;
            init_logging(config.server.log_format == "json");
            serve(config, demo).await
        }
        Command::CheckConfig => match Config::load(path.as_deref()) {
            Ok(config) => {
                for w in config.warnings() {
                    println!("warning: {w}");
                }
                let problems = config.check_environment();
                if !problems.is_empty() {
                    eprint!("{}", mcp_authd::config::ConfigErrors(problems));
                    std::process::exit(1);
                }
                println!("configuration is valid");
                Ok(())
            }
            Err(e) => {
                eprint!("{e}");
                std::process::exit(1);
            }
        },
        Command::Keys { command } => {
            let config = load(path.as_deref())?;
            match command {
                KeysCommand::Rotate => {
                    println!("new signing key: {}", mcp_authd::jwt::rotate(&config)?)
                }
                KeysCommand::Show => println!("{}", serde_json::to_string_pretty(&Keys::load(&config)?.jwks())?),
            }
            Ok(())
        }
        Command::Token { command: TokenCommand::Mint { sub, aud, scope, ttl, client_id, name, email, groups } } => {
            let config = load(path.as_deref())?;
            init_logging(false);
            let keys = Keys::load(&config)?;
            let now = mcp_authd::store::now();
            let claims = AccessClaims {
                iss: config.server.issuer.clone(),
                sub,
                aud: aud.trim_end_matches('/').to_owned(),
                exp: now + ttl,
                iat: now,
                jti: random_token(16),
                client_id,
                scope,
                sid: random_token(16),
                auth_time: now,
                preferred_username: name,
                email,
                groups,
            };
            tracing::info!(audit = "token_minted", sub = %claims.sub, aud = %claims.aud, jti = %claims.jti, "access token minted");
            println!("{}", keys.sign(&claims)?);
            Ok(())
        }
        Command::Clients { command } => admin_command(&load(path.as_deref())?, AdminCommand::Clients(command)),
        Command::Tokens { command } => admin_command(&load(path.as_deref())?, AdminCommand::Tokens(command)),
        Command::Login { issuer, resource, scope, client_id, json } => {
            login::run(login::Login { issuer, resource, scope, client_id, json }).await
        }
        Command::HashPassword => {
            eprintln!("password (one line on standard input):");
            let mut line = String::new();
            std::io::stdin().lock().read_line(&mut line)?;
            let password = line.trim_end_matches(['\r', '\n']);
            anyhow::ensure!(!password.is_empty(), "empty password");
            println!("{}", hash_password(password)?);
            Ok(())
        }
    }
}

async fn serve(config: Config, demo: bool) -> anyhow::Result<()> {
    for w in config.warnings() {
        tracing::warn!("{w}");
    }
    let bind = config.server.bind.clone();
    let grace = config.server.shutdown_grace;
    let (max_connections, request_timeout, keep_alive) =
        (config.server.max_connections, config.server.request_timeout, config.server.keep_alive);
    let workers = match config.server.workers {
        0 => std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2),
        n => n,
    };
    let mut upstreams = Upstreams::from_config(&config, http_client()?);
    if demo {
        let password = std::env::var("MCP_AUTHD_DEMO_PASSWORD").unwrap_or_else(|_| random_token(12));
        upstreams.local = upstreams.local.with_user("demo", hash_password(&password)?, Some("demo@example.com".into()));
        println!("demo login: user \"demo\", password \"{password}\" (from MCP_AUTHD_DEMO_PASSWORD or generated)");
    }
    if upstreams.is_empty() {
        tracing::warn!("no identity provider is configured ([github] or [[local.users]]): nobody can log in");
    }
    let issuer = config.server.issuer.clone();
    let grpc_bind = config.verify.grpc_bind.clone();
    let state = web::Data::new(AppState::new(config, upstreams).await.context("starting mcp-authd")?);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let grpc = if grpc_bind.is_empty() {
        None
    } else {
        let listener =
            tokio::net::TcpListener::bind(&grpc_bind).await.with_context(|| format!("binding {grpc_bind} (gRPC)"))?;
        let ext_authz =
            ExtAuthz::new(state.verifier.clone(), state.answers.clone(), state.dialect.clone(), state.metrics.clone());
        let mut stopped = stopped.clone();
        tracing::info!(bind = %grpc_bind, "Envoy ext_authz gRPC listening");
        Some(tokio::spawn(async move {
            let shutdown = async move {
                let _ = stopped.wait_for(|s| *s).await;
            };
            if let Err(e) = grpc::serve(ext_authz, listener, shutdown).await {
                tracing::error!(error = %e, "ext_authz gRPC server failed");
            }
        }))
    };
    let admin = match admin::socket_path(&state.config) {
        Some(path) => {
            let listener = admin::bind(&path)?;
            let admin_state = state.clone();
            let server = HttpServer::new(move || App::new().app_data(admin_state.clone()).configure(admin::configure))
                .workers(1)
                .disable_signals()
                .listen_uds(listener)
                .with_context(|| format!("serving {}", path.display()))?
                .run();
            tracing::info!(socket = %path.display(), "admin socket listening (mcp-authd clients, mcp-authd tokens)");
            Some((server.handle(), tokio::spawn(server), path))
        }
        None => None,
    };
    let app_state = state.clone();
    let server = HttpServer::new(move || {
        App::new()
            .app_data(app_state.clone())
            .wrap(TracingLogger::<http::RequestSpan>::new())
            .configure(http::configure)
    })
    .workers(workers)
    .max_connections(max_connections.div_ceil(workers))
    .client_request_timeout(Duration::from_secs(request_timeout))
    .keep_alive(Duration::from_secs(keep_alive))
    .shutdown_timeout(grace)
    .disable_signals()
    .bind(&bind)
    .with_context(|| format!("binding {bind}"))?
    .run();
    tracing::info!(%bind, %issuer, metadata = %format!("{}/.well-known/oauth-authorization-server", issuer.trim_end_matches('/')), "mcp-authd listening");
    let handle = server.handle();
    let draining = state.draining.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutting down: draining in-flight requests");
        draining.store(true, Ordering::Release);
        let _ = stop.send(true);
        handle.stop(true).await;
    });
    server.await?;
    if let Some(grpc) = grpc {
        let _ = grpc.await;
    }
    if let Some((handle, task, path)) = admin {
        handle.stop(true).await;
        let _ = task.await;
        let _ = std::fs::remove_file(path);
    }
    tracing::info!("stopped");
    Ok(())
}

/// SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
    }
}

/// A `clients` or `tokens` command.
enum AdminCommand {
    Clients(ClientsCommand),
    Tokens(TokensCommand),
}

/// Runs an operator command against the running server's admin socket; prints what it says.
fn admin_command(config: &Config, command: AdminCommand) -> anyhow::Result<()> {
    let socket = admin::socket_path(config).context("server.admin_socket is empty: the admin socket is off")?;
    let (method, path, body) = match &command {
        AdminCommand::Clients(ClientsCommand::List { .. }) => ("GET", "/clients".to_owned(), None),
        AdminCommand::Clients(ClientsCommand::Show { client_id }) => {
            ("GET", format!("/clients/{}", path_segment(client_id)), None)
        }
        AdminCommand::Clients(ClientsCommand::Delete { client_id }) => {
            ("DELETE", format!("/clients/{}", path_segment(client_id)), None)
        }
        AdminCommand::Tokens(TokensCommand::Revoke { user, client }) => {
            ("POST", "/revocations".to_owned(), Some(serde_json::json!({ "user": user, "client": client })))
        }
    };
    let (status, text) = admin::request(&socket, method, &path, body.as_ref())?;
    if !(200..300).contains(&status) {
        let why: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        anyhow::bail!("{}", why["error_description"].as_str().unwrap_or(&text));
    }
    match command {
        AdminCommand::Clients(ClientsCommand::List { json: false }) => {
            let clients: Vec<serde_json::Value> = serde_json::from_str(&text)?;
            println!("{:<38} {:<28} {:<12} REDIRECT URIS", "CLIENT ID", "NAME", "TYPE");
            for c in &clients {
                let kind = if c["confidential"].as_bool() == Some(true) { "confidential" } else { "public" };
                let uris: Vec<&str> =
                    c["redirect_uris"].as_array().into_iter().flatten().filter_map(|u| u.as_str()).collect();
                let name: String = c["client_name"].as_str().unwrap_or("-").chars().take(28).collect();
                println!("{:<38} {:<28} {:<12} {}", c["client_id"].as_str().unwrap_or(""), name, kind, uris.join(" "));
            }
            eprintln!("{} client(s)", clients.len());
        }
        AdminCommand::Clients(ClientsCommand::Delete { client_id }) => {
            println!("client {client_id} deleted; its tokens are revoked")
        }
        _ => println!("{text}"),
    }
    Ok(())
}

/// A client id as one URL path segment.
fn path_segment(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}
