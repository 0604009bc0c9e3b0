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
/// The server's words are data, never shell code: they are read one a line with `mapfile` and
/// compared as plain strings, never passed to `compgen -W` (which expands `$(...)`, backticks
/// and globs inside each word).
const BASH_FROM_SERVER: &str = r#"
_jitgate_from_server() {
    local cur="${COMP_WORDS[COMP_CWORD]}" sub="${COMP_WORDS[1]}" what="" word
    if [[ ${COMP_CWORD} -eq 2 && "${cur}" != -* ]]; then
        case "${sub}" in
            show|approve|deny|cancel|review) what=requests ;;
            request|gate|run) what=resources ;;
        esac
    fi
    if [[ -n "${what}" ]]; then
        local -a words=()
        mapfile -t words < <(jitgate __complete "${what}" 2>/dev/null)
        COMPREPLY=()
        for word in "${words[@]}"; do
            [[ "${word}" == "${cur}"* ]] && COMPREPLY+=("${word}")
        done
        return 0
    fi
    _jitgate "$@"
}
complete -F _jitgate_from_server -o bashdefault -o default jitgate
"#;

/// Whether a word from the server may be offered to a shell: only characters that no shell
/// gives a meaning to inside a word (`^[A-Za-z0-9._:/@+=,-]+$`), so that even a completion
/// script that expanded it would find nothing to run. Others are left out, not escaped.
fn safe_completion_word(word: &str) -> bool {
    !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '/' | '@' | '+' | '=' | ',' | '-'))
}

/// `jitgate completion bash|zsh|fish`.
pub fn completion(mut command: clap::Command, shell: clap_complete::Shell) -> Result<ExitCode, ClientError> {
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut command, "jitgate", &mut out);
    let mut out = hide_internal_command(shell, &String::from_utf8_lossy(&out)).into_bytes();
    if shell == clap_complete::Shell::Bash {
        out.extend_from_slice(BASH_FROM_SERVER.as_bytes());
    }
    std::io::stdout()
        .write_all(&out)
        .map_err(|e| ClientError::Other(format!("cannot write the script: {e}")))?;
    Ok(ExitCode::SUCCESS)
}

/// clap's generators offer even a hidden subcommand as a word: `jitgate <TAB>` would show
/// `__complete`, which is for the scripts only. Take it out of the words offered (bash's
/// `opts="..."` lists, fish's `-a "__complete"` line); its own branches stay, unreachable.
fn hide_internal_command(shell: clap_complete::Shell, script: &str) -> String {
    let mut out = String::with_capacity(script.len());
    for line in script.lines() {
        match shell {
            clap_complete::Shell::Bash if line.trim_start().starts_with("opts=\"") => {
                out.push_str(&line.replace(" __complete ", " "));
            }
            clap_complete::Shell::Fish if line.contains("-a \"__complete\"") => continue,
            _ => out.push_str(line),
        }
        out.push('\n');
    }
    out
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
/// `JITGATE_TOKEN_COMMAND` is not run here (a TAB must not start a sign-in helper that may
/// wait for ever), and the whole process ends after [`COMPLETION_TIMEOUT`] whatever it is
/// doing: the HTTP timeout alone does not cover name resolution or a slow file system.
pub fn complete_from_server(globals: &Globals, what: &str) -> Result<ExitCode, ClientError> {
    std::thread::spawn(|| {
        std::thread::sleep(COMPLETION_TIMEOUT);
        std::process::exit(0);
    });
    let globals = Globals {
        url: globals.url.clone(),
        token: globals.token.clone(),
        token_command: None,
        profile: globals.profile.clone(),
        output: globals.output,
        token_typed: globals.token_typed,
    };
    let Ok(mut session) = people::connect_for_completion(&globals) else {
        return Ok(ExitCode::SUCCESS);
    };
    session.client.set_timeout(COMPLETION_TIMEOUT);
    let (path, query, field) = match what {
        "requests" => ("/v1/requests", vec![("status", "pending".to_string())], "id"),
        "resources" => ("/v1/resources", Vec::new(), "name"),
        _ => return Ok(ExitCode::SUCCESS),
    };
    if let Ok(answer) = session.client.get(path, &query) {
        let words: Vec<&str> = answer["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|item| item[field].as_str())
            .filter(|w| safe_completion_word(w))
            .collect();
        // One write, so the deadline cannot cut a word in half.
        let mut out = words.join("\n");
        if !out.is_empty() {
            out.push('\n');
        }
        let _ = std::io::stdout().write_all(out.as_bytes());
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_words_without_shell_meaning_are_offered() {
        for good in ["prod-db", "req_0193abc", "env:prod", "team/app@v1+2=3,4", "a.b"] {
            assert!(safe_completion_word(good), "{good}");
        }
        for bad in [
            "$(touch${IFS}/tmp/PWNED)",
            "`id`",
            "a;b",
            "a|b",
            "*",
            "a?",
            "[ab]",
            "~root",
            "a b",
            "a\nb",
            "{a,b}",
            "a'b",
            "a\"b",
            "a\\b",
            "a<b",
            "!x",
            "",
            "prоd",
        ] {
            assert!(!safe_completion_word(bad), "{bad:?}");
        }
    }
}
