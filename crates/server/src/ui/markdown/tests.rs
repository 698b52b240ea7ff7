//! The renderer's tests: what an agent writes can never become markup or script on the page.

use proptest::prelude::*;

use super::{is_safe_url, render, slug};

#[test]
fn raw_html_is_shown_as_text() {
    let html = render(
        "Hello <b onclick=\"x()\">there</b>\n\n<div>\n<script>alert(1)</script>\n</div>\n",
        "doc",
    );
    assert!(!html.contains("<b"), "{html}");
    assert!(!html.contains("<script"), "{html}");
    assert!(!html.contains("<div>"), "{html}");
    assert!(
        html.contains("Hello &lt;b onclick=\"x()\"&gt;there&lt;/b&gt;"),
        "{html}"
    );
    assert!(
        html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{html}"
    );
}

#[test]
fn script_in_code_and_titles_is_escaped() {
    let html = render(
        "# <script>x</script>\n\n```html\n<script>alert(1)</script>\n```\n\n`<img src=x onerror=y>`\n\n[a](https://e.x \"t\\\"><script>\")\n",
        "doc",
    );
    assert!(!html.contains("<script"), "{html}");
    assert!(!html.contains("<img"), "{html}");
}

#[test]
fn dangerous_link_schemes_lose_their_link() {
    for url in [
        "javascript:alert(1)",
        "JavaScript:alert(1)",
        "java&#9;script:alert(1)",
        "&#106;avascript:alert(1)",
        "data:text/html;base64,PHNjcmlwdD4=",
        "vbscript:x",
    ] {
        let html = render(&format!("[click]({url}) and ![pic]({url})"), "doc");
        assert!(!html.contains("href"), "{url}: {html}");
        assert!(html.contains("click"), "{url}: {html}");
        assert!(
            !html.to_lowercase().contains("javascript:"),
            "{url}: {html}"
        );
    }
    let html = render("<javascript:alert(1)>", "doc");
    assert!(!html.contains("href"), "{html}");
}

#[test]
fn safe_links_are_kept_and_images_become_links() {
    let html = render(
        "[site](https://example.com/a?b=1&c=2) [rel](docs/x.md#y) [top](#z) <a@b.c> ![logo](https://e.x/l.png)",
        "doc",
    );
    assert!(
        html.contains("href=\"https://example.com/a?b=1&amp;c=2\""),
        "{html}"
    );
    assert!(html.contains("href=\"docs/x.md#y\""), "{html}");
    assert!(html.contains("href=\"#z\""), "{html}");
    assert!(html.contains("href=\"mailto:a@b.c\""), "{html}");
    assert!(
        html.contains("rel=\"noopener noreferrer nofollow\""),
        "{html}"
    );
    assert!(!html.contains("<img"), "no remote image is loaded: {html}");
    assert!(html.contains("class=\"image-link\""), "{html}");
}

#[test]
fn url_schemes() {
    assert!(is_safe_url("https://x"));
    assert!(is_safe_url("HTTP://x"));
    assert!(is_safe_url("mailto:a@b"));
    assert!(is_safe_url("relative/path:with-colon"));
    assert!(is_safe_url("#anchor"));
    assert!(is_safe_url("?q=a:b"));
    assert!(!is_safe_url(" javascript:x"));
    assert!(!is_safe_url("java\nscript:x"));
    assert!(!is_safe_url("\u{1}javascript:x"));
    assert!(!is_safe_url("data:x"));
    assert!(!is_safe_url("file:///etc/passwd"));
}

#[test]
fn headings_are_demoted_with_unique_prefixed_ids() {
    let html = render(
        "# Requirements: Dark mode\n\n## Overview\n\n## Overview\n\n###### Deep\n\n## `code` & *more*\n",
        "requirements",
    );
    assert!(
        html.contains("<h2 id=\"requirements-requirements-dark-mode\">"),
        "{html}"
    );
    assert!(html.contains("<h3 id=\"requirements-overview\">"), "{html}");
    assert!(
        html.contains("<h3 id=\"requirements-overview-2\">"),
        "{html}"
    );
    assert!(html.contains("<h6 id=\"requirements-deep\">"), "{html}");
    assert!(html.contains("id=\"requirements-code-more\""), "{html}");
    assert_eq!(slug("  ?? "), "section");
    assert_eq!(slug("Über Größe"), "über-größe");
}

#[test]
fn tables_strikethrough_and_task_lists() {
    let html = render(
        "| a | b |\n|---|:-:|\n| 1 | **2** |\n\n~~gone~~\n\n- [ ] todo\n- [x] done\n",
        "plan",
    );
    assert!(
        html.contains("<table>") && html.contains("<th>a</th>"),
        "{html}"
    );
    assert!(
        html.contains("<td class=\"align-center\"><strong>2</strong></td>"),
        "{html}"
    );
    assert!(
        !html.contains("style="),
        "the page's CSP refuses style attributes: {html}"
    );
    assert!(html.contains("<del>gone</del>"), "{html}");
    assert!(html.contains("type=\"checkbox\""), "{html}");
    assert!(html.contains("checked"), "{html}");
}

#[test]
fn code_is_highlighted_by_class() {
    let html = render(
        "```rust\nfn main() { let x = \"hi\"; }\n```\n\n```\nplain <text>\n```\n\n```nosuchlanguage\na < b\n```\n",
        "design",
    );
    assert!(
        html.contains("<pre class=\"code\"><code class=\"language-rust\">"),
        "{html}"
    );
    assert!(html.contains("class=\"hl-"), "{html}");
    assert!(
        html.contains("hl-keyword") || html.contains("hl-storage"),
        "{html}"
    );
    assert!(html.contains("plain &lt;text&gt;"), "{html}");
    assert!(html.contains("a &lt; b"), "{html}");
    assert!(
        !html.contains("style="),
        "colours come from classes: {html}"
    );
}

#[test]
fn a_language_name_cannot_break_out_of_its_attribute() {
    let html = render("```\"><script>x\n code\n```\n", "doc");
    assert!(!html.contains("<script"), "{html}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_input_renders_without_panicking_or_raw_markup(input in "(?s).{0,400}") {
        let html = render(&input, "doc");
        prop_assert!(!html.contains("<script"));
        prop_assert!(!html.to_lowercase().contains("href=\"javascript"));
    }

    #[test]
    fn markdown_shaped_input_renders(
        parts in proptest::collection::vec(prop_oneof![
            Just("# h\n".to_owned()), Just("```rust\n".to_owned()), Just("```\n".to_owned()),
            Just("| a | b |\n|---|---|\n".to_owned()), Just("- [ ] x\n".to_owned()),
            Just("<div>".to_owned()), Just("[l](javascript:x)".to_owned()), Just("![i](data:x)".to_owned()),
            Just("**".to_owned()), Just("`".to_owned()), Just("\n".to_owned()), "[a-z <>&\"']{0,12}",
        ], 0..40)
    ) {
        let html = render(&parts.concat(), "plan");
        prop_assert!(!html.contains("<div"));
        prop_assert!(!html.contains("href=\"javascript"));
        prop_assert!(!html.contains("href=\"data"));
    }
}
