//! Transport rules around the endpoints (spec §1): preflight `OPTIONS` on
//! any path answers 204; `--cors` adds the allow headers to every response;
//! `--api-key` guards everything but `/health`; bodies over the limit and
//! unknown routes get the API's own error shape instead of axum's plain text.

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;

use crate::error::{ApiError, Flavor};
use crate::state::AppState;

/// Wraps `routes` with the transport layers.
pub fn layers(routes: Router<AppState>, state: AppState) -> Router {
    let limit = state.config.max_body;
    routes
        .fallback(unknown)
        .method_not_allowed_fallback(unknown)
        .layer(middleware::from_fn_with_state(state.clone(), guard))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

/// The error flavor of a path: Anthropic's under `/v1/messages`.
pub fn flavor_of(path: &str) -> Flavor {
    if path.starts_with("/v1/messages") {
        Flavor::Anthropic
    } else {
        Flavor::OpenAi
    }
}

async fn unknown(req: Request) -> Response {
    ApiError::new(StatusCode::NOT_FOUND, "unknown endpoint")
        .with_flavor(flavor_of(req.uri().path()))
        .into_response()
}

async fn guard(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let mut resp = if req.method() == Method::OPTIONS {
        let mut r = StatusCode::NO_CONTENT.into_response();
        r.headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
        r
    } else if !authorized(&state, req.uri().path(), req.headers()) {
        ApiError::new(StatusCode::UNAUTHORIZED, "invalid API key")
            .with_flavor(flavor_of(req.uri().path()))
            .into_response()
    } else {
        next.run(req).await
    };
    if state.config.cors {
        let h = resp.headers_mut();
        h.insert("access-control-allow-origin", HeaderValue::from_static("*"));
        h.insert(
            "access-control-allow-methods",
            HeaderValue::from_static("GET, POST, OPTIONS"),
        );
        h.insert(
            "access-control-allow-headers",
            HeaderValue::from_static("*"),
        );
    }
    resp
}

fn authorized(state: &AppState, path: &str, headers: &HeaderMap) -> bool {
    let Some(key) = &state.config.api_key else {
        return true;
    };
    if path == "/health" {
        return true;
    }
    let get = |name| {
        headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
    };
    let bearer = get(header::AUTHORIZATION).and_then(|v| v.strip_prefix("Bearer "));
    bearer == Some(key.as_str()) || get(header::HeaderName::from_static("x-api-key")) == Some(key)
}

/// The request body, or the error a too-large or unreadable one gets.
pub fn body(
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
    flavor: Flavor,
) -> Result<axum::body::Bytes, ApiError> {
    body.map_err(|r| {
        let status = r.status();
        let msg = if status == StatusCode::PAYLOAD_TOO_LARGE {
            "request body too large".to_string()
        } else {
            "bad HTTP request".to_string()
        };
        ApiError::new(status, msg).with_flavor(flavor)
    })
}
