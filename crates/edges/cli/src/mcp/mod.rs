//! `jitgate mcp`: AI agents over the Model Context Protocol. `proxy` puts an MCP server behind
//! jitgate's approvals, one tool call at a time; `serve` is an MCP server whose tools let an
//! agent ask for access itself. Both talk to jitgate over the HTTP API with the agent's own
//! credential, like every other client command. See docs/agents.md.

pub mod jsonrpc;
pub mod proxy;
pub mod serve;
pub mod upstream;
