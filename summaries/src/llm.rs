//! A summarizer that asks a self-hosted LLM through the OpenAI-compatible chat-completions API
//! (`POST {url}/chat/completions`), as served by llama.cpp's server, vLLM and Ollama.
//!
//! The prompt template names the meeting's facts and transcript with placeholders
//! (`{title}`, `{date}`, `{language}`, `{participants}`, `{transcript}`); the model is asked for a
//! JSON object `{"key_points": [..], "decisions": [..], "action_items": [..]}` (strings, or objects
//! with `text` and `speaker`). A code fence around the JSON is tolerated. Every failure (endpoint
//! unreachable, timeout, HTTP error, an answer that is not that JSON) is an [`Error::Summary`] that
//! says which; the caller decides what to fall back to.

use crate::{Error, MeetingText, Point, Result, Summarizer, Summary, SummaryFuture, clip, is_swedish};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::time::Duration;

/// The default prompt template.
pub const DEFAULT_PROMPT: &str = "You write the minutes of a meeting. Meeting: {title}, {date}. Participants: {participants}.\n\
Write in {language}. Answer with only a JSON object with three arrays of short strings: \
\"key_points\" (at most 6, each naming who said it), \"decisions\" (what was decided) and \
\"action_items\" (who does what, by when). Use only what the transcript says.\n\nTranscript:\n{transcript}";

/// Settings of the LLM summarizer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LlmConfig {
    /// Base URL of the OpenAI-compatible API (`http://127.0.0.1:8081/v1`), or the full
    /// `…/chat/completions` URL.
    pub url: String,
    /// Model name sent in the request.
    pub model: String,
    /// Bearer token, if the endpoint wants one.
    pub api_key: Option<String>,
    /// Prompt template; see [`DEFAULT_PROMPT`] for the placeholders.
    pub prompt_template: String,
    /// Seconds to wait for the whole answer.
    pub timeout_secs: u64,
    /// At most this many characters of transcript go into the prompt (the rest is cut, and the prompt says so).
    pub max_transcript_chars: usize,
    /// Sampling temperature.
    pub temperature: f32,
}

impl Default for LlmConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            model: String::new(),
            api_key: None,
            prompt_template: DEFAULT_PROMPT.into(),
            timeout_secs: 120,
            max_transcript_chars: 24_000,
            temperature: 0.2,
        }
    }
}

/// The chat-completions summarizer.
#[derive(Debug, Clone)]
pub struct Llm {
    config: LlmConfig,
    endpoint: String,
    http: reqwest::Client,
}

impl Llm {
    pub fn new(config: LlmConfig) -> Result<Self> {
        if config.url.trim().is_empty() || config.model.trim().is_empty() {
            return Err(Error::Config("the LLM summarizer needs both url and model".into()));
        }
        let base = config.url.trim().trim_end_matches('/');
        let endpoint = if base.ends_with("/chat/completions") {
            base.to_owned()
        } else {
            format!("{base}/chat/completions")
        };
        reqwest::Url::parse(&endpoint).map_err(|e| Error::Config(format!("LLM url {endpoint:?}: {e}")))?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(config.timeout_secs.max(1)))
            .build()
            .map_err(|e| Error::Config(format!("LLM HTTP client: {e}")))?;
        Ok(Self { config, endpoint, http })
    }

    /// The prompt for `meeting`.
    pub fn prompt(&self, meeting: &MeetingText) -> String {
        let mut transcript = String::new();
        for u in &meeting.utterances {
            transcript.push_str(&format!("{}: {}\n", u.speaker, u.text.trim()));
        }
        if transcript.chars().count() > self.config.max_transcript_chars {
            transcript = format!(
                "{}\n[the rest of the transcript is left out]",
                clip(&transcript, self.config.max_transcript_chars)
            );
        }
        let language = match meeting.language.as_deref() {
            _ if is_swedish(meeting.language.as_deref()) => "Swedish".to_owned(),
            Some(l) if l.eq_ignore_ascii_case("en") || l.to_ascii_lowercase().starts_with("en-") => {
                "English".to_owned()
            }
            Some(l) => format!("the language with code {l}"),
            None => "the language of the transcript".to_owned(),
        };
        self.config
            .prompt_template
            .replace("{title}", &meeting.title)
            .replace("{date}", &crate::date(meeting.started_at))
            .replace("{language}", &language)
            .replace("{participants}", &meeting.participants.join(", "))
            .replace("{transcript}", &transcript)
    }

    async fn ask(&self, meeting: &MeetingText) -> Result<Summary> {
        let body = json!({
            "model": self.config.model,
            "messages": [{"role": "user", "content": self.prompt(meeting)}],
            "temperature": self.config.temperature,
            "stream": false,
        });
        let mut request = self
            .http
            .post(&self.endpoint)
            .header("content-type", "application/json")
            .body(body.to_string());
        if let Some(key) = &self.config.api_key {
            request = request.bearer_auth(key);
        }
        let response = request.send().await.map_err(|e| self.failed(e))?;
        let status = response.status();
        let text = response.text().await.map_err(|e| self.failed(e))?;
        if !status.is_success() {
            return Err(Error::Summary(format!(
                "LLM endpoint {} answered {status}: {}",
                self.endpoint,
                clip(&text, 300)
            )));
        }
        let answer: Value = serde_json::from_str(&text).map_err(|e| {
            Error::Summary(format!(
                "LLM endpoint {} sent no chat-completions JSON ({e}): {}",
                self.endpoint,
                clip(&text, 300)
            ))
        })?;
        let content = answer["choices"][0]["message"]["content"].as_str().ok_or_else(|| {
            Error::Summary(format!(
                "LLM answer has no choices[0].message.content: {}",
                clip(&text, 300)
            ))
        })?;
        let mut summary = parse_summary(content)?;
        summary.source = format!("llm:{}", self.config.model);
        Ok(summary)
    }

    fn failed(&self, e: reqwest::Error) -> Error {
        if e.is_timeout() {
            Error::Summary(format!(
                "LLM endpoint {} did not answer within {} s",
                self.endpoint, self.config.timeout_secs
            ))
        } else if e.is_connect() {
            Error::Summary(format!("cannot connect to LLM endpoint {}: {e}", self.endpoint))
        } else {
            Error::Summary(format!("LLM endpoint {}: {e}", self.endpoint))
        }
    }
}

