//! Replicas on one PostgreSQL database: how each names itself. (Following the others'
//! changes is `background::replicas`.)

/// This replica's name for leases on background work: its host and listen address. Two live
/// replicas cannot share it (they could not bind the same address), and a replica restarted
/// in its place takes its own leases straight back instead of waiting them out.
pub fn name(listen: std::net::SocketAddr) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into());
    format!("{host}/{listen}")
}
