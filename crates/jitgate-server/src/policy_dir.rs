//! Reading a policy directory from disk: the policy crate does it all.

use jitgate_policy::{Policy, PolicyError};
use std::path::Path;

/// Load and validate the policy in `dir`.
pub fn load(dir: &Path) -> Result<Policy, Vec<PolicyError>> {
    Policy::load(dir)
}
