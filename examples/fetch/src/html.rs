//! HTML to Markdown, bounded.
//!
//! The conversion is `htmd` (a turndown.js-style converter over html5ever). Fed a hostile page
//! as is, that pipeline can take the whole server down: parsing deeply nested elements is
//! quadratic in html5ever (100 000 nested `<div>`s take half a minute), and htmd walks the tree
//! recursively, so a few hundred thousand nested elements overflow the stack, which aborts the
//! process. So the page is parsed here, through a sink that watches the tree as it grows, and fed
//! in small pieces: parsing stops (and the document is closed as if it ended there) once an
//! element would sit deeper than [`MAX_DEPTH`], once [`MAX_NODES`] nodes exist, or after
//! [`PARSE_BUDGET`]. What remains is cut to [`MAX_DEPTH`] levels exactly, and htmd converts it on
//! a thread of its own with a large stack.

use std::borrow::Cow;
use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use html5ever::interface::{ElementFlags, NodeOrText, QuirksMode, TreeSink};
use html5ever::tendril::{StrTendril, TendrilSink};
use html5ever::tree_builder::TreeBuilderOpts;
use html5ever::{Attribute, ExpandedName, ParseOpts, QualName, parse_document};
use markup5ever_rcdom::{Handle, NodeData, RcDom};

/// Deepest element kept (Blink's parser stops nesting at 512 too).
pub const MAX_DEPTH: usize = 512;
/// Most nodes built from one page.
pub const MAX_NODES: usize = 500_000;
/// Longest time spent parsing one page; a backstop for shapes the other two limits miss.
pub const PARSE_BUDGET: Duration = Duration::from_secs(5);
/// Bytes fed to the parser between checks.
const CHUNK: usize = 1024;
/// Stack of the conversion thread: ample for [`MAX_DEPTH`] levels of htmd's recursion, even in a
/// debug build.
const STACK: usize = 64 << 20;

/// Elements whose content is not page text.
const SKIP_TAGS: &[&str] =
    &["head", "script", "style", "noscript", "template", "svg", "math", "canvas", "iframe", "object", "embed"];

/// The Markdown and whether a limit cut the page short.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Converted {
    /// The page's `<title>`, if any.
    pub title: Option<String>,
    /// The Markdown.
    pub markdown: String,
    /// Set when a limit stopped the parse: which one.
    pub cut: Option<&'static str>,
}

#[derive(Default)]
struct Budget {
    nodes: Cell<usize>,
    too_deep: Cell<bool>,
}

/// RcDom, counting nodes and noticing depth.
struct GuardedSink {
    dom: RcDom,
    budget: Rc<Budget>,
}

/// Whether `node` has at least `limit` ancestors (walks at most `limit` parent links).
fn depth_at_least(node: &Handle, limit: usize) -> bool {
    let mut current = node.clone();
    for _ in 0..limit {
        let parent = current.parent.take();
        current.parent.set(parent.clone());
        match parent.and_then(|weak| weak.upgrade()) {
            Some(p) => current = p,
            None => return false,
        }
    }
    true
}

impl GuardedSink {
    fn note_insert(&self, parent: &Handle, child: &NodeOrText<Handle>) {
        match child {
            NodeOrText::AppendNode(_) if depth_at_least(parent, MAX_DEPTH) => self.budget.too_deep.set(true),
            NodeOrText::AppendNode(_) => {}
            // Counted as a node (it is one unless it merges into the text before it).
            NodeOrText::AppendText(_) => self.budget.nodes.set(self.budget.nodes.get() + 1),
        }
    }
    fn count(&self, node: Handle) -> Handle {
        self.budget.nodes.set(self.budget.nodes.get() + 1);
        node
    }
}

impl TreeSink for GuardedSink {
    type Handle = Handle;
    type Output = RcDom;
    type ElemName<'a> = ExpandedName<'a>;

