//! `call_mcp_tool` steps: one short-lived rmcp client per call, over streamable HTTP, to a server
//! the client named in `session/new`'s `mcpServers`. Errors come back as text for the failed tool
//! call; they never end the turn.

use std::collections::HashMap;

use agent_client_protocol::v1::schema::McpServer;
use rmcp::ServiceExt as _;
use rmcp::model::CallToolRequestParams;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;

/// A configured server's name, whatever its transport.
pub fn name(server: &McpServer) -> &str {
    match server {
        McpServer::Http(http) => &http.name,
        McpServer::Sse(sse) => &sse.name,
        McpServer::Stdio(stdio) => &stdio.name,
        _ => "",
    }
}

/// `name url [header names]` of a configured server, for the request log.
pub fn describe(server: &McpServer) -> String {
    match server {
        McpServer::Http(http) => {
            let headers: Vec<&str> = http.headers.iter().map(|h| h.name.as_str()).collect();
            format!("{} {} [{}]", http.name, http.url, headers.join(", "))
        }
        other => format!("{} (not http)", name(other)),
    }
}

/// Calls `tool` on `server` and returns the text of the result's content blocks.
pub async fn call_tool(
    server: Option<&McpServer>,
    server_name: &str,
    tool: &str,
    arguments: serde_json::Map<String, serde_json::Value>,
) -> Result<String, String> {
    let Some(server) = server else {
        return Err(format!(
            "no MCP server named {server_name:?} in this session"
        ));
    };
    let McpServer::Http(http) = server else {
        return Err(format!(
            "MCP server {server_name:?} is not an HTTP server; only HTTP is supported"
        ));
    };
    let mut config = StreamableHttpClientTransportConfig::with_uri(http.url.clone());
    let mut headers = HashMap::new();
    for header in &http.headers {
        // rmcp sends the bearer token itself; every other header goes through as given.
        if header.name.eq_ignore_ascii_case("authorization")
            && let Some(token) = header.value.strip_prefix("Bearer ")
        {
            config = config.auth_header(token.to_owned());
            continue;
        }
        let name = reqwest::header::HeaderName::from_bytes(header.name.as_bytes())
            .map_err(|err| format!("header name {:?}: {err}", header.name))?;
        let value = reqwest::header::HeaderValue::from_str(&header.value)
            .map_err(|err| format!("header {:?}: {err}", header.name))?;
        headers.insert(name, value);
    }
    let config = config.custom_headers(headers);
    let transport = StreamableHttpClientTransport::from_config(config);
    let client = ()
        .serve(transport)
        .await
        .map_err(|err| format!("connecting to MCP server {server_name:?}: {err}"))?;
    let result = client
        .call_tool(CallToolRequestParams::new(tool.to_owned()).with_arguments(arguments))
        .await;
    // Close the MCP session whatever the call did; a failure to close is not the tool's result.
    if let Err(err) = client.cancel().await {
        tracing::debug!(%err, "closing the MCP client");
    }
    let result = result.map_err(|err| format!("calling {tool}: {err}"))?;
    let text = result
        .content
        .iter()
        .filter_map(|content| content.as_text().map(|text| text.text.as_str()))
        .collect::<Vec<_>>()
        .join("\n");
    if result.is_error == Some(true) {
        return Err(format!("tool {tool} failed: {text}"));
    }
    Ok(text)
}
