//! The HTTP side: checks an upgrade request (method and headers, origin,
//! auth, limits), answers `101 Switching Protocols` and serves the
//! upgraded connection on a task the manager tracks.

use std::collections::HashMap;
use std::net::SocketAddr;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse as _, Response};
use axum::routing::get;
use hyper_util::rt::TokioIo;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;

use crate::client::ClientMetadata;
use crate::error::Rejection;
use crate::manager::{AuthRequest, WebSocketManager};

impl WebSocketManager {
    /// An axum router answering WebSocket upgrades at `[websocket] path`.
    /// Serve it with `into_make_service_with_connect_info::<SocketAddr>()`
    /// so clients get their address and `max_connections_per_ip` applies
    /// (without it, clients show `0.0.0.0:0` and only the total limit
    /// applies).
    pub fn router<S>(&self) -> Router<S>
    where
        S: Clone + Send + Sync + 'static,
    {
        Router::new()
            .route(&self.inner.config.path, get(handle))
            .with_state(self.clone())
    }

    /// Answers an upgrade request from any axum handler: checks it, replies
    /// `101` and serves the connection in the background (owned by this
    /// manager), or replies 400 (not an upgrade), 401 (auth), 403
    /// (origin), 429 (per-address limit) or 503 (total limit, shutting
    /// down).
    pub async fn upgrade(&self, request: Request) -> Response {
        match self.accept(request) {
            Ok(response) => response,
            Err(rejection) => {
                self.count_rejection();
                tracing::debug!(%rejection, "websocket upgrade refused");
                let status =
                    StatusCode::from_u16(rejection.status()).unwrap_or(StatusCode::BAD_REQUEST);
                (status, rejection.to_string()).into_response()
            }
        }
    }

    fn accept(&self, mut request: Request) -> Result<Response, Rejection> {
        if self.is_shutting_down() {
            return Err(Rejection::ShuttingDown);
        }
        let key = upgrade_key(&request)?;
        let config = self.config();
        check_origin(request.headers(), &config.allowed_origins)?;
        let known = request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0);
        if known.is_none() && config.max_connections_per_ip.is_some() {
            static WARNED: std::sync::Once = std::sync::Once::new();
            WARNED.call_once(|| {
                tracing::warn!(
                    "websocket: max_connections_per_ip needs the peer address; serve the router \
                     with into_make_service_with_connect_info::<SocketAddr>()"
                );
            });
        }
        let remote = known.unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0)));
        let metadata = self.authenticate(&request, remote)?;
        let slot = self.reserve(known)?;
        let on_upgrade = hyper::upgrade::on(&mut request);
        let prepared = self.prepare(remote, metadata, slot);
        let framing = self.inner.framing;
        self.inner.tracker.spawn(async move {
            match on_upgrade.await {
                Ok(upgraded) => {
                    let socket = WebSocketStream::from_raw_socket(
                        TokioIo::new(upgraded),
                        Role::Server,
                        Some(framing),
                    )
                    .await;
                    prepared.serve(socket).await;
                }
                Err(error) => tracing::debug!(%error, "websocket upgrade failed"),
            }
        });
        let mut response = Response::new(Body::empty());
        *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let headers = response.headers_mut();
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        if let Ok(accept) = HeaderValue::from_str(&derive_accept_key(key.as_bytes())) {
            headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
        }
        Ok(response)
    }

    fn authenticate(
        &self,
        request: &Request,
        remote: SocketAddr,
    ) -> Result<ClientMetadata, Rejection> {
        let inner = &self.inner;
        let auth_config = inner.config.auth.as_ref();
        if auth_config.is_none() && inner.auth.is_none() {
            return Ok(ClientMetadata::default());
        }
        let (header_name, query_name) = auth_config.map_or(("authorization", "token"), |a| {
            (a.header.as_str(), a.query.as_str())
        });
        let query: HashMap<String, String> = Query::try_from_uri(request.uri())
            .map(|q: Query<HashMap<String, String>>| q.0)
            .unwrap_or_default();
        let token = token_from(request.headers(), header_name).or_else(|| {
            query
                .get(query_name)
                .map(String::as_str)
                .filter(|t| !t.is_empty())
        });
        if let Some(hook) = &inner.auth {
            let seen = AuthRequest {
                token,
                headers: request.headers(),
                remote_addr: remote,
            };
            return hook(&seen).ok_or(Rejection::Unauthorized);
        }
        let tokens = auth_config.map_or(&[][..], |a| a.tokens.as_slice());
        match token {
            Some(token) if tokens.iter().any(|t| same(t.as_bytes(), token.as_bytes())) => {
                Ok(ClientMetadata::default())
            }
            _ => Err(Rejection::Unauthorized),
        }
    }
}

