//! Loopback ports for the servers the tests start (jitgate, PostgreSQL, haproxy, chromedriver,
//! the proxies, sshd), handed out so that nothing else can take one between the handing out
//! and the server's bind, or while a test has its server down (a kill and restart, a paused
//! PostgreSQL).
//!
//! Binding port 0 and closing it leaves the port to whoever comes next: any `bind(0)` or
//! outgoing `connect()` on the machine may be given it by the kernel. So the ports come from
//! outside the kernel's ephemeral range (`/proc/sys/net/ipv4/ip_local_port_range`), which the
//! kernel never hands to anyone by itself, and never go out twice:
//! - within this process, a counter walks them and never goes back;
//! - between processes (test binaries of other checkouts running at the same time), the range
//!   is cut into blocks, and a process walks only blocks it holds a lock on
//!   (`$TMPDIR/jitgate-test-ports/block-N`, locked until the process exits), starting at a
//!   block derived from its pid;
//! - a port that something outside the tests already listens on fails a test bind, and is
//!   skipped.
//!
//! Included from postgres.rs, so that crates/storage/store/tests/store.rs, which includes that
//! file on its own, gets the same ports.

use std::fs::File;
use std::net::{Ipv4Addr, TcpListener};
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Mutex;

/// Ports per block: one lock file, and one open file, per this many servers.
const BLOCK: u16 = 100;

/// Where the ports come from when the ephemeral range leaves room below it (Linux's default
/// range starts at 32768): clear of the well-known ports and of most fixed service ports.
const BELOW: Range<u16> = 20_000..32_000;

/// The fewest ports a range outside the ephemeral one must have to be used.
const ENOUGH: u32 = 2_000;

struct Allocator {
    /// The block to try claiming next, counted from the pid-derived first one.
    blocks_tried: u32,
    /// The next port to hand out and the end of the block it is in.
    next: u16,
    end: u16,
    /// The locks on the blocks claimed, held while the process lives.
    held: Vec<File>,
}

static PORTS: Mutex<Allocator> = Mutex::new(Allocator {
    blocks_tried: 0,
    next: 0,
    end: 0,
    held: Vec::new(),
});
/// The non-ephemeral range the blocks cut, or `None` when there is none (then the kernel
/// picks, as for `bind(0)`).
static RANGE: std::sync::OnceLock<Option<Range<u16>>> = std::sync::OnceLock::new();

/// A loopback port no other process listens on, which the kernel will give nobody and this
/// process has handed out to no one before.
pub fn free_port() -> u16 {
    let Some(range) = RANGE.get_or_init(non_ephemeral_range) else {
        return kernel_port();
    };
    let mut ports = PORTS.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    loop {
        while ports.next < ports.end {
            let port = ports.next;
            ports.next += 1;
            if bindable(port) {
                return port;
            }
        }
        ports.claim_block(range);
    }
}

impl Allocator {
    /// Claim the next block no other process holds: its lock stays held until this process
    /// exits (the kernel drops it then, whatever way the process ends).
    fn claim_block(&mut self, range: &Range<u16>) {
        let blocks = u32::from((range.end - range.start) / BLOCK);
        assert!(
            self.blocks_tried < blocks,
            "every test port in {range:?} is taken: {blocks} blocks of {BLOCK}, each locked by \
             another process or handed out by this one"
        );
        let first = std::process::id() % blocks;
        let block = (first + self.blocks_tried) % blocks;
        self.blocks_tried += 1;
        let start = range.start + u16::try_from(block).unwrap_or(0) * BLOCK;
        if let Some(lock) = lock_block(start) {
            match lock.try_lock() {
                Ok(()) => self.held.push(lock),
                // Another test process walks this block: leave it to it.
                Err(std::fs::TryLockError::WouldBlock) => return,
                // A file system without locks: the test binds still keep the ports apart
                // from running servers.
                Err(std::fs::TryLockError::Error(_)) => {}
            }
        }
        self.next = start;
        self.end = start + BLOCK;
    }
}

/// The lock file of the block starting at `start`, or `None` when the directory cannot be
/// made (the block is then used unlocked).
fn lock_block(start: u16) -> Option<File> {
    let dir: PathBuf = std::env::temp_dir().join("jitgate-test-ports");
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join(format!("block-{start}"));
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        // Another user's run left the directory or the file: a lock on a read-only
        // descriptor is as good.
        .or_else(|_| File::open(&path))
        .ok()
}

/// Nothing listens on `port` on the loopback, IPv4 or IPv6 (a server on `[::]` holds both).
fn bindable(port: u16) -> bool {
    if TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_err() {
        return false;
    }
    match TcpListener::bind((std::net::Ipv6Addr::LOCALHOST, port)) {
        Ok(_) => true,
        // Only a listener there makes the port taken. No IPv6 loopback, or IPv6 turned off
        // in the kernel (EADDRNOTAVAIL, EAFNOSUPPORT): nothing can listen there either.
        Err(e) => e.kind() != std::io::ErrorKind::AddrInUse,
    }
}

/// The old way, for a machine whose ephemeral range leaves no room: the port the kernel
/// picks for `bind(0)`, free when asked.
fn kernel_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind a loopback port");
    listener.local_addr().expect("its address").port()
}

/// The ports outside the kernel's ephemeral range to use: below it when there is room (the
/// usual case), else above it; `None` when neither side has room enough.
fn non_ephemeral_range() -> Option<Range<u16>> {
    let text = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
    let mut bounds = text.split_whitespace().map(str::parse::<u32>);
    let (Some(Ok(low)), Some(Ok(high))) = (bounds.next(), bounds.next()) else {
        return None;
    };
    let below = u32::from(BELOW.start)..u32::from(BELOW.end).min(low);
    let above = (high + 1).max(u32::from(BELOW.start))..65_000;
    [below, above]
        .into_iter()
        .find(|r| r.end > r.start && r.end - r.start >= ENOUGH)
        .and_then(|r| Some(u16::try_from(r.start).ok()?..u16::try_from(r.end).ok()?))
}

#[test]
fn ports_are_outside_the_ephemeral_range_and_never_given_twice() {
    let ports: Vec<u16> = (0..250).map(|_| free_port()).collect();
    let mut unique = ports.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), ports.len(), "a port handed out twice: {ports:?}");
    if let Some(range) = non_ephemeral_range() {
        assert!(
            ports.iter().all(|p| range.contains(p)),
            "{ports:?} not all in {range:?}"
        );
        // The kernel's own choice is never one of them.
        let kernel: Vec<u16> = (0..50).map(|_| kernel_port()).collect();
        assert!(kernel.iter().all(|p| !range.contains(p)), "{kernel:?} in {range:?}");
    }
}
