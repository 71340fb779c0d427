//! The MCP side: one tool, `fetch`, over a shared [`Fetcher`].
//!
//! Failures a model can act on (refused address, robots.txt, HTTP status, unsupported type,
//! timeout) are tool results with `isError: true`, as the MCP specification asks for tool
//! execution errors; only malformed arguments are JSON-RPC errors.

use std::sync::Arc;

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResult, ContentBlock};
use rmcp::{ErrorData, schemars, tool, tool_handler, tool_router};
use serde::Deserialize;

use crate::content::{self, Rendered, Window};
use crate::fetch::Fetcher;

/// Most characters one call may ask for.
pub const MAX_LENGTH_LIMIT: usize = 1_000_000;

fn default_max_length() -> usize {
    5000
}

/// Arguments of `fetch`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct FetchArgs {
    /// The URL to fetch: http or https, on the public internet (internal and special-purpose
    /// addresses are refused).
    #[schemars(url)]
    pub url: String,
    /// Maximum number of characters to return (default 5000, at most 1000000).
    #[serde(default = "default_max_length")]
    #[schemars(range(min = 1, max = 1_000_000))]
    pub max_length: usize,
    /// Return content starting at this character index (default 0). When a result is cut, its
    /// last line tells the start_index to ask for next.
    #[serde(default)]
    pub start_index: usize,
    /// Return the content as sent (HTML as HTML, JSON unformatted) instead of converting HTML to
    /// Markdown and pretty-printing JSON (default false).
    #[serde(default)]
    pub raw: bool,
}

/// The MCP server: the tool router over a shared fetcher.
#[derive(Clone)]
pub struct FetchServer {
    fetcher: Arc<Fetcher>,
    tool_router: ToolRouter<Self>,
}

impl FetchServer {
    /// A server over `fetcher`.
    pub fn new(fetcher: Arc<Fetcher>) -> Self {
        Self { fetcher, tool_router: Self::tool_router() }
    }
}

#[tool_router]
impl FetchServer {
    /// Fetches a URL and returns its content: HTML converted to Markdown, text as is, JSON
    /// pretty-printed, PNG/JPEG/GIF/WebP images as images. Long content comes in windows of
    /// max_length characters; the note at the end of a cut result gives the next start_index.
    /// Internal addresses are refused and robots.txt is honoured.
    #[tool(
        name = "fetch",
        annotations(title = "Fetch a URL", read_only_hint = true, destructive_hint = false, open_world_hint = true)
    )]
    async fn fetch(&self, Parameters(args): Parameters<FetchArgs>) -> Result<CallToolResult, ErrorData> {
        if args.max_length == 0 || args.max_length > MAX_LENGTH_LIMIT {
            return Err(ErrorData::invalid_params(
                format!("max_length must be between 1 and {MAX_LENGTH_LIMIT}"),
                None,
            ));
        }
        let page = match self.fetcher.fetch(&args.url).await {
            Ok(page) => page,
            Err(e) => {
                tracing::info!(url = %args.url, error = %e, "fetch failed");
                return Ok(CallToolResult::error(vec![ContentBlock::text(e.to_string())]));
            }
        };
        tracing::info!(url = %args.url, final_url = %page.url, status = page.status, bytes = page.body.len(), "fetched");
        let window = Window { start_index: args.start_index, max_length: args.max_length, raw: args.raw };
        Ok(match content::render(page, window).await {
            Ok(Rendered::Text(text)) => CallToolResult::success(vec![ContentBlock::text(text)]),
            Ok(Rendered::Image { caption, mime, base64 }) => {
                CallToolResult::success(vec![ContentBlock::text(caption), ContentBlock::image(base64, mime)])
            }
            Err(unsupported) => CallToolResult::error(vec![ContentBlock::text(unsupported.to_string())]),
        })
    }
}

#[tool_handler(
    router = self.tool_router,
    name = "mcp-fetch",
    instructions = "One tool, fetch: web pages as Markdown, text, JSON or images. Internal addresses are refused; robots.txt is honoured."
)]
impl rmcp::ServerHandler for FetchServer {}
