//! Shell completions and man pages, both from clap's own description of the commands, and the
//! hidden `jitgate __complete` that the bash completion asks for request ids and resource
//! names (clap_complete's dynamic completion is behind an unstable feature).

use crate::client::ClientError;
use crate::people::{self, Globals};
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

/// How long `__complete` waits for the server: a shell waiting on a tab must not hang.
const COMPLETION_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Bash: after clap's function, one that offers the server's request ids and resource names
/// for the positional arguments that take them, and clap's completion for everything else.
const BASH_FROM_SERVER: &str = r#"
_jitgate_from_server() {
    local cur="${COMP_WORDS[COMP_CWORD]}" sub="${COMP_WORDS[1]}"
    if [[ ${COMP_CWORD} -eq 2 && "${cur}" != -* ]]; then
        case "${sub}" in
            show|approve|deny|cancel|review)
                COMPREPLY=( $(compgen -W "$(jitgate __complete requests 2>/dev/null)" -- "${cur}") )
                return 0 ;;
            request|gate|run)
                COMPREPLY=( $(compgen -W "$(jitgate __complete resources 2>/dev/null)" -- "${cur}") )
                return 0 ;;
        esac
    fi
    _jitgate "$@"
}
complete -F _jitgate_from_server -o bashdefault -o default jitgate
"#;

/// `jitgate completion bash|zsh|fish`.
pub fn completion(mut command: clap::Command, shell: clap_complete::Shell) -> Result<ExitCode, ClientError> {
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut command, "jitgate", &mut out);
    if shell == clap_complete::Shell::Bash {
        out.extend_from_slice(BASH_FROM_SERVER.as_bytes());
    }
    std::io::stdout()
        .write_all(&out)
        .map_err(|e| ClientError::Other(format!("cannot write the script: {e}")))?;
    Ok(ExitCode::SUCCESS)
}

/// `jitgate man`: the main page to standard output; with `--dir DIR`, one page per command
/// (`jitgate.1`, `jitgate-login.1`, ...) into DIR.
pub fn man(command: clap::Command, dir: Option<&Path>) -> Result<ExitCode, ClientError> {
    match dir {
        None => {
            let mut out = Vec::new();
            clap_mangen::Man::new(command)
                .render(&mut out)
                .map_err(|e| ClientError::Other(format!("cannot render the man page: {e}")))?;
            std::io::stdout()
                .write_all(&out)
                .map_err(|e| ClientError::Other(format!("cannot write the man page: {e}")))?;
        }
        Some(dir) => {
            std::fs::create_dir_all(dir).map_err(|e| ClientError::Other(format!("--dir {}: {e}", dir.display())))?;
            clap_mangen::generate_to(command, dir)
                .map_err(|e| ClientError::Other(format!("--dir {}: {e}", dir.display())))?;
            println!("man pages written to {}", dir.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `jitgate __complete requests|resources`: candidates, one a line; nothing at all on any
/// error (no server, not signed in, too slow), since a shell shows whatever is printed.
pub fn complete_from_server(globals: &Globals, what: &str) -> Result<ExitCode, ClientError> {
    let Ok(mut session) = people::connect(globals) else {
        return Ok(ExitCode::SUCCESS);
    };
    session.client.set_timeout(COMPLETION_TIMEOUT);
    let (path, query, field) = match what {
        "requests" => ("/v1/requests", vec![("status", "pending".to_string())], "id"),
        "resources" => ("/v1/resources", Vec::new(), "name"),
        _ => return Ok(ExitCode::SUCCESS),
    };
    if let Ok(answer) = session.client.get(path, &query) {
        for item in answer["items"].as_array().into_iter().flatten() {
            // Only plain words: a name with a space or control character would break the line.
            if let Some(word) = item[field].as_str().filter(|w| w.chars().all(|c| c.is_ascii_graphic())) {
                println!("{word}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
