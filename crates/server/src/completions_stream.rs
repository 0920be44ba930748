//! The Completions SSE grammar (spec §5.2): text chunks, a final chunk with
//! empty text and the finish reason, the optional usage chunk, `[DONE]`.

use axum::response::sse::Event;
use text::dsml;

use crate::chat::UsageJson;
use crate::completions::{Choice, Completion};
use crate::ids;
use crate::sse::{data, Projector};
use crate::turn::{openai_finish, Usage};
use crate::worker::Reply;

pub struct CompletionStream {
    id: String,
    model: String,
    created: u64,
    include_usage: bool,
    usage: Usage,
}

impl CompletionStream {
    pub fn new(id: String, model: String, include_usage: bool) -> Self {
        CompletionStream {
            id,
            model,
            created: ids::now(),
            include_usage,
            usage: Usage::default(),
        }
    }

    fn chunk(&self, choices: Vec<Choice>, usage: Option<UsageJson>) -> Event {
        data(&Completion {
            id: self.id.clone(),
            object: "text_completion",
            created: self.created,
            model: self.model.clone(),
            choices,
            usage,
        })
    }

    fn text(&self, text: String, finish_reason: Option<&'static str>) -> Event {
        let choice = Choice {
            text,
            index: 0,
            finish_reason,
        };
        self.chunk(vec![choice], None)
    }
}

impl Projector for CompletionStream {
    fn on(&mut self, reply: Reply) -> (Vec<Event>, bool) {
        match reply {
            Reply::Prefilled { prompt, cached } => {
                self.usage = Usage {
                    prompt,
                    cached,
                    completion: 0,
                };
                (Vec::new(), false)
            }
            Reply::Text(dsml::Event::Content(t)) if !t.is_empty() => {
                (vec![self.text(t, None)], false)
            }
            Reply::Text(_) => (Vec::new(), false),
            Reply::Done {
                finish,
                completion_tokens,
                ..
            } => {
                self.usage.completion = completion_tokens;
                let mut out = vec![self.text(String::new(), Some(openai_finish(finish, false)))];
                if self.include_usage {
                    out.push(self.chunk(Vec::new(), Some(UsageJson::from(self.usage))));
                }
                out.push(Event::default().data("[DONE]"));
                (out, true)
            }
            Reply::Failed(msg) => (vec![crate::chat_stream::error_event(&msg)], true),
            Reply::ShuttingDown => (
                vec![crate::chat_stream::error_event("server shutting down")],
                true,
            ),
        }
    }

    fn lost(&mut self) -> Vec<Event> {
        vec![crate::chat_stream::error_event("generation stopped")]
    }
}
