//! The exec provider: each provisioning and deprovisioning runs a command, with the JSON body
//! on its standard input and the essentials in its environment; exit status 0 acknowledges.

use crate::entry::ProviderEntry;
use async_trait::async_trait;
use jitgate_service::connectors::{Delivery, Provider};
use std::time::Duration;

struct Exec {
    command: Vec<String>,
    timeout: Duration,
}

/// `kind = "exec"`: `command` (the program by its absolute path, then its arguments), no `url`.
pub fn build(entry: &ProviderEntry<'_>) -> Result<Box<dyn Provider>, String> {
    let (c, at) = (entry.config, entry.at);
    let (None, Some(command)) = (&c.url, &c.command) else {
        return Err(format!(
            "{}: an exec provider needs command (and no url)",
            at("command")
        ));
    };
    if command.first().is_none_or(|program| !program.starts_with('/')) {
        return Err(format!(
            "{}: name the program by its absolute path, like [\"/usr/local/bin/grant-hook\"]",
            at("command")
        ));
    }
    Ok(Box::new(Exec {
        command: command.clone(),
        timeout: entry.timeout,
    }))
}

#[async_trait]
impl Provider for Exec {
    fn timeout(&self) -> Duration {
        self.timeout
    }

    async fn deliver(&self, d: &Delivery<'_>) -> Result<(), String> {
        run_command(&self.command, self.timeout, d, super::delivery_body(d)).await
    }
}

/// Run the command: the body on standard input, the essentials in the environment.
async fn run_command(command: &[String], timeout: Duration, d: &Delivery<'_>, body: String) -> Result<(), String> {
    use tokio::io::AsyncWriteExt;
    let (item, grant) = (d.item, d.grant);
    let (program, args) = command.split_first().ok_or("the command is empty")?;
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .env("JITGATE_OPERATION", item.operation.as_str())
        .env("JITGATE_DELIVERY", item.idempotency_key(grant.extensions))
        .env("JITGATE_GRANT_ID", &grant.id)
        .env("JITGATE_PRINCIPAL", &grant.principal)
        .env("JITGATE_RESOURCE", &grant.resource)
        .env("JITGATE_ACTION", &grant.action)
        .env("JITGATE_EXPIRES_AT", grant.expires_at.to_rfc3339())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A program that does not read its input is not an error.
        let _ = stdin.write_all(body.as_bytes()).await;
    }
    let output = tokio::time::timeout(timeout, child.wait_with_output())
        .await
        .map_err(|_| format!("{program} took longer than {timeout:?}"))?
        .map_err(|e| format!("{program}: {e}"))?;
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let tail: String = stderr
        .trim()
        .chars()
        .rev()
        .take(300)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    Err(format!("{program} exited with {}: {tail}", output.status))
}