impl Summarizer for Llm {
    fn summarize<'a>(&'a self, meeting: &'a MeetingText) -> SummaryFuture<'a> {
        Box::pin(self.ask(meeting))
    }
}

/// Reads the model's answer: a JSON object, possibly inside a code fence or after some words.
pub fn parse_summary(content: &str) -> Result<Summary> {
    let bad = |why: &str| {
        Error::Summary(format!(
            "the LLM's answer is not the requested JSON summary ({why}): {}",
            clip(content, 300)
        ))
    };
    let start = content.find('{').ok_or_else(|| bad("no JSON object"))?;
    let end = content
        .rfind('}')
        .filter(|&e| e > start)
        .ok_or_else(|| bad("no JSON object"))?;
    let value: Value = serde_json::from_str(&content[start..=end]).map_err(|e| bad(&e.to_string()))?;
    if !value.is_object() {
        return Err(bad("not an object"));
    }
    let list = |keys: &[&str]| -> Vec<Point> {
        let items = keys
            .iter()
            .find_map(|k| value.get(*k))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        items
            .iter()
            .filter_map(|item| match item {
                Value::String(s) => Some(Point::new(None, clip(s, super::extractive::MAX_POINT_CHARS))),
                Value::Object(o) => {
                    let text = o.get("text").or_else(|| o.get("item")).and_then(Value::as_str)?;
                    let speaker = o
                        .get("speaker")
                        .or_else(|| o.get("owner"))
                        .or_else(|| o.get("who"))
                        .and_then(Value::as_str);
                    Some(Point::new(speaker, clip(text, super::extractive::MAX_POINT_CHARS)))
                }
                _ => None,
            })
            .filter(|p| !p.text.is_empty())
            .take(20)
            .collect()
    };
    let summary = Summary {
        key_points: list(&["key_points", "keyPoints", "summary"]),
        decisions: list(&["decisions"]),
        action_items: list(&["action_items", "actionItems", "actions"]),
        source: String::new(),
    };
    if summary.key_points.is_empty() && summary.decisions.is_empty() && summary.action_items.is_empty() {
        return Err(bad("no key_points, decisions or action_items"));
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Utterance;
    use std::sync::{Arc, Mutex};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A tiny HTTP/1.1 server on loopback: answers every request with `reply(body)` after `delay`,
    /// and keeps the request bodies it got.
    async fn server(
        delay: Duration,
        reply: impl Fn(&str) -> (u16, String) + Send + Sync + 'static,
    ) -> (String, Arc<Mutex<Vec<String>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/v1", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let reply = Arc::new(reply);
        let seen2 = seen.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut socket, _)) = listener.accept().await else {
                    return;
                };
                let (reply, seen) = (reply.clone(), seen2.clone());
                tokio::spawn(async move {
                    let mut data = Vec::new();
                    let mut buf = [0u8; 8192];
                    let body = loop {
                        let n = socket.read(&mut buf).await.unwrap_or(0);
                        if n == 0 {
                            return;
                        }
                        data.extend_from_slice(&buf[..n]);
                        let text = String::from_utf8_lossy(&data).to_string();
                        if let Some(head_end) = text.find("\r\n\r\n") {
                            let head = text[..head_end].to_ascii_lowercase();
                            let length = head
                                .lines()
                                .find_map(|l| {
                                    l.strip_prefix("content-length:")
                                        .map(|v| v.trim().parse::<usize>().unwrap())
                                })
                                .unwrap_or(0);
                            if data.len() >= head_end + 4 + length {
                                assert!(head.starts_with("post /v1/chat/completions "), "{head}");
                                break String::from_utf8_lossy(&data[head_end + 4..head_end + 4 + length]).to_string();
                            }
                        }
                    };
                    seen.lock().unwrap().push(body.clone());
                    tokio::time::sleep(delay).await;
                    let (status, answer) = reply(&body);
                    let response = format!(
                        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}",
                        answer.len()
                    );
                    let _ = socket.write_all(response.as_bytes()).await;
                });
            }
        });
        (url, seen)
    }

    fn chat_answer(content: &str) -> String {
        json!({"id": "x", "object": "chat.completion", "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}]}).to_string()
    }

    fn meeting() -> MeetingText {
        MeetingText {
            title: "styrelsemöte".into(),
            started_at: 1_700_000_000_000,
            ended_at: Some(1_700_000_600_000),
            language: Some("sv".into()),
            participants: vec!["Anna".into(), "Björn".into()],
            utterances: vec![
                Utterance {
                    speaker: "Anna".into(),
                    start_ms: 1_700_000_001_000,
                    text: "Vi bestämde att leasa switcharna.".into(),
                },
                Utterance {
                    speaker: "Björn".into(),
                    start_ms: 1_700_000_002_000,
                    text: "Jag skickar avtalet på fredag.".into(),
                },
            ],
        }
    }

    fn llm(url: &str, timeout_secs: u64) -> Llm {
        Llm::new(LlmConfig {
            url: url.into(),
            model: "local-model".into(),
            timeout_secs,
            ..Default::default()
        })
        .unwrap()
    }

    #[tokio::test]
    async fn a_chat_completions_answer_becomes_a_summary() {
        let content = "```json\n{\"key_points\": [\"Anna: switcharna leasas\"], \"decisions\": [{\"text\": \"Switcharna leasas\", \"speaker\": \"Anna\"}], \"action_items\": [\"Björn skickar avtalet senast fredag\"]}\n```";
        let answer = chat_answer(content);
        let (url, seen) = server(Duration::ZERO, move |_| (200, answer.clone())).await;
        let summary = llm(&url, 10).summarize(&meeting()).await.unwrap();
        assert_eq!(summary.key_points, [Point::new(None, "Anna: switcharna leasas")]);
        assert_eq!(summary.decisions, [Point::new(Some("Anna"), "Switcharna leasas")]);
        assert_eq!(
            summary.action_items,
            [Point::new(None, "Björn skickar avtalet senast fredag")]
        );
        assert_eq!(summary.source, "llm:local-model");
        let request: Value = serde_json::from_str(&seen.lock().unwrap()[0]).unwrap();
        assert_eq!(request["model"], "local-model");
        let prompt = request["messages"][0]["content"].as_str().unwrap();
        assert!(prompt.contains("Write in Swedish"), "{prompt}");
        assert!(
            prompt.contains("Anna: Vi bestämde att leasa switcharna.") && prompt.contains("Participants: Anna, Björn"),
            "{prompt}"
        );
    }

    #[tokio::test]
    async fn http_errors_bad_answers_and_timeouts_are_clear_errors() {
        let (url, _) = server(Duration::ZERO, |_| (500, "{\"error\": \"model not loaded\"}".into())).await;
        let err = llm(&url, 10).summarize(&meeting()).await.unwrap_err().to_string();
        assert!(err.contains("500") && err.contains("model not loaded"), "{err}");

        let (url, _) = server(Duration::ZERO, |_| {
            (200, chat_answer("Sorry, I cannot help with that."))
        })
        .await;
        let err = llm(&url, 10).summarize(&meeting()).await.unwrap_err().to_string();
        assert!(err.contains("not the requested JSON summary"), "{err}");

        let (url, _) = server(Duration::ZERO, |_| (200, "<html>proxy error</html>".into())).await;
        let err = llm(&url, 10).summarize(&meeting()).await.unwrap_err().to_string();
        assert!(err.contains("no chat-completions JSON"), "{err}");

        let (url, _) = server(Duration::from_secs(5), |_| {
            (200, chat_answer("{\"key_points\": [\"late\"]}"))
        })
        .await;
        let err = llm(&url, 1).summarize(&meeting()).await.unwrap_err().to_string();
        assert!(err.contains("did not answer within 1 s"), "{err}");

        // Nothing listens on this port.
        let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/v1", closed.local_addr().unwrap());
        drop(closed);
        let err = llm(&url, 5).summarize(&meeting()).await.unwrap_err().to_string();
        assert!(err.contains("cannot connect"), "{err}");
    }

    #[test]
    fn configuration_is_checked() {
        assert!(Llm::new(LlmConfig::default()).is_err(), "no url, no model");
        let full = Llm::new(LlmConfig {
            url: "http://127.0.0.1:1/v1/chat/completions/".into(),
            model: "m".into(),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(full.endpoint, "http://127.0.0.1:1/v1/chat/completions");
        assert!(parse_summary("{\"key_points\": []}").is_err());
    }
}
