//! The embedded cortex through the `Driver` trait, against the real SmolLM2-135M-Instruct Q4_1
//! GGUF, plus the tool-reply parser and the request rendering, which need no model.
//!
//! The model comes from `cargo xtask fetch-models` (or `GYRUS_SMOLLM2_GGUF`); without it the
//! model tests fail and say so. It is loaded once; generations stay at 24 tokens or fewer
//! because this is a CPU.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use futures_util::StreamExt;
use gyrus_cortex::driver::local::{LocalStats, ToolReply, parse_tool_reply, render_turns};
use gyrus_cortex::driver::{Driver, DriverError, LocalDriver, collect_stream};
use gyrus_cortex::local::LocalModel;
use gyrus_cortex::types::{
    ChatRequest, Message, Part, Role, StopReason, StreamCollector, StreamEvent, ToolCall,
    ToolChoice, ToolDef, ToolResult,
};
use pretty_assertions::assert_eq;
use serde_json::json;

const SMOLLM2_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

fn model_path() -> PathBuf {
    match std::env::var_os("GYRUS_SMOLLM2_GGUF") {
        Some(path) => PathBuf::from(path),
        None => Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
            .join(".cache/models")
            .join(SMOLLM2_FILE),
    }
}

fn model() -> Arc<LocalModel> {
    static MODEL: OnceLock<Arc<LocalModel>> = OnceLock::new();
    Arc::clone(MODEL.get_or_init(|| {
        let path = model_path();
        assert!(
            path.is_file(),
            "the test model {} is missing: run `cargo xtask fetch-models` (or point GYRUS_SMOLLM2_GGUF at a copy)",
            path.display()
        );
        let model =
            LocalModel::load(&path).unwrap_or_else(|e| panic!("loading {}: {e}", path.display()));
        Arc::new(model)
    }))
}

/// A driver of its own (its own counters) over the shared model.
fn local() -> LocalDriver {
    LocalDriver::new("local", model())
}

fn driver() -> Arc<dyn Driver> {
    Arc::new(local())
}

fn request(question: &str, max_tokens: u32) -> ChatRequest {
    ChatRequest {
        max_tokens: Some(max_tokens),
        ..ChatRequest::new(
            "smollm2",
            vec![
                Message::system("You are a helpful assistant."),
                Message::user(question),
            ],
        )
    }
}

fn weather_tool() -> ToolDef {
    ToolDef {
        name: "get_weather".into(),
        description: "The current weather in a city.".into(),
        parameters: json!({
            "type": "object",
            "properties": { "city": { "type": "string" } },
            "required": ["city"]
        }),
    }
}