    fn finish(self) -> RcDom {
        self.dom
    }
    // Parse errors are not kept: a hostile page can make millions.
    fn parse_error(&self, _msg: Cow<'static, str>) {}
    fn get_document(&self) -> Handle {
        self.dom.get_document()
    }
    fn elem_name<'a>(&'a self, target: &'a Handle) -> ExpandedName<'a> {
        self.dom.elem_name(target)
    }
    fn create_element(&self, name: QualName, attrs: Vec<Attribute>, flags: ElementFlags) -> Handle {
        self.count(self.dom.create_element(name, attrs, flags))
    }
    fn create_comment(&self, text: StrTendril) -> Handle {
        self.count(self.dom.create_comment(text))
    }
    fn create_pi(&self, target: StrTendril, data: StrTendril) -> Handle {
        self.count(self.dom.create_pi(target, data))
    }
    fn append(&self, parent: &Handle, child: NodeOrText<Handle>) {
        self.note_insert(parent, &child);
        self.dom.append(parent, child)
    }
    fn append_based_on_parent_node(&self, element: &Handle, prev_element: &Handle, child: NodeOrText<Handle>) {
        self.note_insert(prev_element, &child);
        self.dom.append_based_on_parent_node(element, prev_element, child)
    }
    fn append_doctype_to_document(&self, name: StrTendril, public_id: StrTendril, system_id: StrTendril) {
        self.dom.append_doctype_to_document(name, public_id, system_id)
    }
    fn get_template_contents(&self, target: &Handle) -> Handle {
        self.dom.get_template_contents(target)
    }
    fn same_node(&self, x: &Handle, y: &Handle) -> bool {
        self.dom.same_node(x, y)
    }
    fn set_quirks_mode(&self, mode: QuirksMode) {
        self.dom.set_quirks_mode(mode)
    }
    fn append_before_sibling(&self, sibling: &Handle, new_node: NodeOrText<Handle>) {
        self.note_insert(sibling, &new_node);
        self.dom.append_before_sibling(sibling, new_node)
    }
    fn add_attrs_if_missing(&self, target: &Handle, attrs: Vec<Attribute>) {
        self.dom.add_attrs_if_missing(target, attrs)
    }
    fn remove_from_parent(&self, target: &Handle) {
        self.dom.remove_from_parent(target)
    }
    fn reparent_children(&self, node: &Handle, new_parent: &Handle) {
        self.dom.reparent_children(node, new_parent)
    }
    fn is_mathml_annotation_xml_integration_point(&self, handle: &Handle) -> bool {
        self.dom.is_mathml_annotation_xml_integration_point(handle)
    }
    // `maybe_clone_an_option_into_selectedcontent` keeps its no-op default: it copies subtrees,
    // which a page could use to multiply its size, and a Markdown rendering does not need it.
}

/// Parses `html` under the limits; returns the document and the limit that cut it, if any.
fn parse_bounded(html: &str) -> (RcDom, Option<&'static str>) {
    parse_with_node_limit(html, MAX_NODES)
}

fn parse_with_node_limit(html: &str, max_nodes: usize) -> (RcDom, Option<&'static str>) {
    let budget = Rc::new(Budget::default());
    let sink = GuardedSink { dom: RcDom::default(), budget: budget.clone() };
    let opts = ParseOpts {
        tree_builder: TreeBuilderOpts { scripting_enabled: true, ..Default::default() },
        ..Default::default()
    };
    let mut parser = parse_document(sink, opts);
    let started = Instant::now();
    let mut cut = None;
    let mut rest = html;
    while !rest.is_empty() {
        let mut end = rest.len().min(CHUNK);
        while !rest.is_char_boundary(end) {
            end += 1;
        }
        parser.process(StrTendril::from_slice(&rest[..end]));
        rest = &rest[end..];
        if budget.too_deep.get() {
            cut = Some("elements nested more than 512 deep");
        } else if budget.nodes.get() > max_nodes {
            cut = Some("too many nodes (500000 at most)");
        } else if started.elapsed() > PARSE_BUDGET {
            cut = Some("parsing took more than 5 s");
        }
        if cut.is_some() && !rest.is_empty() {
            break;
        }
    }
    (parser.finish(), cut)
}

/// Removes everything below [`MAX_DEPTH`] (iteratively), so the recursive walk stays shallow
/// whatever the parser built. Returns whether anything was removed.
fn prune(document: &Handle) -> bool {
    let mut pruned = false;
    let mut stack = vec![(document.clone(), 0usize)];
    while let Some((node, depth)) = stack.pop() {
        if depth >= MAX_DEPTH {
            pruned |= !node.children.borrow().is_empty();
            node.children.borrow_mut().clear();
            continue;
        }
        for child in node.children.borrow().iter() {
            stack.push((child.clone(), depth + 1));
        }
    }
    pruned
}

/// The text of the first `<title>` (iterative search).
fn title(document: &Handle) -> Option<String> {
    let mut stack = vec![document.clone()];
    while let Some(node) = stack.pop() {
        if let NodeData::Element { name, .. } = &node.data
            && &*name.local == "title"
        {
            let mut text = String::new();
            for child in node.children.borrow().iter() {
                if let NodeData::Text { contents } = &child.data {
                    text.push_str(&contents.borrow());
                }
            }
            let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
            return (!text.is_empty()).then_some(text);
        }
        stack.extend(node.children.borrow().iter().rev().cloned());
    }
    None
}

/// Converts on the calling thread. Use [`to_markdown`] from async code.
pub fn to_markdown_blocking(html: &str) -> Converted {
    let (dom, mut cut) = parse_bounded(html);
    if prune(&dom.document) && cut.is_none() {
        cut = Some("elements nested more than 512 deep");
    }
    let title = title(&dom.document);
    let converter = htmd::HtmlToMarkdown::builder().skip_tags(SKIP_TAGS.to_vec()).build();
    let markdown = converter.tree_to_markdown(&dom.document);
    Converted { title, markdown, cut }
}

/// Converts on a thread of its own with a large stack; a panic in the converter becomes an error.
pub async fn to_markdown(html: String) -> Result<Converted, String> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("html-to-markdown".into())
        .stack_size(STACK)
        .spawn(move || {
            let result = std::panic::catch_unwind(|| to_markdown_blocking(&html));
            let _ = tx.send(result.map_err(|_| "the HTML to Markdown converter failed on this page".to_string()));
        })
        .map_err(|e| format!("could not start the converter: {e}"))?;
    rx.await.map_err(|_| "the HTML to Markdown converter stopped".to_string())?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_common_markup() {
        let html = r#"<!doctype html><html><head><title> The  Title </title><style>p{}</style></head>
            <body><h1>Hello</h1><p>Some <b>bold</b> and a <a href="https://example.com/x">link</a>.</p>
            <script>alert(1)</script><ul><li>one</li><li>two</li></ul></body></html>"#;
        let out = to_markdown_blocking(html);
        assert_eq!(out.title.as_deref(), Some("The Title"));
        assert_eq!(out.cut, None);
        assert!(out.markdown.contains("# Hello"), "{}", out.markdown);
        assert!(out.markdown.contains("**bold**"), "{}", out.markdown);
        assert!(out.markdown.contains("[link](https://example.com/x)"), "{}", out.markdown);
        assert!(out.markdown.contains("one") && out.markdown.contains("two"), "{}", out.markdown);
        assert!(!out.markdown.contains("alert") && !out.markdown.contains("p{}"), "{}", out.markdown);
    }

