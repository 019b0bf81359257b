//! The dashboard in a real browser: headless Chromium loads `/`, the page's
//! socket connects, and its numbers move after traffic. A screenshot is
//! left in the target directory.

mod support;

use std::process::Command;
use std::time::Duration;

use support::{Server, keel, scratch_dir};

/// The Chromium binary, or `None` (after a `skipped:` line) when it is not
/// installed and the test command did not require it.
fn chromium() -> Option<&'static str> {
    for name in ["chromium", "chromium-browser", "google-chrome"] {
        if Command::new(name)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
        {
            return Some(name);
        }
    }
    if std::env::var("KEEL_REQUIRE_SERVICES").is_ok_and(|v| v == "1") {
        panic!("chromium is not installed; scripts/test.sh installs it (apt-get install chromium)");
    }
    println!("skipped: chromium not installed");
    None
}

/// Chromium, headless, on a profile of its own, with `args` for `url`.
fn browse(binary: &str, url: &str, args: &[&str]) -> String {
    let profile = scratch_dir();
    let output = Command::new(binary)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--virtual-time-budget=4000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(url)
        .output()
        .expect("run chromium");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The text of the element with id `id` in `dom`.
fn element(dom: &str, id: &str) -> String {
    let Some(start) = dom.find(&format!("id=\"{id}\"")) else {
        return String::new();
    };
    let rest = &dom[start..];
    let open = rest.find('>').map_or(rest.len(), |i| i + 1);
    let close = rest[open..].find('<').map_or(rest.len(), |i| open + i);
    rest[open..close].to_owned()
}

#[tokio::test]
async fn the_dashboard_connects_and_its_numbers_move_after_traffic() {
    let Some(browser) = chromium() else {
        return;
    };
    let server = Server::start({
        let mut cmd = keel();
        cmd.args(["--listen", "127.0.0.1:0"]);
        cmd
    });
    let page = server.url("/");
    let before = browse(browser, &page, &["--dump-dom"]);
    assert_eq!(element(&before, "ws-state"), "connected", "{before}");
    assert_eq!(element(&before, "health"), "healthy");
    let first: u64 = element(&before, "requests-total").parse().unwrap_or(0);

    let http = reqwest::Client::new();
    for _ in 0..20 {
        http.get(server.url("/api/stocks")).send().await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let after = browse(browser, &page, &["--dump-dom"]);
    let second: u64 = element(&after, "requests-total").parse().unwrap_or(0);
    assert!(
        second >= first + 20,
        "requests moved from {first} to {second}"
    );
    assert!(element(&after, "hit").ends_with('%'), "{after}");

    let shot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png");
    browse(
        browser,
        &page,
        &[
            "--window-size=1280,900",
            &format!("--screenshot={}", shot.display()),
        ],
    );
    assert!(
        shot.metadata().is_ok_and(|m| m.len() > 1000),
        "screenshot at {}",
        shot.display()
    );
    println!("dashboard screenshot: {}", shot.display());
}
