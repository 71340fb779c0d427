//! What a fetched body becomes: Markdown (HTML), text as is, pretty JSON, an image, or a refusal;
//! then the window `[start_index, start_index + max_length)` of it, in characters, with the
//! reference fetch server's note telling the caller where to continue.

use base64::Engine;
use encoding_rs::{Encoding, UTF_8};

use crate::fetch::Page;
use crate::html;

/// Image types returned as MCP image content, with their magic numbers.
pub const IMAGE_TYPES: &[&str] = &["image/png", "image/jpeg", "image/gif", "image/webp"];

/// How a body is treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// HTML or XHTML: converted to Markdown unless `raw`.
    Html,
    /// JSON: pretty-printed unless `raw`.
    Json,
    /// Any other text: as is.
    Text,
    /// One of [`IMAGE_TYPES`].
    Image(&'static str),
}

/// The rendered result, before it becomes MCP content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rendered {
    /// Text (a header line, the window of content, notes).
    Text(String),
    /// An image: a caption and the base64 data.
    Image {
        /// One line saying what this is.
        caption: String,
        /// The MIME type.
        mime: &'static str,
        /// The image, base64 (standard alphabet, padded).
        base64: String,
    },
}

/// Why a body is not returned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unsupported {
    /// A binary type other than the supported images.
    #[error(
        "refused: {url} is `{mime}`, binary content that fetch does not return (it returns HTML as Markdown, text, JSON, and PNG, JPEG, GIF and WebP images)"
    )]
    Binary {
        /// Where it came from.
        url: String,
        /// Its declared (or sniffed) type.
        mime: String,
    },
    /// The body does not start like the image type it claims to be.
    #[error("refused: {url} says it is {mime} but its content is not a {mime} image")]
    NotThatImage {
        /// Where it came from.
        url: String,
        /// The declared type.
        mime: &'static str,
    },
    /// An image larger than the response limit (a cut image is no image).
    #[error("refused: the image at {url} is larger than the {limit}-byte response limit")]
    ImageTooLarge {
        /// Where it came from.
        url: String,
        /// The limit.
        limit: usize,
    },
}

fn magic_matches(mime: &str, body: &[u8]) -> bool {
    match mime {
        "image/png" => body.starts_with(b"\x89PNG\r\n\x1a\n"),
        "image/jpeg" => body.starts_with(&[0xff, 0xd8, 0xff]),
        "image/gif" => body.starts_with(b"GIF87a") || body.starts_with(b"GIF89a"),
        "image/webp" => body.len() >= 12 && &body[..4] == b"RIFF" && &body[8..12] == b"WEBP",
        _ => false,
    }
}

fn sniff_image(body: &[u8]) -> Option<&'static str> {
    IMAGE_TYPES.iter().copied().find(|mime| magic_matches(mime, body))
}

fn looks_like_html(body: &[u8]) -> bool {
    let head = String::from_utf8_lossy(&body[..body.len().min(1024)]).to_ascii_lowercase();
    let head = head.trim_start_matches('\u{feff}').trim_start();
    head.starts_with("<!doctype html") || head.starts_with("<html") || head.contains("<html")
}

/// No NUL in the first 8 KiB, and valid UTF-8 there (a sequence cut by the sample's end is fine).
fn is_textual(body: &[u8]) -> bool {
    let sample = &body[..body.len().min(8192)];
    !sample.contains(&0)
        && match std::str::from_utf8(sample) {
            Ok(_) => true,
            Err(e) => e.error_len().is_none(),
        }
}

