//! Request parsing of the server's POST endpoints: any body gives a parsed
//! request or a 4xx error in the API's terms, never a panic, and a parsed
//! request renders (or is refused by the renderer) without panicking. The
//! first byte picks the endpoint.

#![no_main]

use libfuzzer_sys::fuzz_target;
use server::request::Parsed;
use server::ApiError;
use text::render::{render, RenderOptions};

fuzz_target!(|data: &[u8]| {
    let Some((&which, body)) = data.split_first() else {
        return;
    };
    let parsed: Result<Parsed, ApiError> = match which % 4 {
        0 => server::chat::parse(body),
        1 => server::completions::parse(body),
        2 => server::messages::parse(body),
        _ => server::responses::parse(body).map(|r| r.request),
    };
    match parsed {
        Ok(req) => {
            let options = RenderOptions {
                thinking: req.thinking,
                context_size: Some(4096),
            };
            let _ = render(&req.messages, &req.tools, &options);
        }
        Err(e) => assert!(e.status.is_client_error(), "{e:?}"),
    }
});
