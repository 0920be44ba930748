//! Errors: startup failures ([`ServerError`]) and request failures
//! ([`ApiError`]), which each API reports in its own JSON shape.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("starting the engine worker: {0}")]
    Worker(#[source] std::io::Error),
    #[error("trace file {0}: {1}")]
    Trace(String, #[source] std::io::Error),
}

/// Which protocol's error shape a failure is reported in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    /// `{"error":{"message","type",…}}`.
    OpenAi,
    /// `{"type":"error","error":{"type","message",…}}`.
    Anthropic,
}

/// A request that failed before generation: its status and message, plus
/// the context-overflow details clients parse.
#[derive(Clone, Debug, PartialEq)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub code: Option<&'static str>,
    pub param: Option<&'static str>,
    /// `(n_prompt_tokens, n_ctx)` of a context overflow.
    pub overflow: Option<(usize, usize)>,
    pub flavor: Flavor,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            code: None,
            param: None,
            overflow: None,
            flavor: Flavor::OpenAi,
        }
    }

    /// ds4's catch-all for malformed JSON, wrong types and bad values; the
    /// exact string agents' logs show.
    pub fn invalid_json() -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid JSON request")
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// The prompt leaves no room to generate (`prompt ≥ ctx`).
    pub fn context_overflow(prompt: usize, ctx: usize, param: &'static str) -> Self {
        ApiError {
            code: Some("context_length_exceeded"),
            param: Some(param),
            overflow: Some((prompt, ctx)),
            ..Self::bad_request(format!(
                "Prompt has {prompt} tokens, but the configured context size is {ctx} tokens"
            ))
        }
    }

    pub fn with_flavor(mut self, flavor: Flavor) -> Self {
        self.flavor = flavor;
        self
    }

    /// The `error.type` value of the Anthropic shape.
    fn anthropic_type(&self) -> &'static str {
        match self.status.as_u16() {
            401 => "authentication_error",
            404 => "not_found_error",
            413 => "request_too_large",
            400..=499 => "invalid_request_error",
            _ => "api_error",
        }
    }

    /// The JSON body in this error's flavor (serialized from structs so
    /// keys keep the order the APIs document).
    pub fn body(&self) -> String {
        let (n_prompt_tokens, n_ctx) = self.overflow.unzip();
        match self.flavor {
            Flavor::OpenAi => serde_json::to_string(&OpenAiBody {
                error: OpenAiError {
                    message: &self.message,
                    kind: if self.status.is_server_error() {
                        "server_error"
                    } else {
                        "invalid_request_error"
                    },
                    param: self.param,
                    code: self.code,
                    n_prompt_tokens,
                    n_ctx,
                },
            }),
            Flavor::Anthropic => serde_json::to_string(&AnthropicBody {
                kind: "error",
                error: AnthropicError {
                    kind: self.anthropic_type(),
                    message: &self.message,
                    n_prompt_tokens,
                    n_ctx,
                },
            }),
        }
        .unwrap_or_default()
    }
}

#[derive(Serialize)]
struct OpenAiBody<'a> {
    error: OpenAiError<'a>,
}

#[derive(Serialize)]
struct OpenAiError<'a> {
    message: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    param: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    n_prompt_tokens: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    n_ctx: Option<usize>,
}

#[derive(Serialize)]
struct AnthropicBody<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    error: AnthropicError<'a>,
}

#[derive(Serialize)]
struct AnthropicError<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    n_prompt_tokens: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    n_ctx: Option<usize>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let json = [(header::CONTENT_TYPE, "application/json")];
        (self.status, json, self.body()).into_response()
    }
}
