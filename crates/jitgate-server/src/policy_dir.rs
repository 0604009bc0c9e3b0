//! Reading a policy directory from disk. Parsing and validation are the core's.

use jitgate_core::policy::{PolicyError, DIRECTORY_FILE, WORKFLOWS_FILE};
use jitgate_core::Policy;
use std::path::Path;

/// Load and validate the policy in `dir`.
pub fn load(dir: &Path) -> Result<Policy, Vec<PolicyError>> {
    let read = |name: &str| {
        std::fs::read_to_string(dir.join(name)).map_err(|e| {
            vec![PolicyError {
                file: dir.join(name).display().to_string(),
                line: 0,
                message: format!("cannot read: {e}"),
            }]
        })
    };
    let directory = read(DIRECTORY_FILE)?;
    let workflows = read(WORKFLOWS_FILE)?;
    // Name files by their path so `file:line` jumps straight to them from any directory.
    Policy::parse(&directory, &workflows).map_err(|errors| {
        errors
            .into_iter()
            .map(|e| PolicyError {
                file: dir.join(&e.file).display().to_string(),
                ..e
            })
            .collect()
    })
}
