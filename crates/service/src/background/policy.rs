//! Live policy reload: on SIGHUP, and when a file of the policy directory changes. A policy
//! that fails validation is refused (logged and audited) and the previous one keeps serving.

use crate::app::App;
use jitgate_core::EventKind;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// How often the directory is looked at for changes. Polling (rather than inotify) also
/// sees the symlink swaps of Kubernetes config maps and editors' rename-on-save.
pub const POLL: Duration = Duration::from_secs(1);

/// What identifies a version of the directory: every policy file's name, size and mtime.
fn fingerprint(dir: &Path) -> Vec<(PathBuf, u64, Option<SystemTime>)> {
    let mut files = Vec::new();
    for sub in [dir.to_path_buf(), dir.join("tests"), dir.join("resources")] {
        let Ok(entries) = std::fs::read_dir(&sub) else { continue };
        for entry in entries.flatten() {
            let path = entry.path();
            if !path.extension().is_some_and(|x| x == "toml" || x == "cedar") {
                continue;
            }
            // Follow symlinks: a swapped link target is a change.
            let meta = std::fs::metadata(&path).ok();
            files.push((
                path,
                meta.as_ref().map_or(0, |m| m.len()),
                meta.and_then(|m| m.modified().ok()),
            ));
        }
    }
    files.sort();
    files
}

/// Record that the policy now serving was loaded.
pub async fn record_loaded(app: &App, dir: &Path) {
    let policy = app.policy();
    let comment = format!(
        "{}: {} workflows, {} principals, {} Cedar policies",
        dir.display(),
        policy.workflows().count(),
        policy.principals().count(),
        policy.cedar_policy_ids().len()
    );
    if let Err(e) = app
        .store
        .append_events(&[crate::audit::system_event(EventKind::PolicyLoaded, comment)])
        .await
    {
        tracing::error!(error = %e, "cannot record the policy load in the audit log");
    }
}

/// Load the directory again; swap it in if valid, refuse it (keeping the old) if not.
pub async fn reload(app: &App, dir: &Path) -> bool {
    let loaded = jitgate_policy::Policy::load(dir).and_then(|policy| {
        app.providers().check_policy(&policy).map_err(|message| {
            vec![jitgate_policy::PolicyError {
                file: "workflows.toml".into(),
                line: 0,
                message,
            }]
        })?;
        Ok(policy)
    });
    match loaded {
        Ok(policy) => {
            app.replace_policy(policy);
            app.metrics.count_policy_reload("loaded");
            tracing::info!(policy = %dir.display(), "policy reloaded");
            record_loaded(app, dir).await;
            true
        }
        Err(errors) => {
            let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
            app.metrics.count_policy_reload("refused");
            tracing::error!(policy = %dir.display(), errors = %lines.join("; "), "changed policy is invalid; the previous one keeps serving");
            let comment = format!("{}: {}", dir.display(), lines.join("; "));
            if let Err(e) = app
                .store
                .append_events(&[crate::audit::system_event(EventKind::PolicyRefused, comment)])
                .await
            {
                tracing::error!(error = %e, "cannot record the refused policy in the audit log");
            }
            false
        }
    }
}

/// Watch for SIGHUP and for changes to the directory, forever.
pub async fn watch(app: Arc<App>, dir: PathBuf) {
    #[cfg(unix)]
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    let mut seen = fingerprint(&dir);
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        #[cfg(unix)]
        let signalled = async {
            match hangup.as_mut() {
                Some(s) => s.recv().await.is_some(),
                None => std::future::pending().await,
            }
        };
        #[cfg(not(unix))]
        let signalled = std::future::pending::<bool>();
        tokio::select! {
            got = signalled => {
                if got {
                    tracing::info!("SIGHUP: reloading the policy");
                    seen = fingerprint(&dir);
                    reload(&app, &dir).await;
                }
            }
            _ = tick.tick() => {
                let current = fingerprint(&dir);
                if current != seen {
                    seen = current;
                    reload(&app, &dir).await;
                }
            }
        }
    }
}
