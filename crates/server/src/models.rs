//! `GET /v1/models`, `GET /v1/models/{id}` and `GET /health`. The model
//! answers to its id and to DeepSeek's API aliases (spec §2.2), which only
//! select the default thinking mode.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use crate::error::ApiError;
use crate::state::AppState;

/// The served model's id.
pub const MODEL_ID: &str = "deepseek-v4-flash";

/// Ids `GET /v1/models/{id}` answers to: the model and the aliases that pick
/// thinking off (`deepseek-chat`) or on (`deepseek-reasoner`).
pub const MODEL_IDS: [&str; 3] = [MODEL_ID, "deepseek-chat", "deepseek-reasoner"];

#[derive(Serialize)]
struct Model<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    owned_by: &'static str,
    name: &'static str,
    context_length: usize,
    top_provider: TopProvider,
    supported_parameters: [&'static str; 11],
}

#[derive(Serialize)]
struct TopProvider {
    context_length: usize,
    max_completion_tokens: usize,
    is_moderated: bool,
}

fn model<'a>(state: &AppState, id: &'a str) -> Model<'a> {
    let ctx = state.config.ctx;
    Model {
        id,
        object: "model",
        created: 1_767_225_600,
        owned_by: "ds4.c",
        name: "DeepSeek V4 Flash",
        context_length: ctx,
        top_provider: TopProvider {
            context_length: ctx,
            max_completion_tokens: state.config.max_tokens.min(ctx),
            is_moderated: false,
        },
        supported_parameters: [
            "tools",
            "tool_choice",
            "max_tokens",
            "temperature",
            "top_p",
            "top_k",
            "min_p",
            "stop",
            "seed",
            "stream",
            "reasoning_effort",
        ],
    }
}

#[derive(Serialize)]
struct List<'a> {
    object: &'static str,
    data: [Model<'a>; 1],
}

pub async fn list(State(state): State<AppState>) -> Response {
    Json(List {
        object: "list",
        data: [model(&state, MODEL_ID)],
    })
    .into_response()
}

pub async fn one(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    if MODEL_IDS.contains(&id.as_str()) {
        Json(model(&state, &id)).into_response()
    } else {
        ApiError {
            code: Some("model_not_found"),
            ..ApiError::new(StatusCode::NOT_FOUND, format!("unknown model {id}"))
        }
        .into_response()
    }
}

#[derive(Serialize)]
struct Health {
    status: &'static str,
    /// Jobs waiting for or running on the engine.
    queued: usize,
    /// Requests still being answered.
    in_flight: usize,
}

pub async fn health(State(state): State<AppState>) -> Response {
    Json(Health {
        status: "ok",
        queued: state.worker.queued(),
        in_flight: state.worker.in_flight(),
    })
    .into_response()
}
