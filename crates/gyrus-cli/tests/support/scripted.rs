//! A scripted OpenAI-compatible server on loopback, standing in for a paid API: it answers
//! `POST /v1/chat/completions` deterministically, complete or as server-sent events, and
//! records every request body it got. Plus a keep-alive HTTP/1.1 client for the gateway's
//! tests and its overhead benchmark. Included with `#[path]` by `tests/gateway.rs` and
//! `benches/gateway.rs`.
//!
//! The script: a request that offers tools and does not end with a tool result is answered
//! with one call of the first tool, arguments [`TOOL_ARGUMENTS`]; one that ends with a tool
//! result is answered `The tool said: <its content>`; anything else with [`REPLY`]. Usage is
//! always [`PROMPT_TOKENS`] in and [`COMPLETION_TOKENS`] out.

#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

/// The answer to a plain question.
pub const REPLY: &str = "Hello from the scripted model, one piece at a time.";
/// The arguments of the scripted tool call.
pub const TOOL_ARGUMENTS: &str = "{\"city\":\"Paris\"}";
/// The id of the scripted tool call.
pub const CALL_ID: &str = "call_scripted_1";
pub const PROMPT_TOKENS: u64 = 12;
pub const COMPLETION_TOKENS: u64 = 7;
/// The model name the server gives in its answers.
pub const MODEL: &str = "scripted-1";

/// The running server (its threads end with the test process).
pub struct Scripted {
    pub addr: SocketAddr,
    received: Arc<Mutex<Vec<Value>>>,
    record: bool,
}

impl Scripted {
    /// Starts the server on a free loopback port, recording what it receives.
    pub fn start() -> Scripted {
        Self::start_with(true)
    }

    /// Starts the server; `record: false` keeps nothing (for the benchmark).
    pub fn start_with(record: bool) -> Scripted {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let sink = received.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let sink = sink.clone();
                std::thread::spawn(move || serve(stream, &sink, record));
            }
        });
        Scripted {
            addr,
            received,
            record,
        }
    }

    /// The base URL an `openai` cortex names.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Every request body received so far, in order.
    pub fn received(&self) -> Vec<Value> {
        self.received.lock().unwrap().clone()
    }
}

/// One request read off a connection.
struct Request {
    method: String,
    path: String,
    body: Vec<u8>,
}

fn read_request(reader: &mut BufReader<TcpStream>) -> Option<Request> {
    let mut line = String::new();
    if reader.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_owned();
    let path = parts.next()?.to_owned();
    let mut length = 0usize;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).ok()? == 0 {
            return None;
        }
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':')
            && name.trim().eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().ok()?;
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some(Request { method, path, body })
}

fn serve(stream: TcpStream, sink: &Mutex<Vec<Value>>, record: bool) {
    let _ = stream.set_nodelay(true);
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    while let Some(request) = read_request(&mut reader) {
        let (status, content_type, body) =
            if request.method == "POST" && request.path == "/v1/chat/completions" {
                match serde_json::from_slice::<Value>(&request.body) {
                Ok(body) => {
                    let answer = answer(&body);
                    if record {
                        sink.lock().unwrap().push(body);
                    }
                    answer
                }
                Err(e) => (
                    400,
                    "application/json",
                    json!({"error": {"message": e.to_string(), "type": "invalid_request_error"}})
                        .to_string(),
                ),
            }
            } else {
                (
                    404,
                    "application/json",
                    json!({"error": {"message": "not scripted", "type": "invalid_request_error"}})
                        .to_string(),
                )
            };
        let head = format!(
            "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
            if status == 200 { "OK" } else { "Error" },
            body.len()
        );
        if writer.write_all(head.as_bytes()).is_err() || writer.write_all(body.as_bytes()).is_err()
        {
            return;
        }
    }
}

