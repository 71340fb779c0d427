//! One stdio MCP server process and the routing of its messages (MCP "Transports" §stdio:
//! newline-delimited JSON-RPC on stdin/stdout, logs on stderr).
//!
//! A [`Child`] owns four tasks: a writer (stdin), a reader (stdout → routing), a stderr logger and
//! a supervisor (exit, kill, reaping). Requests are multiplexed: each request sent to the child
//! registers a waiting responder under a proxy-chosen id, so any number of calls run at once and
//! responses are matched by id whatever order the child answers in.
//!
//! Why ids are rewritten (always, for requests the proxy sends to the child): the proxy talks to
//! the child on its own behalf too (`initialize` for pooled children, `notifications/cancelled`),
//! a pooled child serves requests from many clients that all count from 0 or 1, and a client may
//! reuse an id after abandoning a request whose late answer is still on its way. A per-child
//! counter makes every in-flight id unique by construction; the client's own id is put back on the
//! response. The rewrite touches only the envelope (the payload stays raw JSON), so it costs one
//! small serialization. Ids the child picks for its own requests (sampling, roots, elicitation)
//! are kept: one child has one id space and the client answers within the same session.

use std::collections::{HashMap, VecDeque};
use std::ffi::OsString;
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde_json::Value;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::jsonrpc::{self, Kind, Message};

/// Longest stdout line accepted from a child (one JSON-RPC message); longer ones are skipped.
const MAX_LINE: usize = 64 * 1024 * 1024;
/// Longest stderr line logged as is; the rest of a longer line is cut.
const MAX_STDERR_LINE: usize = 16 * 1024;
/// Server-to-client messages kept for a session's GET stream while none is open.
const BACKLOG: usize = 256;
/// After stdin is closed, how long a child gets to exit on its own before SIGTERM.
const STDIN_GRACE: Duration = Duration::from_secs(2);
/// After SIGTERM, how long before SIGKILL.
const TERM_GRACE: Duration = Duration::from_secs(3);

/// The stdio server command line.
#[derive(Clone, Debug)]
pub struct ChildSpec {
    /// Program to run (looked up in `PATH`).
    pub program: OsString,
    /// Its arguments.
    pub args: Vec<OsString>,
}

/// Why a child is gone, as told to its pending and later requests.
pub type Reason = Arc<str>;

/// What a waiting request receives from its child.
#[derive(Debug)]
pub enum Event {
    /// A notification or server-to-client request routed to this request's stream.
    Message(Message),
    /// The child's response to this request (its `id` is still the proxy's).
    Final(Message),
    /// The child is gone before answering.
    Closed(Reason),
}

struct Pending {
    tx: mpsc::UnboundedSender<Event>,
    client_id: Value,
    progress_token: Option<Value>,
}

#[derive(Default)]
struct Routes {
    pending: HashMap<u64, Pending>,
    standalone: Option<mpsc::UnboundedSender<Message>>,
    backlog: VecDeque<Message>,
    dead: Option<Reason>,
}

