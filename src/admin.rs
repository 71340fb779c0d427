//! The operator's door: a small HTTP API on a Unix socket (`server.admin_socket`, in the data
//! directory by default, mode 0600) that `mcp-authd clients …` and `mcp-authd tokens revoke …`
//! talk to. It goes through the running server, so a revocation reaches its in-memory set at
//! once (and, with Redis, every replica through the feed), and the embedded store, which one
//! process holds open, is reachable at all. Access control is the filesystem's, as for Docker's
//! socket: whoever may open the socket is the operator. It never listens on TCP.
//!
//! | method | path | |
//! |---|---|---|
//! | GET | `/clients` | every client: id, name, type, redirect URIs, grants, registration time |
//! | GET | `/clients/{id}` | one client's metadata |
//! | DELETE | `/clients/{id}` | deletes it and revokes its tokens (as RFC 7592 `DELETE` does) |
//! | POST | `/revocations` | `{"user": sub}` or `{"client": id}`: every token issued to it until now |

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use actix_web::{HttpResponse, web};
use anyhow::Context;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::AppState;
use crate::config::Config;
use crate::error::Error;
use crate::oauth::registration;
use crate::store::{ClientRecord, RevocationTarget, now};

/// Where the socket is, if enabled (`server.admin_socket`, relative to the data directory).
pub fn socket_path(config: &Config) -> Option<PathBuf> {
    let configured = config.server.admin_socket.trim();
    (!configured.is_empty()).then(|| config.server.data_dir.join(configured))
}

/// Binds the socket, readable and writable by this user only. A socket left by a process that
/// died is replaced; one that answers belongs to a running server and is an error.
pub fn bind(path: &Path) -> anyhow::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    if path.exists() {
        anyhow::ensure!(
            UnixStream::connect(path).is_err(),
            "{} is in use: is another mcp-authd running on this data directory?",
            path.display()
        );
        std::fs::remove_file(path).with_context(|| format!("removing the stale {}", path.display()))?;
    }
    let listener = UnixListener::bind(path).with_context(|| format!("binding {}", path.display()))?;
    // Under the usual umask (022) the socket is born 0755, which others cannot connect to
    // (connecting needs write permission); 0600 makes that explicit.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("restricting {}", path.display()))?;
    Ok(listener)
}

/// The routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/clients", web::get().to(list))
        .route("/clients/{id}", web::get().to(show))
        .route("/clients/{id}", web::delete().to(delete))
        .route("/revocations", web::post().to(revoke));
}

fn summary(c: &ClientRecord) -> Value {
    json!({
        "client_id": c.client_id,
        "client_name": c.metadata.client_name,
        "confidential": c.secret_hash.is_some(),
        "redirect_uris": c.metadata.redirect_uris,
        "grant_types": c.metadata.grant_types,
        "client_id_issued_at": c.client_id_issued_at,
    })
}

async fn list(app: web::Data<AppState>) -> Result<HttpResponse, Error> {
    let mut clients = app.store.list_clients().await?;
    clients.sort_by_key(|c| std::cmp::Reverse(c.client_id_issued_at));
    Ok(HttpResponse::Ok().json(clients.iter().map(summary).collect::<Vec<_>>()))
}

fn not_found(id: &str) -> HttpResponse {
    HttpResponse::NotFound().json(json!({ "error": "not_found", "error_description": format!("no client {id:?}") }))
}

async fn show(app: web::Data<AppState>, id: web::Path<String>) -> Result<HttpResponse, Error> {
    let Some(client) = app.store.get_client(&id).await? else {
        return Ok(not_found(&id));
    };
    let mut out = serde_json::to_value(&client.metadata).map_err(|e| Error::Internal(e.into()))?;
    out["client_id"] = json!(client.client_id);
    out["client_id_issued_at"] = json!(client.client_id_issued_at);
    out["confidential"] = json!(client.secret_hash.is_some());
    Ok(HttpResponse::Ok().json(out))
}

async fn delete(app: web::Data<AppState>, id: web::Path<String>) -> Result<HttpResponse, Error> {
    let Some(client) = app.store.get_client(&id).await? else {
        return Ok(not_found(&id));
    };
    registration::delete(&app, &client).await?;
    tracing::info!(audit = "admin_client_deleted", client_id = %client.client_id, "client deleted by the operator");
    Ok(HttpResponse::NoContent().finish())
}

/// What to revoke: exactly one of the two.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RevokeRequest {
    user: Option<String>,
    client: Option<String>,
}

async fn revoke(app: web::Data<AppState>, body: web::Json<RevokeRequest>) -> Result<HttpResponse, Error> {
    let target = match body.into_inner() {
        RevokeRequest { user: Some(sub), client: None } if !sub.is_empty() => RevocationTarget::User(sub),
        RevokeRequest { user: None, client: Some(id) } if !id.is_empty() => RevocationTarget::Client(id),
        _ => return Err(Error::invalid_request("name exactly one of user or client")),
    };
    // Until every token issued so far is dead: access tokens, and logins that refresh.
    let t = &app.config.tokens;
    let until = now() + t.access_token_ttl.max(t.refresh_token_ttl) as i64;
    app.revocations.revoke(app.store.as_ref(), target.clone(), until).await?;
    tracing::info!(audit = "admin_revocation", target = ?target, "tokens revoked by the operator");
    Ok(HttpResponse::Ok().json(json!({ "revoked": target, "until": until })))
}

/// One request to the socket (HTTP/1.1, the connection closed after); the status and body.
pub fn request(socket: &Path, method: &str, path: &str, body: Option<&Value>) -> anyhow::Result<(u16, String)> {
    let mut stream = UnixStream::connect(socket).with_context(|| {
        format!("connecting to {} (is mcp-authd running with this configuration?)", socket.display())
    })?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let body = body.map(Value::to_string).unwrap_or_default();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: mcp-authd\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").context("a malformed answer from the admin socket")?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("a malformed status line from the admin socket")?;
    Ok((status, body.to_owned()))
}