/// Waits (without a deadline of its own; the test harness has one) until `driver` has
/// finished `n` generations.
async fn finished(driver: &LocalDriver, n: u64) -> LocalStats {
    loop {
        let stats = driver.stats();
        if stats.finished >= n {
            return stats;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn greedy_chat_repeats_with_usage() {
    let driver = driver();
    assert_eq!(driver.name(), "local");
    let request = request("What is the capital of France?", 16);
    let first = driver.chat(&request).await.unwrap();
    let again = driver.chat(&request).await.unwrap();
    assert_eq!(first, again);
    assert_eq!(first.message.role, Role::Assistant);
    assert!(
        first.message.text_content().contains("Paris"),
        "{:?}",
        first.message
    );
    assert!(first.usage.input_tokens > 0 && first.usage.output_tokens > 0);
    assert!(
        matches!(first.stop, StopReason::EndTurn | StopReason::MaxTokens),
        "{:?}",
        first.stop
    );
    let stem = model_path()
        .file_stem()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    assert_eq!(first.model, stem, "the file's name");
}

#[tokio::test]
async fn the_collected_stream_is_the_chat_answer() {
    let driver = driver();
    let request = request("Name three colours.", 16);
    let chat = driver.chat(&request).await.unwrap();
    let stream = driver.chat_stream(&request).await.unwrap();
    let events: Vec<StreamEvent> = stream.map(Result::unwrap).collect().await;
    assert!(
        events.len() > 2,
        "text comes in pieces, then Done: {events:?}"
    );
    assert!(matches!(events.last(), Some(StreamEvent::Done { .. })));
    let mut collector = StreamCollector::new();
    for event in events {
        collector.push(event);
    }
    assert_eq!(collector.finish(chat.model.clone()), chat);
}

#[tokio::test]
async fn max_tokens_cuts_the_answer_off() {
    let driver = driver();
    let response = driver
        .chat(&request("Tell me a long story about a dragon.", 3))
        .await
        .unwrap();
    assert_eq!(response.stop, StopReason::MaxTokens);
    assert_eq!(response.usage.output_tokens, 3);
}

#[tokio::test]
async fn a_stop_sequence_is_reported() {
    let driver = driver();
    let mut request = request("What is the capital of France?", 16);
    request.stop = vec!["Paris".into()];
    let response = driver.chat(&request).await.unwrap();
    assert_eq!(response.stop, StopReason::StopSequence);
    assert!(!response.message.text_content().contains("Paris"));
}

#[tokio::test]
async fn dropping_the_stream_stops_generation() {
    let local = local();
    let driver: Arc<dyn Driver> = Arc::new(local.clone());
    // Cancelled (not ended by the model) means the reader's going away stopped it.
    let max_tokens = 24;
    let request = request(
        "Write a long story about a dragon who learns to fly.",
        max_tokens,
    );
    let mut stream = driver.chat_stream(&request).await.unwrap();
    let first = stream.next().await.unwrap().unwrap();
    assert!(matches!(first, StreamEvent::TextDelta(_)), "{first:?}");
    drop(stream);

    let stats = finished(&local, 1).await;
    assert_eq!(stats.cancelled, 1, "{stats:?}");
    assert_eq!(stats.failed, 0, "{stats:?}");
    assert!(
        stats.completion_tokens < u64::from(max_tokens),
        "generation stopped early: {stats:?}"
    );
}

#[tokio::test]
async fn a_prompt_over_the_context_is_a_bad_request() {
    let driver = driver();
    let request = request(&"word ".repeat(5000), 4);
    match driver.chat(&request).await {
        Err(DriverError::BadRequest(reason)) => assert!(reason.contains("context"), "{reason}"),
        other => panic!("expected BadRequest, got {other:?}"),
    }
    // A streamed call fails before the stream starts.
    match driver.chat_stream(&request).await {
        Err(DriverError::BadRequest(reason)) => assert!(reason.contains("context"), "{reason}"),
        Err(other) => panic!("expected BadRequest, got {other:?}"),
        Ok(_) => panic!("expected BadRequest, got a stream"),
    }
}

#[tokio::test]
async fn bad_sampling_and_empty_requests_are_bad_requests() {
    let driver = driver();
    let mut bad = request("Hi", 4);
    bad.temperature = Some(-1.0);
    assert!(
        matches!(driver.chat(&bad).await, Err(DriverError::BadRequest(r)) if r.contains("temperature"))
    );
    let empty = ChatRequest::new("smollm2", Vec::new());
    assert!(matches!(
        driver.chat(&empty).await,
        Err(DriverError::BadRequest(_))
    ));
    assert!(matches!(
        driver.chat_stream(&empty).await,
        Err(DriverError::BadRequest(_))
    ));
}

#[tokio::test]
async fn embeddings_are_unsupported() {
    let driver = driver();
    match driver.embed("smollm2", &["hello".to_string()]).await {
        Err(DriverError::Unsupported(reason)) => {
            assert!(reason.contains("not an embedding model"), "{reason}");
        }
        other => panic!("expected Unsupported, got {other:?}"),
    }
}

#[tokio::test]
async fn with_tools_the_stream_still_agrees_with_chat() {
    // Whether the small model calls the tool or not, both paths make the same answer.
    let driver = driver();
    let mut request = request("What is the weather in Paris?", 12);
    request.tools = vec![weather_tool()];
    let chat = driver.chat(&request).await.unwrap();
    let stream = driver.chat_stream(&request).await.unwrap();
    let collected = collect_stream(stream, chat.model.clone()).await.unwrap();
    assert_eq!(collected, chat);
    let calls: Vec<&ToolCall> = chat.message.tool_calls().collect();
    if calls.is_empty() {
        assert_ne!(chat.stop, StopReason::ToolUse);
    } else {
        assert_eq!(chat.stop, StopReason::ToolUse);
        assert_eq!(calls[0].name, "get_weather");
        assert_eq!(calls[0].id, "local-call-0");
    }
}

// The tool-reply parser.

fn reply(name: &str, arguments: serde_json::Value) -> Option<ToolReply> {
    Some(ToolReply {
        name: name.into(),
        arguments,
    })
}

#[test]
fn a_bare_json_object_is_a_tool_call() {
    let tools = [weather_tool()];
    assert_eq!(
        parse_tool_reply(
            r#"  {"tool": "get_weather", "arguments": {"city": "Paris"}}
"#,
            &tools
        ),
        reply("get_weather", json!({"city": "Paris"}))
    );
    assert_eq!(
        parse_tool_reply(r#"{"tool": "get_weather"}"#, &tools),
        reply("get_weather", json!({})),
        "no arguments are empty arguments"
    );
}

#[test]
fn a_fenced_json_object_is_a_tool_call() {
    let tools = [weather_tool()];
    let expected = reply("get_weather", json!({"city": "Oslo"}));
    assert_eq!(
        parse_tool_reply(
            "```json\n{\"tool\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}\n```",
            &tools
        ),
        expected
    );
    assert_eq!(
        parse_tool_reply(
            "```\n{\"tool\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}\n```\n",
            &tools
        ),
        expected
    );
    assert_eq!(
        parse_tool_reply(
            "```python\n{\"tool\": \"get_weather\", \"arguments\": {}}\n```",
            &tools
        ),
        None,
        "another language's fence"
    );
}

#[test]
fn an_unknown_tool_is_text() {
    assert_eq!(
        parse_tool_reply(
            r#"{"tool": "launch_rockets", "arguments": {}}"#,
            &[weather_tool()]
        ),
        None
    );
    assert_eq!(
        parse_tool_reply(r#"{"tool": "get_weather", "arguments": {}}"#, &[]),
        None,
        "no tools offered"
    );
}

#[test]
fn anything_else_is_text() {
    let tools = [weather_tool()];
    for text in [
        "",
        "The weather in Paris is sunny.",
        "{not json}",
        r#"{"tool": "get_weather", "arguments": {"city": "Paris"}"#,
        r#"Sure! {"tool": "get_weather", "arguments": {}}"#,
        r#"{"tool": "get_weather", "arguments": {}} and then some"#,
        r#"{"tool": "get_weather", "arguments": {}}{"tool": "get_weather"}"#,
        r#"{"tool": "get_weather", "arguments": "Paris"}"#,
        r#"{"tool": "get_weather", "arguments": {}, "why": "asked"}"#,
        r#"{"name": "get_weather", "arguments": {}}"#,
        r#"{"tool": 7, "arguments": {}}"#,
        r#"["get_weather", {}]"#,
        "```json\n{\"tool\": \"get_weather\"}",
        "```json {\"tool\": \"get_weather\"}```",
    ] {
        assert_eq!(parse_tool_reply(text, &tools), None, "{text:?}");
    }
}

// How a request becomes turns.

#[test]
fn tool_calls_and_results_become_text_turns() {
    let mut request = ChatRequest::new(
        "smollm2",
        vec![
            Message::system("Be brief."),
            Message::user("Weather in Paris?"),
            Message {
                role: Role::Assistant,
                content: vec![
                    Part::Text("Let me check.".into()),
                    Part::ToolCall(ToolCall {
                        id: "c1".into(),
                        name: "get_weather".into(),
                        arguments: json!({"city": "Paris"}),
                    }),
                ],
            },
            Message::tool_result(ToolResult {
                call_id: "c1".into(),
                content: "sunny, 21 C".into(),
                is_error: false,
            }),
            Message::tool_result(ToolResult {
                call_id: "c9".into(),
                content: "no such call".into(),
                is_error: true,
            }),
            Message::user("And tomorrow?"),
            Message::system("Answer in English."),
        ],
    );
    request.tool_choice = ToolChoice::None;
    request.tools = vec![weather_tool()];
    assert_eq!(
        render_turns(&request),
        vec![
            ("system", "Be brief.\n\nAnswer in English.".to_string()),
            ("user", "Weather in Paris?".to_string()),
            (
                "assistant",
                "Let me check.\n{\"tool\": \"get_weather\", \"arguments\": {\"city\":\"Paris\"}}"
                    .to_string()
            ),
            (
                "user",
                "Tool result for c1 (get_weather): sunny, 21 C\n\n\
                 Tool error for c9: no such call\n\n\
                 And tomorrow?"
                    .to_string()
            ),
        ]
    );
}

#[test]
fn offered_tools_are_described_in_the_system_turn() {
    let mut request = ChatRequest::new("smollm2", vec![Message::user("Weather in Paris?")]);
    request.tools = vec![weather_tool()];
    let turns = render_turns(&request);
    assert_eq!(turns.len(), 2);
    let (role, system) = &turns[0];
    assert_eq!(*role, "system");
    assert!(system.contains("- get_weather: The current weather in a city."));
    assert!(system.contains(r#"{"tool": "<name>", "arguments": {...}}"#));
    assert!(system.contains("Otherwise, answer in plain text."));

    request.tool_choice = ToolChoice::Named("get_weather".into());
    let turns = render_turns(&request);
    assert!(turns[0].1.contains("You must call a tool now."));

    request.tool_choice = ToolChoice::Named("other".into());
    assert_eq!(
        render_turns(&request),
        vec![("user", "Weather in Paris?".to_string())],
        "naming a tool that is not offered offers none"
    );
}
