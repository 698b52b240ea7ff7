//! The tools spectask offers the agents it hosts: an [`AgentToolServer`] names the MCP servers a
//! thread of a work session is given when the thread is created or loaded (spectask's own MCP
//! server, with a bearer token for that thread).

use async_trait::async_trait;

use super::{AgentResult, InstanceId};
use spectask_domain::WorkSessionId;

/// One MCP server reachable over streamable HTTP.
#[derive(Clone, PartialEq, Eq)]
pub struct McpEndpoint {
    pub name: String,
    pub url: String,
    /// Headers the agent must send (the `Authorization: Bearer …` token).
    pub headers: Vec<(String, String)>,
}

impl std::fmt::Debug for McpEndpoint {
    // Header values carry credentials: never in logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("McpEndpoint")
            .field("name", &self.name)
            .field("url", &self.url)
            .field(
                "headers",
                &self
                    .headers
                    .iter()
                    .map(|(name, _)| name)
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// Supplies the MCP servers of a thread.
#[async_trait]
pub trait AgentToolServer: Send + Sync + std::fmt::Debug {
    /// The servers for a thread of work session `work_session_id` in instance `instance_id`,
    /// with fresh credentials; called once per `session/new` and `session/load`.
    async fn endpoints_for_thread(
        &self,
        instance_id: &InstanceId,
        work_session_id: &WorkSessionId,
    ) -> AgentResult<Vec<McpEndpoint>>;

    /// The TCP ports its endpoints listen on, which a sandbox that restricts connects must
    /// still allow. Unknown by default.
    fn tcp_ports(&self) -> Vec<u16> {
        Vec::new()
    }
}

/// The port of an `http://host:port/…` URL (80 or 443 when it names none); `None` when the URL
/// is not HTTP(S).
pub fn url_port(url: &str) -> Option<u16> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let host_port = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    match host_port.rsplit_once(':') {
        Some((host, port)) if !port.contains(']') && !host.is_empty() => port.parse().ok(),
        _ => match scheme {
            "http" => Some(80),
            "https" => Some(443),
            _ => None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_come_from_urls() {
        assert_eq!(url_port("http://127.0.0.1:4123/mcp"), Some(4123));
        assert_eq!(url_port("http://[::1]:9/mcp"), Some(9));
        assert_eq!(url_port("https://example.invalid/mcp"), Some(443));
        assert_eq!(url_port("http://[::1]/mcp"), Some(80));
        assert_eq!(url_port("file:///x"), None);
    }

    #[test]
    fn endpoint_debug_never_shows_header_values() {
        let endpoint = McpEndpoint {
            name: "spectask".into(),
            url: "http://127.0.0.1:1/mcp".into(),
            headers: vec![("Authorization".into(), "Bearer secret-token".into())],
        };
        let shown = format!("{endpoint:?}");
        assert!(
            shown.contains("Authorization") && !shown.contains("secret-token"),
            "{shown}"
        );
    }
}