/// What the script says to `body`: (status, content type, body).
fn answer(body: &Value) -> (u16, &'static str, String) {
    let messages = body["messages"].as_array().cloned().unwrap_or_default();
    let last = messages.last().cloned().unwrap_or(Value::Null);
    let tools = body["tools"].as_array().cloned().unwrap_or_default();
    let usage = json!({
        "prompt_tokens": PROMPT_TOKENS,
        "completion_tokens": COMPLETION_TOKENS,
        "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS,
    });
    let call = (!tools.is_empty() && last["role"] != "tool").then(|| {
        tools[0]["function"]["name"]
            .as_str()
            .unwrap_or("tool")
            .to_owned()
    });
    let text = if last["role"] == "tool" {
        format!("The tool said: {}", last["content"].as_str().unwrap_or(""))
    } else {
        REPLY.to_owned()
    };
    if body["stream"] == true {
        let include_usage = body["stream_options"]["include_usage"] == true;
        return (
            200,
            "text/event-stream",
            stream(&text, call, usage, include_usage),
        );
    }
    let message = match &call {
        Some(name) => json!({
            "role": "assistant",
            "content": null,
            "tool_calls": [{"id": CALL_ID, "type": "function", "function": {"name": name, "arguments": TOOL_ARGUMENTS}}],
        }),
        None => json!({"role": "assistant", "content": text}),
    };
    let finish = if call.is_some() { "tool_calls" } else { "stop" };
    let answer = json!({
        "id": "chatcmpl-scripted",
        "object": "chat.completion",
        "created": 1,
        "model": MODEL,
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": usage,
    });
    (200, "application/json", answer.to_string())
}

fn chunk(delta: Value, finish: Option<&str>) -> String {
    let chunk = json!({
        "id": "chatcmpl-scripted",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": MODEL,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    });
    format!("data: {chunk}\n\n")
}

fn stream(text: &str, call: Option<String>, usage: Value, include_usage: bool) -> String {
    let mut out = chunk(json!({"role": "assistant", "content": ""}), None);
    let finish = match call {
        Some(name) => {
            out.push_str(&chunk(
                json!({"tool_calls": [{"index": 0, "id": CALL_ID, "type": "function", "function": {"name": name, "arguments": ""}}]}),
                None,
            ));
            let (a, b) = TOOL_ARGUMENTS.split_at(TOOL_ARGUMENTS.len() / 2);
            for piece in [a, b] {
                out.push_str(&chunk(
                    json!({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}),
                    None,
                ));
            }
            "tool_calls"
        }
        None => {
            let chars: Vec<char> = text.chars().collect();
            for piece in chars.chunks(5) {
                let piece: String = piece.iter().collect();
                out.push_str(&chunk(json!({"content": piece}), None));
            }
            "stop"
        }
    };
    out.push_str(&chunk(json!({}), Some(finish)));
    if include_usage {
        let usage_chunk = json!({
            "id": "chatcmpl-scripted",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": MODEL,
            "choices": [],
            "usage": usage,
        });
        out.push_str(&format!("data: {usage_chunk}\n\n"));
    }
    out.push_str("data: [DONE]\n\n");
    out
}

/// One HTTP/1.1 connection kept alive across requests.
pub struct KeepAlive {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    host: String,
}

/// A response read by [`KeepAlive`].
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
}

impl KeepAlive {
    pub fn connect(addr: SocketAddr) -> KeepAlive {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_nodelay(true).unwrap();
        KeepAlive {
            writer: stream.try_clone().unwrap(),
            reader: BufReader::new(stream),
            host: addr.to_string(),
        }
    }

    /// `POST path` with a JSON body and, if given, a bearer token.
    pub fn post(&mut self, path: &str, token: Option<&str>, body: &[u8]) -> Reply {
        let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            self.host,
            body.len()
        );
        let mut request = head.into_bytes();
        request.extend_from_slice(body);
        self.writer.write_all(&request).unwrap();
        self.read_reply()
    }

    fn read_reply(&mut self) -> Reply {
        let mut line = String::new();
        self.reader.read_line(&mut line).unwrap();
        let status = line
            .split_whitespace()
            .nth(1)
            .unwrap_or_else(|| panic!("no status line: {line:?}"))
            .parse()
            .unwrap();
        let mut headers = Vec::new();
        loop {
            let mut header = String::new();
            self.reader.read_line(&mut header).unwrap();
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((k, v)) = header.split_once(':') {
                headers.push((k.trim().to_owned(), v.trim().to_owned()));
            }
        }
        let find = |name: &str| {
            headers
                .iter()
                .find(|(k, _): &&(String, String)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
        };
        let body = if let Some(length) = find("content-length") {
            let mut body = vec![0; length.parse().unwrap()];
            self.reader.read_exact(&mut body).unwrap();
            body
        } else if find("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
            let mut body = Vec::new();
            loop {
                let mut size = String::new();
                self.reader.read_line(&mut size).unwrap();
                let size = usize::from_str_radix(size.trim(), 16).unwrap();
                let mut piece = vec![0; size + 2];
                self.reader.read_exact(&mut piece).unwrap();
                if size == 0 {
                    break;
                }
                body.extend_from_slice(&piece[..size]);
            }
            body
        } else {
            panic!("a keep-alive reply needs a length: {headers:?}");
        };
        Reply {
            status,
            headers,
            body,
        }
    }
}
