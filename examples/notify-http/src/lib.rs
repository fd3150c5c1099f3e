//! notify-http: a `wasi:http` handler that sends a notification by mail through
//! `sendbox:mail/mail-sender`. It is an example of sendbox plugged into another component:
//! composed with a granted sender (`sendbox grant --into`), it can reach one SMTP server
//! and nothing else, and it is served by any `wasi:http` host (`wasmtime serve`).
//!
//! `POST` a JSON object `{"to": "a@example.org" | [...], "subject": "...", "text": "..."}`:
//! - 200 and `{"accepted": [...], "refused": [...], "reply": {...}}` once the server took it;
//! - 4xx and `{"error": "..."}` for a request it cannot send (405, 413, 415, 400), or one
//!   the sender or the server refused as bad input (422);
//! - 502, 503 (with `Retry-After`) or 504 when the mail server or the way to it failed,
//!   with the phase, the kind, whether it may succeed later and the server's reply.
//!
//! It is configured by its environment (`wasmtime serve --env NAME=VALUE`), read per
//! request: see `Config::from_env`.

mod config;

use serde::Deserialize;
use serde_json::{Value, json};
use wasip2::http::types::{
    Fields, IncomingRequest, Method, OutgoingBody, OutgoingResponse, ResponseOutparam,
};
use wasip2::io::streams::StreamError;

wit_bindgen::generate!({
    path: "wit",
    world: "sendbox:notify-http/app",
    generate_all,
});

use sendbox::mail::mail_sender as mail;

use config::Config;

/// The largest request body read; a notification is small.
const MAX_BODY: usize = 64 * 1024;

struct App;

wasip2::http::proxy::export!(App);

impl wasip2::exports::http::incoming_handler::Guest for App {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let answer = notify(&request).unwrap_or_else(|failure| failure);
        respond(out, answer);
    }
}

/// An HTTP status, an optional `Retry-After` in seconds, and a JSON body.
struct Answer {
    status: u16,
    retry_after: Option<u32>,
    body: Value,
}

/// A request the handler will not send, and why.
fn refused(status: u16, error: impl Into<String>) -> Answer {
    Answer {
        status,
        retry_after: None,
        body: json!({ "error": error.into() }),
    }
}

/// What a client posts.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Notification {
    to: Recipients,
    subject: String,
    text: String,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Recipients {
    One(String),
    Many(Vec<String>),
}

fn notify(request: &IncomingRequest) -> Result<Answer, Answer> {
    if !matches!(request.method(), Method::Post) {
        return Err(refused(405, "POST a JSON object {to, subject, text}"));
    }
    let json = request
        .headers()
        .get("content-type")
        .iter()
        .any(|value| value.starts_with(b"application/json"));
    if !json {
        return Err(refused(415, "the body must be application/json"));
    }
    let body = read_body(request)?;
    let notification: Notification = serde_json::from_slice(&body)
        .map_err(|e| refused(400, format!("not a notification: {e}")))?;
    let to = match notification.to {
        Recipients::One(address) => vec![address],
        Recipients::Many(addresses) => addresses,
    };
    if to.is_empty() {
        return Err(refused(400, "`to` names no recipient"));
    }
    let config = Config::from_env().map_err(|e| refused(500, e))?;
    let mailboxes = |addresses: &[String]| {
        addresses
            .iter()
            .map(|address| mail::Mailbox {
                name: None,
                address: address.clone(),
            })
            .collect()
    };
    let message = mail::ComposedMessage {
        from: mail::Mailbox {
            name: config.from_name,
            address: config.from.clone(),
        },
        to: mailboxes(&to),
        cc: vec![],
        bcc: vec![],
        reply_to: vec![],
        subject: notification.subject,
        text: Some(notification.text),
        html: None,
        attachments: vec![],
        headers: vec![],
    };
    let envelope = mail::Envelope {
        sender: Some(config.from),
        recipients: to,
        recipients_from_headers: false,
        qualify_domain: None,
    };
    let options = mail::SendOptions {
        dsn: None,
        require_tls: false,
        keep_raw_header: false,
        dkim: None,
    };
    let delivery = mail::send(
        &config.server,
        config.credentials.as_ref(),
        &envelope,
        &mail::Message::Composed(message),
        &options,
    )
    .map_err(|error| send_failed(&error))?;
    Ok(Answer {
        status: 200,
        retry_after: None,
        body: json!({
            "accepted": delivery.accepted,
            "refused": delivery.refused.iter().map(|r| json!({
                "address": r.address,
                "reply": reply(&r.reply),
            })).collect::<Vec<_>>(),
            "reply": reply(&delivery.final_reply),
        }),
    })
}

