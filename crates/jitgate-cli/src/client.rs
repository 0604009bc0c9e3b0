//! A small blocking HTTP client for the jitgate API.

use crate::Output;
use serde_json::Value;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{message} ({code}, HTTP {status})")]
    Api { status: u16, code: String, message: String },
    #[error("cannot reach {url}: {source}")]
    Transport { url: String, source: reqwest::Error },
    #[error("no token: set JITGATE_TOKEN or pass --token")]
    NoToken,
    #[error("{0}")]
    Other(String),
}

pub struct Client {
    base: String,
    token: Option<String>,
    http: reqwest::blocking::Client,
    pub output: Output,
}

impl Client {
    pub fn new(base: &str, token: Option<String>, output: Output) -> Self {
        let http = reqwest::blocking::Client::builder()
            .timeout(std::time::Duration::from_secs(60))
            .build()
            .unwrap_or_else(|_| reqwest::blocking::Client::new());
        Client {
            base: base.trim_end_matches('/').to_string(),
            token,
            http,
            output,
        }
    }

    fn send(&self, builder: reqwest::blocking::RequestBuilder, url: &str) -> Result<Value, ClientError> {
        let token = self.token.as_deref().ok_or(ClientError::NoToken)?;
        let response = builder
            .bearer_auth(token)
            .send()
            .map_err(|source| ClientError::Transport {
                url: url.to_string(),
                source,
            })?;
        let status = response.status();
        let text = response.text().map_err(|source| ClientError::Transport {
            url: url.to_string(),
            source,
        })?;
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if status.is_success() {
            return Ok(body);
        }
        let code = body["error"]["code"].as_str().unwrap_or("unknown").to_string();
        let message = body["error"]["message"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| body.to_string());
        Err(ClientError::Api {
            status: status.as_u16(),
            code,
            message,
        })
    }

    pub fn get(&self, path: &str, query: &[(&str, String)]) -> Result<Value, ClientError> {
        let url = format!("{}{path}", self.base);
        self.send(self.http.get(&url).query(query), &url)
    }

    pub fn post(&self, path: &str, body: &Value) -> Result<Value, ClientError> {
        let url = format!("{}{path}", self.base);
        self.send(self.http.post(&url).json(body), &url)
    }
}