/// A running stdio MCP server and the requests waiting on it.
pub struct Child {
    tag: Arc<str>,
    pid: u32,
    pooled: bool,
    stdin: mpsc::UnboundedSender<Vec<u8>>,
    next_id: AtomicU64,
    routes: Mutex<Routes>,
    kill: CancellationToken,
    kill_reason: Mutex<Option<String>>,
    exited: watch::Sender<Option<Reason>>,
    last_activity: Mutex<Instant>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these short locks leaves consistent data; keep going.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Outcome of reading one line.
enum Line {
    Text,
    TooLong(usize),
    Eof,
}

/// Reads one `\n`-terminated line into `buf` (without the newline), never buffering more than
/// `max` bytes: a longer line is consumed and reported as `TooLong`.
async fn read_line_capped<R: AsyncBufRead + Unpin>(r: &mut R, buf: &mut Vec<u8>, max: usize) -> std::io::Result<Line> {
    buf.clear();
    let mut total = 0usize;
    loop {
        let available = r.fill_buf().await?;
        if available.is_empty() {
            return Ok(if total == 0 {
                Line::Eof
            } else if total > max {
                Line::TooLong(total)
            } else {
                Line::Text
            });
        }
        let (chunk, used, done) = match available.iter().position(|b| *b == b'\n') {
            Some(i) => (&available[..i], i + 1, true),
            None => (available, available.len(), false),
        };
        total += chunk.len();
        if total <= max {
            buf.extend_from_slice(chunk);
        } else {
            buf.clear();
        }
        r.consume(used);
        if done {
            return Ok(if total > max { Line::TooLong(total) } else { Line::Text });
        }
    }
}

fn preview(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned();
    if bytes.len() > 200 { format!("{text}…") } else { text }
}

impl Child {
    /// Starts `spec` in its own process group with piped stdio. `tag` names it in logs (the
    /// session id, or `stateless-N`); `pooled` children serve the stateless pool. `on_exit` runs
    /// once, after the process is gone and reaped and every waiting request has been told why.
    pub fn spawn(
        spec: &ChildSpec,
        tag: Arc<str>,
        pooled: bool,
        on_exit: impl FnOnce(&Arc<Child>, Reason) + Send + 'static,
    ) -> std::io::Result<Arc<Child>> {
        let mut cmd = tokio::process::Command::new(&spec.program);
        cmd.args(&spec.args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // A safety net if the supervisor is dropped (runtime teardown): SIGKILL the child.
            .kill_on_drop(true)
            // Own process group, so termination reaches grandchildren too (`npx` runs node).
            .process_group(0);
        let mut proc = cmd.spawn()?;
        let pid = proc.id().ok_or_else(|| std::io::Error::other("the child exited at once"))?;
        let (Some(mut stdin), Some(stdout), Some(stderr)) = (proc.stdin.take(), proc.stdout.take(), proc.stderr.take())
        else {
            return Err(std::io::Error::other("child stdio was not piped"));
        };
        let (stdin_tx, mut stdin_rx) = mpsc::unbounded_channel::<Vec<u8>>();
        let child = Arc::new(Child {
            tag: tag.clone(),
            pid,
            pooled,
            stdin: stdin_tx,
            next_id: AtomicU64::new(1),
            routes: Mutex::new(Routes::default()),
            kill: CancellationToken::new(),
            kill_reason: Mutex::new(None),
            exited: watch::channel(None).0,
            last_activity: Mutex::new(Instant::now()),
        });
        info!(session = %tag, pid, program = ?spec.program, "started stdio server");

        // Writer: one message per line, in order. Stops (closing stdin, which asks a stdio
        // server to exit) when the child is being stopped.
        let kill = child.kill.clone();
        tokio::spawn(async move {
            loop {
                let line = tokio::select! {
                    line = stdin_rx.recv() => line,
                    _ = kill.cancelled() => None,
                };
                let Some(line) = line else { break };
                if stdin.write_all(&line).await.is_err() || stdin.flush().await.is_err() {
                    break;
                }
            }
        });

        // Reader: stdout lines → routing.
        let (stdout_closed_tx, stdout_closed) = oneshot::channel::<()>();
        let reader_child = child.clone();
        let reader = tokio::spawn(async move {
            let mut r = BufReader::with_capacity(64 * 1024, stdout);
            let mut buf = Vec::with_capacity(8 * 1024);
            loop {
                match read_line_capped(&mut r, &mut buf, MAX_LINE).await {
                    Ok(Line::Text) => reader_child.on_line(&buf),
                    Ok(Line::TooLong(n)) => {
                        warn!(session = %reader_child.tag, pid, bytes = n, "skipped a stdout line over the size limit")
                    }
                    Ok(Line::Eof) | Err(_) => break,
                }
            }
            let _ = stdout_closed_tx.send(());
        });

        // Stderr: the child's own log, into ours.
        let stderr_tag = tag.clone();
        tokio::spawn(async move {
            let mut r = BufReader::new(stderr);
            let mut buf = Vec::new();
            loop {
                match read_line_capped(&mut r, &mut buf, MAX_STDERR_LINE).await {
                    Ok(Line::Text) => {
                        let line = String::from_utf8_lossy(&buf);
                        let line = line.trim_end();
                        if !line.is_empty() {
                            info!(target: "mcp_stdio_proxy::stderr", session = %stderr_tag, pid, "{line}");
                        }
                    }
                    Ok(Line::TooLong(n)) => {
                        info!(target: "mcp_stdio_proxy::stderr", session = %stderr_tag, pid, "({n} bytes of stderr cut)")
                    }
                    Ok(Line::Eof) | Err(_) => break,
                }
            }
        });

        // Supervisor.
        let sup = child.clone();
        tokio::spawn(async move {
            enum Cause {
                Exited(std::io::Result<ExitStatus>),
                StdoutClosed,
                Killed,
            }
            let mut stdout_closed = stdout_closed;
            let cause = tokio::select! {
                status = proc.wait() => Cause::Exited(status),
                _ = &mut stdout_closed => Cause::StdoutClosed,
                _ = sup.kill.cancelled() => Cause::Killed,
            };
            let status = match cause {
                Cause::Exited(status) => status,
                Cause::StdoutClosed => {
                    // Usually the process is exiting; if it lingers without stdout it is useless.
                    sup.kill.cancel();
                    terminate(&mut proc, pid, Duration::from_millis(500)).await
                }
                Cause::Killed => terminate(&mut proc, pid, STDIN_GRACE).await,
            };
            sup.kill.cancel();
            // Route what the child wrote before it went, then clear any leftover group members.
            let _ = tokio::time::timeout(Duration::from_secs(2), reader).await;
            let _ = killpg(Pid::from_raw(pid as i32), Signal::SIGKILL);
            let status = match status {
                Ok(s) => s.to_string(),
                Err(e) => format!("wait failed: {e}"),
            };
            let reason: Reason = match lock(&sup.kill_reason).clone() {
                Some(why) => format!("the stdio server was stopped: {why}").into(),
                None => format!("the stdio server exited ({status})").into(),
            };
            info!(session = %sup.tag, pid, %status, "{reason}");
            sup.mark_dead(reason.clone());
            on_exit(&sup, reason.clone());
            sup.exited.send_replace(Some(reason));
        });
        Ok(child)
    }

    /// The log tag: session id or `stateless-N`.
    pub fn tag(&self) -> &Arc<str> {
        &self.tag
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Asks the child to stop: stdin is closed, then SIGTERM, then SIGKILL to its process group.
    /// `why` is told to waiting and later requests. Returns at once.
    pub fn kill(&self, why: impl Into<String>) {
        let mut reason = lock(&self.kill_reason);
        if reason.is_none() && !self.kill.is_cancelled() {
            *reason = Some(why.into());
        }
        drop(reason);
        self.kill.cancel();
    }

    /// Waits until the process is gone and reaped; returns why.
    pub async fn wait_exit(&self) -> Reason {
        let mut rx = self.exited.subscribe();
        let reason = rx.wait_for(Option::is_some).await.map(|r| r.clone());
        reason.ok().flatten().unwrap_or_else(|| "the stdio server is gone".into())
    }

    /// `Some(reason)` once the child is gone.
    pub fn dead(&self) -> Option<Reason> {
        lock(&self.routes).dead.clone()
    }

    /// Whether the child is stopping or gone.
    pub fn stopping(&self) -> bool {
        self.kill.is_cancelled() || self.dead().is_some()
    }

    /// How long since the last client message, or `None` while requests are in flight (requests
    /// whose client went away do not count: they must not keep a session alive forever).
    pub fn idle_for(&self) -> Option<Duration> {
        if lock(&self.routes).pending.values().any(|p| !p.tx.is_closed()) {
            return None;
        }
        Some(lock(&self.last_activity).elapsed())
    }

    /// Requests sent and not yet answered (or cancelled-but-unanswered, on pooled children).
    pub fn pending_count(&self) -> usize {
        lock(&self.routes).pending.len()
    }

    fn touch(&self) {
        *lock(&self.last_activity) = Instant::now();
    }

    fn write(&self, msg: &Message) -> Result<(), Reason> {
        self.stdin.send(msg.to_line()).map_err(|_| self.dead().unwrap_or_else(|| "the stdio server is stopping".into()))
    }

    /// Sends a request to the child under a fresh proxy id and registers its responder.
    /// Returns the proxy id and the receiver of everything routed to this request.
    pub fn start_request(&self, mut msg: Message) -> Result<(u64, mpsc::UnboundedReceiver<Event>), Reason> {
        let pid = self.next_id.fetch_add(1, Ordering::Relaxed);
        let progress_token = if msg.params.as_ref().is_some_and(|p| p.get().contains("progressToken")) {
            msg.peek_params().meta.and_then(|m| m.progress_token)
        } else {
            None
        };
        let client_id = msg.id.replace(Value::from(pid)).unwrap_or(Value::Null);
        let (tx, rx) = mpsc::unbounded_channel();
        {
            let mut routes = lock(&self.routes);
            if let Some(reason) = &routes.dead {
                return Err(reason.clone());
            }
            // Registered before writing, so a fast answer always finds its responder.
            routes.pending.insert(pid, Pending { tx, client_id, progress_token });
        }
        self.touch();
        if let Err(reason) = self.write(&msg) {
            lock(&self.routes).pending.remove(&pid);
            return Err(reason);
        }
        Ok((pid, rx))
    }

    /// Forwards a client notification. `notifications/cancelled` names the client's request id:
    /// it is mapped to the proxy id (and dropped if that request is no longer in flight).
    pub fn forward_notification(&self, mut msg: Message) -> Result<(), Reason> {
        self.touch();
        if msg.method() == "notifications/cancelled" {
            let Some(client_id) = msg.peek_params().request_id else {
                return Ok(());
            };
            let pid = {
                let mut routes = lock(&self.routes);
                let found = routes.pending.iter().find(|(_, p)| p.client_id == client_id).map(|(pid, _)| *pid);
                // The child SHOULD NOT answer a cancelled request; stop waiting for it.
                found.inspect(|pid| {
                    routes.pending.remove(pid);
                })
            };
            let Some(pid) = pid else {
                debug!(session = %self.tag, %client_id, "cancellation for a request no longer in flight dropped");
                return Ok(());
            };
            let mut params: Value =
                msg.params.as_ref().and_then(|p| serde_json::from_str(p.get()).ok()).unwrap_or_default();
            params["requestId"] = Value::from(pid);
            msg.params = Some(jsonrpc::to_raw(&params));
        }
        self.write(&msg)
    }

    /// Forwards the client's answer to one of the child's own requests (ids are the child's).
    pub fn forward_response(&self, msg: Message) -> Result<(), Reason> {
        self.touch();
        self.write(&msg)
    }

    /// Tells the child the proxy gave up on request `pid` (client gone). Sessions forget the
    /// request at once; pooled children keep it pending, so the child is not lent to another
    /// client while it may still emit messages about this one.
    pub fn cancel(&self, pid: u64, why: &str) {
        {
            let mut routes = lock(&self.routes);
            if !routes.pending.contains_key(&pid) {
                return;
            }
            if !self.pooled {
                routes.pending.remove(&pid);
            }
        }
        let note = Message::request(
            None,
            "notifications/cancelled",
            Some(serde_json::json!({ "requestId": pid, "reason": why })),
        );
        let _ = self.write(&note);
    }

    /// Opens (or replaces) the session's standalone stream (HTTP GET) and flushes the backlog
    /// into it. Replacing closes the previous stream: a message goes out on one stream only.
    pub fn open_standalone(&self) -> Result<mpsc::UnboundedReceiver<Message>, Reason> {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut routes = lock(&self.routes);
        if let Some(reason) = &routes.dead {
            return Err(reason.clone());
        }
        for msg in routes.backlog.drain(..) {
            let _ = tx.send(msg);
        }
        routes.standalone = Some(tx);
        Ok(rx)
    }

    /// Delivers a server-to-client message that a request stream could not carry (the client
    /// did not accept SSE) to the standalone stream, the backlog, or, on pooled children, back
    /// to the child as an error if it was a request.
    pub fn redirect(&self, msg: Message) {
        let mut routes = lock(&self.routes);
        self.deliver_standalone(&mut routes, msg);
    }

    fn on_line(&self, line: &[u8]) {
        if line.iter().all(u8::is_ascii_whitespace) {
            return;
        }
        let msg = match Message::parse(line) {
            Ok(msg) => msg,
            Err(error) => {
                warn!(session = %self.tag, pid = self.pid, line = %preview(line), %error,
                    "ignored a stdout line from the stdio server that is not JSON-RPC");
                return;
            }
        };
        match msg.kind() {
            Kind::Response => self.on_response(msg),
            Kind::Request | Kind::Notification => self.deliver(msg),
            Kind::Invalid => {
                warn!(session = %self.tag, pid = self.pid, line = %preview(line),
                    "ignored an invalid JSON-RPC message from the stdio server")
            }
        }
    }

    fn on_response(&self, msg: Message) {
        let pid = msg.id.as_ref().and_then(Value::as_u64);
        let pending = pid.and_then(|pid| lock(&self.routes).pending.remove(&pid));
        match pending {
            Some(p) => {
                if p.tx.send(Event::Final(msg)).is_err() {
                    debug!(session = %self.tag, ?pid, "response for a client that went away dropped");
                }
            }
            None => debug!(session = %self.tag, ?pid, "response to an unknown or cancelled request dropped"),
        }
    }

    /// Routes a server-to-client notification or request (Streamable HTTP: related messages go
    /// on the originating request's stream, others on the GET stream):
    /// 1. `notifications/progress` → the request that chose that progress token;
    /// 2. one request in flight → its stream (a stdio server can only mean that one);
    /// 3. a GET stream is open → there;
    /// 4. several requests in flight → the newest one;
    /// 5. otherwise kept (bounded) until a GET stream opens.
    fn deliver(&self, msg: Message) {
        let token = if msg.method() == "notifications/progress" { msg.peek_params().progress_token } else { None };
        let mut routes = lock(&self.routes);
        let live = || routes.pending.iter().filter(|(_, p)| !p.tx.is_closed());
        let by_token = token.as_ref().and_then(|t| live().find(|(_, p)| p.progress_token.as_ref() == Some(t)));
        let target = match by_token {
            Some((pid, _)) => Some(*pid),
            None if live().count() == 1 => live().next().map(|(pid, _)| *pid),
            None if routes.standalone.is_some() => None,
            None => live().map(|(pid, _)| *pid).max(),
        };
        let msg = match target.and_then(|pid| routes.pending.get(&pid)) {
            Some(p) => match p.tx.send(Event::Message(msg)) {
                Ok(()) => return,
                Err(mpsc::error::SendError(Event::Message(msg))) => msg,
                Err(_) => return,
            },
            None => msg,
        };
        self.deliver_standalone(&mut routes, msg);
    }

    fn deliver_standalone(&self, routes: &mut Routes, msg: Message) {
        if self.pooled {
            // No GET stream in stateless mode: nobody can answer, so say so rather than hang.
            if msg.kind() == Kind::Request {
                let id = msg.id.clone();
                drop(msg);
                let reply = Message::error(
                    id,
                    jsonrpc::METHOD_NOT_FOUND,
                    "mcp-stdio-proxy: no client is listening for server requests here",
                    None,
                );
                // `routes` is locked here: send directly, because `write` on a closed stdin
                // would call `dead()`, which locks `routes` again (a deadlock). A closed stdin
                // means the child is going anyway.
                let _ = self.stdin.send(reply.to_line());
            } else {
                debug!(session = %self.tag, method = msg.method(), "notification with no listener dropped");
            }
            return;
        }
        if let Some(tx) = &routes.standalone {
            match tx.send(msg) {
                Ok(()) => return,
                Err(mpsc::error::SendError(msg)) => {
                    routes.standalone = None;
                    routes.backlog.push_back(msg);
                }
            }
        } else {
            routes.backlog.push_back(msg);
        }
        if routes.backlog.len() > BACKLOG {
            let dropped = routes.backlog.pop_front();
            debug!(session = %self.tag, method = dropped.as_ref().map(Message::method), "backlog full: oldest message dropped");
        }
    }

    fn mark_dead(&self, reason: Reason) {
        let mut routes = lock(&self.routes);
        routes.dead = Some(reason.clone());
        for (_, p) in routes.pending.drain() {
            let _ = p.tx.send(Event::Closed(reason.clone()));
        }
        routes.standalone = None;
        routes.backlog.clear();
    }
}

/// Stops a child whose stdin is being closed: waits `grace` for it to exit on its own, then
/// SIGTERM to its process group, then SIGKILL. Always reaps it.
async fn terminate(proc: &mut tokio::process::Child, pid: u32, grace: Duration) -> std::io::Result<ExitStatus> {
    if let Ok(status) = tokio::time::timeout(grace, proc.wait()).await {
        return status;
    }
    let group = Pid::from_raw(pid as i32);
    let _ = killpg(group, Signal::SIGTERM);
    if let Ok(status) = tokio::time::timeout(TERM_GRACE, proc.wait()).await {
        return status;
    }
    let _ = killpg(group, Signal::SIGKILL);
    proc.wait().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn capped_lines() {
        let data: &[u8] = b"short\n0123456789abcdef\nlast-no-newline";
        let mut r = BufReader::with_capacity(4, data);
        let mut buf = Vec::new();
        assert!(matches!(read_line_capped(&mut r, &mut buf, 10).await.unwrap(), Line::Text));
        assert_eq!(buf, b"short");
        assert!(matches!(read_line_capped(&mut r, &mut buf, 10).await.unwrap(), Line::TooLong(16)));
        assert!(matches!(read_line_capped(&mut r, &mut buf, 20).await.unwrap(), Line::Text));
        assert_eq!(buf, b"last-no-newline");
        assert!(matches!(read_line_capped(&mut r, &mut buf, 20).await.unwrap(), Line::Eof));
    }
}
