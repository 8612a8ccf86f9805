//! The HTML report as a person sees it: opened in headless Chromium at a given window size,
//! where its parts are laid out (read with a copy of the page that measures itself: the report
//! itself has no script), and a screenshot.

use std::path::Path;
use std::process::{Command, Output};

/// Where the report's parts are, in CSS pixels from the top of the page, once laid out.
#[derive(Debug, serde::Deserialize)]
pub struct Layout {
    /// The viewport's height (the window's, less the browser's own).
    pub viewport: f64,
    /// The bottom of the failures block.
    pub failures_bottom: f64,
    /// The bottom of the matrix's first failed row (or of its first row).
    pub first_failed_row_bottom: f64,
}

fn chromium(page: &Path, width: u32, height: u32, extra: &[&str]) -> Output {
    let profile = tempfile::tempdir().unwrap();
    Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            &format!("--user-data-dir={}", profile.path().display()),
            &format!("--window-size={width},{height}"),
        ])
        .args(extra)
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("chromium is installed by scripts/setup-tools")
}

/// Lays `report` out in a `width`×`height` window and says where its parts are.
pub fn layout_at(report: &Path, width: u32, height: u32) -> Layout {
    let html = std::fs::read_to_string(report).unwrap();
    assert!(!html.contains("<script"), "the report has no script");
    let probe = r#"<script>
const box = s => { const e = document.querySelector(s); return e ? e.getBoundingClientRect() : null; };
const row = box('#matrix details[open] tr.failed') || box('#matrix details[open] tr');
document.title = JSON.stringify({
  viewport: window.innerHeight,
  failures_bottom: box('#failures').bottom,
  first_failed_row_bottom: row ? row.bottom : 1e9,
});
</script></body>"#;
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("measured.html");
    std::fs::write(&page, html.replace("</body>", probe)).unwrap();
    let out = chromium(&page, width, height, &["--dump-dom"]);
    let dom = String::from_utf8_lossy(&out.stdout);
    let title = dom
        .split("<title>")
        .nth(1)
        .and_then(|t| t.split("</title>").next())
        .unwrap_or_else(|| panic!("no title in the laid-out page: {dom}"));
    let json = title.replace("&quot;", "\"");
    let layout: Layout = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}: {json}"));
    // The viewport is the window less what the browser draws around it, as on a person's
    // screen of that size.
    assert!(layout.viewport > height as f64 * 0.7, "{layout:?}");
    layout
}

/// A screenshot of `report` in a `width`×`height` window.
pub fn screenshot(report: &Path, png: &Path, width: u32, height: u32) {
    let out = chromium(
        report,
        width,
        height,
        &[&format!("--screenshot={}", png.display())],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
