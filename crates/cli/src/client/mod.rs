//! The CLI's side of the HTTP API: one [`Client`] per command, holding the server's base URL and
//! the token, that sends JSON and turns every answer the server refuses into
//! [`CliError::Refused`] with the server's own code and message. The CLI is a thin client: every
//! command is API calls, nothing reaches around the server.

mod error;
mod token;

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::Value;

pub use error::{CliError, CliResult};

use crate::cli::ClientArgs;

/// A connection to one spectask server.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl Client {
    /// The client `args` describe: the server URL, and the token given, in the environment, or in
    /// the data directory's `api-token` file when the server is on this machine.
    pub fn new(args: &ClientArgs) -> CliResult<Self> {
        let base = args.server.trim_end_matches('/').to_owned();
        let url = reqwest::Url::parse(&base)
            .map_err(|err| CliError::Usage(format!("--server `{base}` is not a URL: {err}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(CliError::Usage(format!(
                "--server `{base}` must be an http:// or https:// URL"
            )));
        }
        let token = token::resolve(args.token.as_deref(), &url, &args.data_dir)?;
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|err| {
                CliError::Other(anyhow::anyhow!("cannot build the HTTP client: {err}"))
            })?;
        Ok(Self { http, base, token })
    }

    /// The server's base URL, without a trailing slash.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Whether the server answers its liveness probe.
    pub async fn healthy(&self) -> bool {
        let probe = self
            .http
            .get(format!("{}/healthz", self.base))
            .timeout(Duration::from_secs(5))
            .send()
            .await;
        probe.is_ok_and(|response| response.status().is_success())
    }

    /// Whether the server's address is on this machine (a loopback host).
    pub fn is_local(&self) -> bool {
        reqwest::Url::parse(&self.base).is_ok_and(|url| token::is_loopback(&url))
    }

    /// A request to `path` under `/api/v1`, with the token.
    pub fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        let mut request = self
            .http
            .request(method, format!("{}/api/v1{path}", self.base));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        request
    }

    /// Sends `request` and returns its JSON body (`null` for an empty one), or the server's
    /// refusal.
    pub async fn send(&self, request: reqwest::RequestBuilder) -> CliResult<Value> {
        let response = request.send().await.map_err(|err| self.unreachable(err))?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|err| self.unreachable(err))?;
        if status.is_success() {
            if bytes.is_empty() || status == StatusCode::NO_CONTENT {
                return Ok(Value::Null);
            }
            return serde_json::from_slice(&bytes).map_err(|err| {
                CliError::Other(anyhow::anyhow!(
                    "the server answered {status} with no JSON: {err}"
                ))
            });
        }
        let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Err(CliError::Refused {
            status: status.as_u16(),
            code: body["error"]["code"]
                .as_str()
                .unwrap_or("http_error")
                .to_owned(),
            message: body["error"]["message"].as_str().map_or_else(
                || String::from_utf8_lossy(&bytes).into_owned(),
                str::to_owned,
            ),
            body,
        })
    }

    pub async fn get(&self, path: &str) -> CliResult<Value> {
        self.send(self.request(Method::GET, path)).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> CliResult<Value> {
        self.send(self.request(Method::POST, path).json(body)).await
    }

    pub async fn delete(&self, path: &str) -> CliResult<Value> {
        self.send(self.request(Method::DELETE, path)).await
    }

    fn unreachable(&self, err: reqwest::Error) -> CliError {
        CliError::Other(anyhow::anyhow!(
            "cannot reach the spectask server at {}: {err} (start one with `spectask serve`, or \
             give --server)",
            self.base
        ))
    }
}
