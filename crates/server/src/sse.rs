//! Turning a job's replies into an SSE response: each API supplies a
//! [`Projector`] that maps one reply to the events it causes. The job's
//! cancel guard lives inside the stream, so a client that disconnects (axum
//! drops the body) cancels the generation at the next token.
//!
//! Headers go out as soon as the job is queued, and a comment line is sent
//! whenever the stream has been idle for the keepalive interval: a prefill
//! of a long agent prompt takes minutes on a CPU, longer than clients wait
//! for response headers or between bytes (spec §10.2). Failures after that
//! point are reported in-band (§8.3).

use std::convert::Infallible;
use std::time::Duration;

use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, StreamExt};
use tokio::sync::mpsc::UnboundedReceiver;

use crate::worker::{CancelOnDrop, Reply};

/// One API's event grammar.
pub trait Projector: Send + 'static {
    /// Events for `reply`, and whether the stream is complete after them.
    fn on(&mut self, reply: Reply) -> (Vec<Event>, bool);
    /// Events when the worker vanished without finishing the job.
    fn lost(&mut self) -> Vec<Event>;
}

/// An SSE response of the projected replies, with keepalive comments
/// after `keepalive` of silence.
pub fn respond<P: Projector>(
    rx: UnboundedReceiver<Reply>,
    guard: CancelOnDrop,
    projector: P,
    keepalive: Duration,
) -> Response {
    let rest = stream::unfold(Some((rx, guard, projector)), |st| async move {
        let (mut rx, guard, mut p) = st?;
        match rx.recv().await {
            Some(reply) => {
                let (events, done) = p.on(reply);
                Some((events, (!done).then_some((rx, guard, p))))
            }
            None => Some((p.lost(), None)),
        }
    });
    let events = rest.flat_map(|evs| stream::iter(evs.into_iter().map(Ok::<Event, Infallible>)));
    Sse::new(events)
        .keep_alive(KeepAlive::new().interval(keepalive).text("keepalive"))
        .into_response()
}

/// A `data:`-only event carrying `value` as JSON.
pub fn data<T: serde::Serialize>(value: &T) -> Event {
    Event::default().data(serde_json::to_string(value).unwrap_or_default())
}

/// A named event (`event: name`) carrying `value` as JSON.
pub fn named<T: serde::Serialize>(name: &str, value: &T) -> Event {
    data(value).event(name)
}
