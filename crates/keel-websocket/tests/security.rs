//! Who may connect: auth before the upgrade, the origin allow-list and the
//! connection limits.

mod support;

use keel_websocket::{AuthConfig, ClientMetadata, WebSocketConfig, WebSocketManager};
use support::*;

fn with_tokens(tokens: &[&str]) -> WebSocketConfig {
    let mut config = WebSocketConfig::default();
    config.auth = Some(AuthConfig::with_tokens(tokens.iter().copied()));
    config
}

#[tokio::test]
async fn a_token_is_needed_in_the_header_or_the_query() {
    let (manager, addr) = start(with_tokens(&["s3cret"])).await;
    let base = url(addr);
    assert_eq!(connect_status(&base, &[]).await, 401);
    assert_eq!(
        connect_status(&base, &[("authorization", "Bearer wrong")]).await,
        401
    );
    assert_eq!(
        connect_status(&format!("{base}?token=wrong"), &[]).await,
        401
    );
    assert_eq!(
        connect_status(&base, &[("authorization", "Bearer s3cret")]).await,
        101
    );
    assert_eq!(
        connect_status(&format!("{base}?token=s3cret"), &[]).await,
        101
    );
    assert_eq!(manager.stats().rejected, 3);
}

#[tokio::test]
async fn an_auth_hook_decides_and_names_the_user() {
    let manager = WebSocketManager::builder(WebSocketConfig::default())
        .auth(|request| match request.token {
            Some("alice-token") => Some(ClientMetadata::user("alice")),
            _ => None,
        })
        .build()
        .unwrap();
    let addr = serve(&manager).await;
    assert_eq!(connect_status(&url(addr), &[]).await, 401);
    let (_client, _) = tokio_tungstenite::connect_async(format!("{}?token=alice-token", url(addr)))
        .await
        .unwrap();
    eventually("connected", || manager.count() == 1).await;
    assert_eq!(
        manager.clients()[0].metadata.user_id.as_deref(),
        Some("alice")
    );
}

#[tokio::test]
async fn origins_outside_the_allow_list_are_refused() {
    let mut config = WebSocketConfig::default();
    config.allowed_origins = vec!["https://app.example".into()];
    let (_manager, addr) = start(config).await;
    let target = url(addr);
    assert_eq!(
        connect_status(&target, &[("origin", "https://evil.example")]).await,
        403
    );
    assert_eq!(
        connect_status(&target, &[("origin", "https://app.example")]).await,
        101
    );
}

#[tokio::test]
async fn connection_limits_refuse_with_503_and_429() {
    let mut config = WebSocketConfig::default();
    config.max_connections = 3;
    let (manager, addr) = start(config).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(connect(addr).await);
    }
    assert_eq!(connect_status(&url(addr), &[]).await, 503);
    drop(held.pop());
    eventually("a slot freed", || manager.count() == 2).await;
    // The slot is released once the connection task has ended.
    let mut status = 0;
    for _ in 0..100 {
        status = connect_status(&url(addr), &[]).await;
        if status == 101 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(status, 101);

    let mut config = WebSocketConfig::default();
    config.max_connections_per_ip = Some(2);
    let (_manager, addr) = start(config).await;
    let _a = connect(addr).await;
    let _b = connect(addr).await;
    assert_eq!(connect_status(&url(addr), &[]).await, 429);
}

#[tokio::test]
async fn plain_http_on_the_path_is_a_400() {
    let (_manager, addr) = start(WebSocketConfig::default()).await;
    let response = reqwest::get(format!("http://{addr}/ws")).await.unwrap();
    assert_eq!(response.status().as_u16(), 400);
}