    #[test]
    fn deep_nesting_is_cut_not_fatal() {
        // 200 000 nested elements: unbounded, this parses for minutes and then overflows the
        // stack in the recursive walk, aborting the process.
        for tag in ["div", "b", "span"] {
            let html = format!(
                "<p>start</p>{}deep text{}",
                format!("<{tag}>").repeat(200_000),
                format!("</{tag}>").repeat(10)
            );
            let out = to_markdown_blocking(&html);
            assert_eq!(out.cut, Some("elements nested more than 512 deep"), "{tag}");
            assert!(out.markdown.starts_with("start"), "{tag}: {}", &out.markdown[..out.markdown.len().min(80)]);
        }
    }

    #[test]
    fn nesting_within_the_limit_is_kept_whole() {
        let html = format!("{}deep text{}", "<div>".repeat(400), "</div>".repeat(400));
        let out = to_markdown_blocking(&html);
        assert_eq!(out.cut, None);
        assert_eq!(out.markdown, "deep text");
    }

    #[test]
    fn node_count_is_bounded() {
        // Many small siblings: shallow but numerous. (A smaller limit than MAX_NODES keeps the
        // debug-build test quick; the mechanism is the same.)
        let html = "<i>x</i>".repeat(20_000);
        let (dom, cut) = parse_with_node_limit(&html, 10_000);
        assert_eq!(cut, Some("too many nodes (500000 at most)"));
        let body = dom.document.children.borrow()[0].children.borrow()[1].clone();
        let kept = body.children.borrow().len();
        assert!((5_000..6_000).contains(&kept), "{kept} <i> elements kept");
        let (_, cut) = parse_with_node_limit(&html, 100_000);
        assert_eq!(cut, None);
    }

    #[tokio::test]
    async fn async_conversion_runs_on_its_own_thread() {
        let out = to_markdown("<h2>Sub</h2>".to_string()).await.unwrap();
        assert_eq!(out.markdown, "## Sub");
    }
}
