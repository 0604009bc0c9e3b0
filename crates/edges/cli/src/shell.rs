//! Shell completions and man pages, both from clap's own description of the commands, and the
//! hidden `jitgate __complete` that the bash, zsh and fish completions ask for request ids and
//! resource names (clap_complete's dynamic completion is behind an unstable feature).

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
    elif [[ "${sub}" == ssh && ${COMP_CWORD} -gt 2 && "${COMP_WORDS[COMP_CWORD-1]}" == --request ]]; then
        what=resources
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

/// Zsh: the functions the `_arguments` specs below name for the server's words. `_arguments`
/// calls an action with compadd's options first (`-J GROUP -X EXPLANATION`...), which are passed
/// on. The words are data, never shell code: split at line ends, empty lines dropped, and
/// handed to `compadd -a` (which quotes each for the command line), under `emulate -L zsh` so
/// that a user's `GLOB_SUBST` or `SH_WORD_SPLIT` cannot make a word be globbed or split.
const ZSH_FROM_SERVER: &str = r#"
(( $+functions[_jitgate_from_server] )) ||
_jitgate_from_server() {
    emulate -L zsh
    local what="$1"
    shift
    local -a words
    words=("${(@f)$(jitgate __complete "$what" 2>/dev/null)}")
    words=("${(@)words:#}")
    (( ${#words} )) || return 1
    compadd "$@" -a words
}
(( $+functions[_jitgate_server_requests] )) ||
_jitgate_server_requests() {
    _jitgate_from_server requests "$@"
}
(( $+functions[_jitgate_server_resources] )) ||
_jitgate_server_resources() {
    _jitgate_from_server resources "$@"
}
"#;

/// Fish: the same words for the first argument of the commands that take a request id or a
/// resource name, and for `ssh --request`. Fish offers each line of a command substitution as
/// one candidate and never evaluates it again; a word with a tab would carry a description,
/// and `__complete` prints none.
const FISH_FROM_SERVER: &str = r#"
# Request ids and resource names from the server (the hidden `jitgate __complete`).
function __fish_jitgate_from_server
    jitgate __complete $argv[1] 2>/dev/null
end

# Whether the word being completed is the subcommand's first argument: after the subcommand,
# nothing typed so far but its options and their values (`--for 30m`), which argparse takes out
# with the subcommand's own optspecs; an option still waiting for its value fails argparse.
function __fish_jitgate_first_argument
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_jitgate_global_optspecs) -- $cmd 2>/dev/null
    or return 1
    set -l sub $argv[1]
    set -e argv[1]
    argparse (__fish_jitgate_subcommand_optspecs $sub) -- $argv 2>/dev/null
    or return 1
    test (count $argv) -eq 0
end

complete -c jitgate -n "__fish_jitgate_using_subcommand show approve deny cancel review; and __fish_jitgate_first_argument" -f -a "(__fish_jitgate_from_server requests)"
complete -c jitgate -n "__fish_jitgate_using_subcommand request gate run; and __fish_jitgate_first_argument" -f -a "(__fish_jitgate_from_server resources)"
"#;

/// The subcommands whose first argument is a request id or a resource name, for zsh.
const ZSH_REQUEST_ID_COMMANDS: [&str; 5] = ["show", "approve", "deny", "cancel", "review"];
const ZSH_RESOURCE_COMMANDS: [&str; 3] = ["request", "gate", "run"];

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
    let script = hide_internal_command(shell, &String::from_utf8_lossy(&out));
    let out = match shell {
        clap_complete::Shell::Bash => script + BASH_FROM_SERVER,
        clap_complete::Shell::Zsh => complete_from_server_in_zsh(&script),
        clap_complete::Shell::Fish => complete_from_server_in_fish(&script) + &fish_subcommand_optspecs(&command),
        _ => script,
    };
    std::io::stdout()
        .write_all(out.as_bytes())
        .map_err(|e| ClientError::Other(format!("cannot write the script: {e}")))?;
    Ok(ExitCode::SUCCESS)
}

/// clap's generators offer even a hidden subcommand as a word: `jitgate <TAB>` would show
/// `__complete`, which is for the scripts only. Take it out of the words offered (bash's
/// `opts="..."` lists, fish's `-a "__complete"` lines, zsh's `'__complete:...'` entries of its
/// command lists); its own branches stay, unreachable.
fn hide_internal_command(shell: clap_complete::Shell, script: &str) -> String {
    let mut out = String::with_capacity(script.len());
    for line in script.lines() {
        match shell {
            clap_complete::Shell::Bash if line.trim_start().starts_with("opts=\"") => {
                out.push_str(&line.replace(" __complete ", " "));
            }
            clap_complete::Shell::Fish if line.contains("-a \"__complete\"") => continue,
            clap_complete::Shell::Zsh if line.starts_with("'__complete:") => continue,
            _ => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

/// Zsh: the first argument of the commands that take a request id or a resource name, and
/// `ssh --request`, complete through `_jitgate_server_requests` or `_jitgate_server_resources`
/// instead of `_default`. clap writes
/// one `(NAME)` branch per subcommand, its positionals as `':NAME:_default' \`; only the
/// top-level branches (the first of each name) are changed, not `jitgate help NAME`'s.
fn complete_from_server_in_zsh(script: &str) -> String {
    let mut out = String::with_capacity(script.len() + ZSH_FROM_SERVER.len());
    let mut branch = "";
    let mut seen = std::collections::HashSet::new();
    for line in script.lines() {
        if let Some(name) = line.strip_prefix('(').and_then(|l| l.strip_suffix(')')) {
            // A name seen before is `jitgate help NAME`'s branch, which takes no argument.
            branch = if seen.insert(name) { name } else { "" };
        }
        let ids = ZSH_REQUEST_ID_COMMANDS.contains(&branch);
        let resources = ZSH_RESOURCE_COMMANDS.contains(&branch);
        if line.starts_with("if [ \"$funcstack[1]\" = \"_jitgate\" ]") {
            out.push_str(ZSH_FROM_SERVER.trim_start());
            out.push('\n');
        }
        if ids && line == "':id:_default' \\" {
            out.push_str("':id:_jitgate_server_requests' \\");
        } else if resources && line == "':resource:_default' \\" {
            out.push_str("':resource:_jitgate_server_resources' \\");
        } else if branch == "ssh" && line.starts_with("'--request=[") && line.ends_with(":RESOURCE:_default' \\") {
            out.push_str(&line.replace(":RESOURCE:_default'", ":RESOURCE:_jitgate_server_resources'"));
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    out
}

/// Fish: clap's script, `ssh --request` completing resource names, and the server's words
/// for the commands' first arguments.
fn complete_from_server_in_fish(script: &str) -> String {
    let mut out = String::with_capacity(script.len() + FISH_FROM_SERVER.len());
    for line in script.lines() {
        out.push_str(line);
        if line.starts_with("complete -c jitgate -n \"__fish_jitgate_using_subcommand ssh\" -l request ") {
            out.push_str(" -f -a \"(__fish_jitgate_from_server resources)\"");
        }
        out.push('\n');
    }
    out + FISH_FROM_SERVER
}

/// Fish: `__fish_jitgate_subcommand_optspecs NAME`, argparse's optspecs for every option of the
/// subcommands whose first argument completes from the server (their own and the global ones,
/// aliases included), `=` after those that take a value, from clap's own description.
/// `command` has been built (by the generator), so the global options are among each
/// subcommand's.
fn fish_subcommand_optspecs(command: &clap::Command) -> String {
    let mut out = String::from(
        "\n# argparse's optspecs for a subcommand's options (`=`: it takes a value).\nfunction __fish_jitgate_subcommand_optspecs\n    switch $argv[1]\n",
    );
    let names = ZSH_REQUEST_ID_COMMANDS.iter().chain(ZSH_RESOURCE_COMMANDS.iter());
    for sub in names.filter_map(|name| command.find_subcommand(name)) {
        let mut specs = Vec::new();
        for arg in sub.get_arguments().filter(|a| !a.is_positional()) {
            let value = if arg.get_action().takes_values() { "=" } else { "" };
            let short = arg.get_short().map(|c| format!("{c}/")).unwrap_or_default();
            if let Some(long) = arg.get_long() {
                specs.push(format!("{short}{long}{value}"));
            } else if let Some(c) = arg.get_short() {
                specs.push(format!("{c}{value}"));
            }
            for alias in arg.get_all_aliases().into_iter().flatten() {
                specs.push(format!("{alias}{value}"));
            }
        }
        // Option names are clap identifiers (letters, digits, `-`): nothing fish would expand.
        out.push_str(&format!(
            "        case {}\n            string join \\n {}\n",
            sub.get_name(),
            specs.join(" ")
        ));
    }
    out.push_str("    end\nend\n");
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