/// Decides what a body is from its `Content-Type` (falling back to its first bytes when there is
/// none, or it is `application/octet-stream`).
pub fn classify(url: &str, content_type: Option<&str>, body: &[u8]) -> Result<Kind, Unsupported> {
    let parsed = content_type.and_then(|ct| ct.parse::<mime::Mime>().ok());
    let Some(mime) = parsed.filter(|m| m.essence_str() != "application/octet-stream") else {
        return match sniff_image(body) {
            Some(image) => Ok(Kind::Image(image)),
            None if is_textual(body) && looks_like_html(body) => Ok(Kind::Html),
            None if is_textual(body) => Ok(Kind::Text),
            None => Err(Unsupported::Binary {
                url: url.to_string(),
                mime: content_type.unwrap_or("application/octet-stream (no Content-Type)").to_string(),
            }),
        };
    };
    let (top, sub, suffix) = (mime.type_().as_str(), mime.subtype().as_str(), mime.suffix().map(|s| s.as_str()));
    let essence = mime.essence_str().to_ascii_lowercase();
    let kind = match (top, sub, suffix) {
        ("text", "html", _) | ("application", "xhtml", Some("xml")) => Kind::Html,
        ("application" | "text", "json", _) | (_, _, Some("json")) => Kind::Json,
        ("text", _, _) | (_, "xml", _) | (_, _, Some("xml")) => Kind::Text,
        (
            "application",
            "javascript"
            | "ecmascript"
            | "x-javascript"
            | "x-sh"
            | "sql"
            | "graphql"
            | "yaml"
            | "x-yaml"
            | "toml"
            | "x-ndjson"
            | "x-www-form-urlencoded"
            | "csv"
            | "markdown",
            _,
        ) => Kind::Text,
        ("image", _, _) => match IMAGE_TYPES.iter().find(|t| **t == essence) {
            Some(image) if magic_matches(image, body) => Kind::Image(image),
            Some(image) => return Err(Unsupported::NotThatImage { url: url.to_string(), mime: image }),
            None => return Err(Unsupported::Binary { url: url.to_string(), mime: essence }),
        },
        _ => return Err(Unsupported::Binary { url: url.to_string(), mime: essence }),
    };
    Ok(kind)
}

/// The label in `<meta charset=…>` or `<meta http-equiv … content="…; charset=…">` in the first
/// 1024 bytes, if any (a simplified form of the HTML prescan).
fn meta_charset(body: &[u8]) -> Option<&'static Encoding> {
    let head = String::from_utf8_lossy(&body[..body.len().min(1024)]).to_ascii_lowercase();
    let at = head.find("charset=")? + "charset=".len();
    let label: String = head[at..]
        .trim_start_matches(['"', '\''])
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | ':' | '.'))
        .collect();
    let encoding = Encoding::for_label(label.as_bytes())?;
    // The HTML standard: a meta-declared UTF-16 means UTF-8 (the prescan ran on ASCII bytes).
    Some(if encoding.name().starts_with("UTF-16") { UTF_8 } else { encoding })
}

/// Decodes a text body: a BOM wins, then the `charset` parameter, then (HTML) `<meta charset>`,
/// then UTF-8. Malformed sequences become U+FFFD.
pub fn decode(content_type: Option<&str>, body: &[u8], kind: Kind) -> String {
    let declared = content_type
        .and_then(|ct| ct.parse::<mime::Mime>().ok())
        .and_then(|m| m.get_param(mime::CHARSET).map(|c| c.as_str().to_string()))
        .and_then(|label| Encoding::for_label(label.as_bytes()));
    let encoding = declared.or_else(|| if kind == Kind::Html { meta_charset(body) } else { None }).unwrap_or(UTF_8);
    let (text, _, _) = encoding.decode(body);
    text.into_owned()
}

/// A `Vec` that refuses to grow past `cap`.
struct Capped {
    buf: Vec<u8>,
    cap: usize,
}