/// The request's body, at most `MAX_BODY` bytes.
fn read_body(request: &IncomingRequest) -> Result<Vec<u8>, Answer> {
    let unreadable = || refused(400, "the request body cannot be read");
    let body = request.consume().map_err(|()| unreadable())?;
    let stream = body.stream().map_err(|()| unreadable())?;
    let mut bytes = Vec::new();
    loop {
        match stream.blocking_read(16 * 1024) {
            Ok(chunk) => bytes.extend_from_slice(&chunk),
            Err(StreamError::Closed) => break,
            Err(StreamError::LastOperationFailed(_)) => return Err(unreadable()),
        }
        if bytes.len() > MAX_BODY {
            return Err(refused(413, format!("the body is over {MAX_BODY} bytes")));
        }
    }
    Ok(bytes)
}

/// A failed send as an HTTP answer: the client's fault (422) when the sender or the
/// server refused what it was given; otherwise the mail server's, or the way to it (502),
/// worth retrying later (503, or 504 after a time-out) when the sender says so.
fn send_failed(error: &mail::SendError) -> Answer {
    use mail::{ErrorKind, Phase};
    let refused_input = match error.kind {
        ErrorKind::InvalidInput => true,
        ErrorKind::Rejected => !error.transient && error.phase == Phase::Rcpt,
        _ => false,
    };
    let status = if refused_input {
        422
    } else if error.kind == ErrorKind::Timeout {
        504
    } else if error.transient {
        503
    } else {
        502
    };
    Answer {
        status,
        retry_after: error.transient.then_some(60),
        body: json!({
            "error": error.message,
            "phase": wit_name(&error.phase),
            "kind": wit_name(&error.kind),
            "transient": error.transient,
            "reply": error.reply.as_ref().map(reply),
        }),
    }
}

fn reply(reply: &mail::Reply) -> Value {
    json!({
        "code": reply.code,
        "enhanced-status": reply.enhanced_status.map(|s| format!("{}.{}.{}", s.class, s.subject, s.detail)),
        "text": reply.text,
    })
}

/// A WIT enum case as the WIT spells it: `ErrorKind::InvalidInput` → `invalid-input`.
fn wit_name(case: &impl std::fmt::Debug) -> String {
    let debug = format!("{case:?}");
    let case = debug.rsplit("::").next().unwrap_or_default();
    let mut name = String::new();
    for (i, c) in case.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            name.push('-');
        }
        name.push(c.to_ascii_lowercase());
    }
    name
}

/// Sends the answer. A client that went away gets nothing, and nothing panics.
fn respond(out: ResponseOutparam, answer: Answer) {
    let mut headers = vec![("content-type".to_owned(), b"application/json".to_vec())];
    if let Some(seconds) = answer.retry_after {
        headers.push(("retry-after".to_owned(), seconds.to_string().into_bytes()));
    }
    let Ok(headers) = Fields::from_list(&headers) else {
        return;
    };
    let response = OutgoingResponse::new(headers);
    let _ = response.set_status_code(answer.status);
    let Ok(body) = response.body() else { return };
    ResponseOutparam::set(out, Ok(response));
    if let Ok(mut stream) = body.write() {
        use std::io::Write as _;
        let mut text = answer.body.to_string();
        text.push('\n');
        let _ = stream.write_all(text.as_bytes());
        let _ = stream.flush();
    }
    let _ = OutgoingBody::finish(body, None);
}