async fn handle(State(manager): State<WebSocketManager>, request: Request) -> Response {
    manager.upgrade(request).await
}

/// The `Sec-WebSocket-Key` of a valid upgrade request.
fn upgrade_key(request: &Request) -> Result<String, Rejection> {
    let headers = request.headers();
    let has_token = |name: header::HeaderName, token: &str| {
        headers.get_all(name).iter().any(|v| {
            v.to_str().is_ok_and(|v| {
                v.split(',')
                    .any(|part| part.trim().eq_ignore_ascii_case(token))
            })
        })
    };
    if request.method() != Method::GET
        || !has_token(header::CONNECTION, "upgrade")
        || !has_token(header::UPGRADE, "websocket")
        || headers
            .get(header::SEC_WEBSOCKET_VERSION)
            .is_none_or(|v| v.as_bytes() != b"13")
    {
        return Err(Rejection::NotUpgrade);
    }
    headers
        .get(header::SEC_WEBSOCKET_KEY)
        .and_then(|v| v.to_str().ok())
        .filter(|k| !k.is_empty())
        .map(str::to_owned)
        .ok_or(Rejection::NotUpgrade)
}

fn check_origin(headers: &HeaderMap, allowed: &[String]) -> Result<(), Rejection> {
    if allowed.is_empty() {
        return Ok(());
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Ok(());
    };
    let origin = origin.to_str().map_err(|_| Rejection::Origin)?;
    if allowed
        .iter()
        .any(|a| a == "*" || a.trim().eq_ignore_ascii_case(origin))
    {
        Ok(())
    } else {
        Err(Rejection::Origin)
    }
}

/// The token in header `name`: `Bearer <token>` or the bare value.
fn token_from<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    if name.is_empty() {
        return None;
    }
    let value = headers.get(name)?.to_str().ok()?.trim();
    let token = match value.split_once(' ') {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => rest.trim(),
        _ => value,
    };
    (!token.is_empty()).then_some(token)
}

/// Compares without stopping at the first difference.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_come_bare_or_as_bearer() {
        let mut headers = HeaderMap::new();
        headers.insert("authorization", HeaderValue::from_static("Bearer abc"));
        headers.insert("x-token", HeaderValue::from_static("xyz"));
        assert_eq!(token_from(&headers, "authorization"), Some("abc"));
        assert_eq!(token_from(&headers, "x-token"), Some("xyz"));
        assert_eq!(token_from(&headers, "missing"), None);
    }

    #[test]
    fn origins_are_compared_without_case_and_absent_ones_pass() {
        let allowed = vec!["https://App.example".to_owned()];
        let mut headers = HeaderMap::new();
        assert_eq!(check_origin(&headers, &allowed), Ok(()));
        headers.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://app.example"),
        );
        assert_eq!(check_origin(&headers, &allowed), Ok(()));
        headers.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://evil.example"),
        );
        assert_eq!(check_origin(&headers, &allowed), Err(Rejection::Origin));
        assert_eq!(check_origin(&headers, &[]), Ok(()));
    }

    #[test]
    fn same_compares_whole_values() {
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"abcd"));
    }
}
