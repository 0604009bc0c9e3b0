//! The service's own work over time, each a task over [`App`](crate::App) that the server
//! starts: expiry of requests and grants, policy reloads, following other replicas, saying
//! when the database's history diverged, signed checkpoints and denied-check windows of the
//! audit log. The service never calls into this folder; these tasks call the service.

pub mod checkpoints;
pub mod denied_checks;
pub mod divergence;
pub mod expiry;
pub mod policy;
pub mod replicas;