impl std::io::Write for Capped {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if self.buf.len() + data.len() > self.cap {
            return Err(std::io::Error::other("pretty-printed JSON too large"));
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Pretty-prints JSON, keeping the document's key order (transcoding, no `Value`). `None` when
/// it does not parse, nests deeper than serde_json's limit of 128, or would grow past 8 times its
/// size (indentation of a deep document can multiply it).
pub fn pretty_json(text: &str) -> Option<String> {
    let mut de = serde_json::Deserializer::from_str(text);
    let mut out = Capped { buf: Vec::with_capacity(text.len() * 2), cap: text.len() * 8 + 64 * 1024 };
    let mut ser = serde_json::Serializer::pretty(&mut out);
    serde_transcode::transcode(&mut de, &mut ser).ok()?;
    de.end().ok()?;
    String::from_utf8(out.buf).ok()
}

/// The window of `content` in characters, like the reference server: from `start_index`, at most
/// `max_length`, and a note with the next `start_index` when more remains.
pub fn paginate(content: &str, start_index: usize, max_length: usize) -> String {
    let mut chars = content.char_indices().skip(start_index);
    let Some((start, _)) = chars.next() else {
        return "<error>No more content available.</error>".to_string();
    };
    let mut window_chars = 1;
    let mut end = content.len();
    for (at, _) in chars {
        if window_chars == max_length {
            end = at;
            break;
        }
        window_chars += 1;
    }
    let mut out = content[start..end].to_string();
    if end < content.len() {
        let next = start_index + window_chars;
        out.push_str(&format!(
            "\n\n<error>Content truncated. Call the fetch tool with a start_index of {next} to get more content.</error>"
        ));
    }
    out
}

/// What to return of a page.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    /// First character returned.
    pub start_index: usize,
    /// Most characters returned.
    pub max_length: usize,
    /// No conversion: HTML as HTML, JSON as sent.
    pub raw: bool,
}

/// Renders a fetched page for the caller.
pub async fn render(page: Page, window: Window) -> Result<Rendered, Unsupported> {
    let url = page.url.to_string();
    let kind = classify(&url, page.content_type.as_deref(), &page.body)?;
    let mut notes = Vec::new();
    if let Some(limit) = page.cut_at {
        if let Kind::Image(_) = kind {
            return Err(Unsupported::ImageTooLarge { url, limit });
        }
        notes.push(format!(
            "Note: the response is larger than the {limit}-byte limit; only its first {limit} bytes were read."
        ));
    }
    let (label, content) = match kind {
        Kind::Image(mime) => {
            let caption = format!("Image from {url} ({mime}, {} bytes)", page.body.len());
            let base64 = base64::engine::general_purpose::STANDARD.encode(&page.body);
            return Ok(Rendered::Image { caption, mime, base64 });
        }
        Kind::Html if !window.raw => {
            let text = decode(page.content_type.as_deref(), &page.body, kind);
            match html::to_markdown(text).await {
                Ok(converted) => {
                    if let Some(cut) = converted.cut {
                        notes.push(format!("Note: the page was converted only up to where it had {cut}."));
                    }
                    let label = match converted.title {
                        Some(title) => format!("\"{title}\", HTML converted to Markdown"),
                        None => "HTML converted to Markdown".to_string(),
                    };
                    let markdown = if converted.markdown.trim().is_empty() {
                        "<error>Page failed to be simplified from HTML</error>".to_string()
                    } else {
                        converted.markdown
                    };
                    (label, markdown)
                }
                Err(reason) => {
                    notes.push(format!("Note: {reason}; here is the raw HTML."));
                    ("HTML, as is".to_string(), decode(page.content_type.as_deref(), &page.body, kind))
                }
            }
        }
        Kind::Json if !window.raw => {
            let text = decode(page.content_type.as_deref(), &page.body, kind);
            match pretty_json(&text) {
                Some(pretty) => ("JSON, pretty-printed".to_string(), pretty),
                None => ("JSON that does not parse or grows too much pretty-printed, as is".to_string(), text),
            }
        }
        Kind::Html | Kind::Json | Kind::Text => {
            let ct = page.content_type.clone().unwrap_or_else(|| "no Content-Type".to_string());
            (format!("{ct}, as is"), decode(page.content_type.as_deref(), &page.body, kind))
        }
    };
    let mut text = format!("Contents of {url} ({label}):\n");
    for note in notes {
        text.push_str(&note);
        text.push('\n');
    }
    text.push_str(&paginate(&content, window.start_index, window.max_length));
    Ok(Rendered::Text(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";

    #[test]
    fn pagination_matches_the_reference_server() {
        let text = "abcdefghij";
        assert_eq!(
            paginate(text, 0, 4),
            "abcd\n\n<error>Content truncated. Call the fetch tool with a start_index of 4 to get more content.</error>"
        );
        assert_eq!(
            paginate(text, 4, 4),
            "efgh\n\n<error>Content truncated. Call the fetch tool with a start_index of 8 to get more content.</error>"
        );
        assert_eq!(paginate(text, 8, 4), "ij");
        assert_eq!(paginate(text, 6, 4), "ghij");
        assert_eq!(paginate(text, 0, 10), "abcdefghij");
        assert_eq!(paginate(text, 10, 4), "<error>No more content available.</error>");
        assert_eq!(paginate(text, 99, 4), "<error>No more content available.</error>");
        assert_eq!(paginate("", 0, 4), "<error>No more content available.</error>");
    }

    #[test]
    fn pagination_counts_characters_not_bytes() {
        let text = "héllo wörld ✓✓";
        let first = paginate(text, 0, 3);
        assert!(first.starts_with("hél\n\n") && first.contains("start_index of 3"), "{first}");
        assert_eq!(paginate(text, 12, 5), "✓✓");
    }

    #[test]
    fn classification_by_content_type() {
        let c = |ct: &str, body: &[u8]| classify("u", Some(ct), body);
        assert_eq!(c("text/html; charset=utf-8", b"<p>"), Ok(Kind::Html));
        assert_eq!(c("application/xhtml+xml", b"<p>"), Ok(Kind::Html));
        assert_eq!(c("application/json", b"{}"), Ok(Kind::Json));
        assert_eq!(c("application/problem+json", b"{}"), Ok(Kind::Json));
        assert_eq!(c("text/plain", b"hi"), Ok(Kind::Text));
        assert_eq!(c("text/csv", b"a,b"), Ok(Kind::Text));
        assert_eq!(c("application/xml", b"<a/>"), Ok(Kind::Text));
        assert_eq!(c("application/atom+xml", b"<a/>"), Ok(Kind::Text));
        assert_eq!(c("image/svg+xml", b"<svg/>"), Ok(Kind::Text));
        assert_eq!(c("application/javascript", b"x"), Ok(Kind::Text));
        assert_eq!(c("image/png", PNG), Ok(Kind::Image("image/png")));
        assert_eq!(c("image/jpeg", b"\xff\xd8\xff\xe0"), Ok(Kind::Image("image/jpeg")));
        assert_eq!(c("image/gif", b"GIF89a..."), Ok(Kind::Image("image/gif")));
        assert_eq!(c("image/webp", b"RIFF\0\0\0\0WEBPVP8 "), Ok(Kind::Image("image/webp")));
        assert!(matches!(c("image/png", b"<html>"), Err(Unsupported::NotThatImage { .. })));
        for binary in ["application/pdf", "application/zip", "image/tiff", "video/mp4", "audio/mpeg", "font/woff2"] {
            let err = c(binary, b"\0\x01").unwrap_err();
            assert!(err.to_string().contains(binary), "{err}");
        }
    }

    #[test]
    fn classification_without_a_type_sniffs() {
        assert_eq!(classify("u", None, PNG), Ok(Kind::Image("image/png")));
        assert_eq!(classify("u", Some("application/octet-stream"), PNG), Ok(Kind::Image("image/png")));
        assert_eq!(classify("u", None, b"  <!DOCTYPE html><p>x"), Ok(Kind::Html));
        assert_eq!(classify("u", None, b"plain words"), Ok(Kind::Text));
        assert!(matches!(classify("u", None, b"\x7fELF\x02\x01\0\0"), Err(Unsupported::Binary { .. })));
        assert!(matches!(classify("u", None, &[0xc3u8; 9000]), Err(Unsupported::Binary { .. })));
        // 8191 bytes, then a two-byte character straddling the 8192-byte sample's end.
        let mut cut_utf8 = "é".repeat(4095).into_bytes();
        cut_utf8.extend_from_slice("aééé".as_bytes());
        assert!(std::str::from_utf8(&cut_utf8[..8192]).is_err());
        assert_eq!(classify("u", None, &cut_utf8), Ok(Kind::Text));
        assert!(matches!(classify("u", Some("application/octet-stream"), b"\0\0\0"), Err(Unsupported::Binary { .. })));
    }

    #[test]
    fn json_is_pretty_printed_in_document_order_and_bounded() {
        assert_eq!(
            pretty_json(r#"{"z":1,"a":[true,null]}"#).unwrap(),
            "{\n  \"z\": 1,\n  \"a\": [\n    true,\n    null\n  ]\n}"
        );
        assert_eq!(pretty_json("{\"a\":1} trailing"), None);
        assert_eq!(pretty_json("{\"a\":"), None);
        // Deeper than serde_json's recursion limit: refused, not a stack overflow.
        assert_eq!(pretty_json(&format!("{}{}", "[".repeat(100_000), "]".repeat(100_000))), None);
        // 127 levels deep, then a long flat array: indentation would multiply it far past 8x.
        let deep = format!("{}{}{}", "[".repeat(127), vec!["1"; 100_000].join(","), "]".repeat(127));
        assert_eq!(pretty_json(&deep), None);
        assert!(pretty_json(&format!("[{}]", vec!["1"; 100_000].join(","))).is_some());
    }

    #[test]
    fn decoding_honours_the_charset() {
        assert_eq!(decode(Some("text/plain; charset=iso-8859-1"), b"caf\xe9", Kind::Text), "café");
        assert_eq!(decode(Some("text/plain"), "café".as_bytes(), Kind::Text), "café");
        assert_eq!(
            decode(None, b"<meta charset=\"windows-1252\"><p>caf\xe9", Kind::Html),
            "<meta charset=\"windows-1252\"><p>café"
        );
        assert_eq!(decode(Some("text/plain"), b"\xef\xbb\xbfbom", Kind::Text), "bom");
        assert_eq!(decode(Some("text/plain"), b"bad \xff byte", Kind::Text), "bad \u{fffd} byte");
    }
}
