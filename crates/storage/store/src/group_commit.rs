//! Group commit on SQLite: writes that arrive at the same moment (requests filed together,
//! provider deliveries recorded together, expiries settled together) go into one transaction
//! and share one durable commit (one fsync) instead of paying one each. Each caller is
//! answered only after the commit that holds its write, so nothing acknowledged can be lost;
//! a batch that fails is retried one write at a time, so one bad write cannot fail the others
//! and each caller gets its own answer.
//!
//! The writing happens in a task of its own, not in any caller's future: a caller that goes
//! away (its client disconnected) cannot leave the queue without a writer.

use crate::Result;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;

/// Writes in one transaction at most.
const MAX_BATCH: usize = 512;

/// One write waiting for its commit.
pub(crate) struct Job<T> {
    pub item: T,
    done: oneshot::Sender<Result<()>>,
}

/// Writes a batch in one transaction (`Err` leaves none of it written), handing the jobs back.
pub(crate) type WriteBatch<T> =
    Arc<dyn Fn(Vec<Job<T>>) -> Pin<Box<dyn Future<Output = (Vec<Job<T>>, Result<()>)> + Send>> + Send + Sync>;

struct Queue<T> {
    waiting: Vec<Job<T>>,
    /// A writer task is running and will take what is waiting.
    writing: bool,
}

pub(crate) struct GroupCommit<T> {
    queue: Arc<Mutex<Queue<T>>>,
    write: WriteBatch<T>,
}

impl<T> Clone for GroupCommit<T> {
    fn clone(&self) -> Self {
        GroupCommit {
            queue: self.queue.clone(),
            write: self.write.clone(),
        }
    }
}

impl<T: Send + 'static> GroupCommit<T> {
    pub fn new(write: WriteBatch<T>) -> Self {
        GroupCommit {
            queue: Arc::new(Mutex::new(Queue {
                waiting: Vec::new(),
                writing: false,
            })),
            write,
        }
    }

    /// Write `item`; answers once it is durably committed (or could not be).
    pub async fn submit(&self, item: T) -> Result<()> {
        let (done, answer) = oneshot::channel();
        let start_writer = {
            let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
            queue.waiting.push(Job { item, done });
            !std::mem::replace(&mut queue.writing, true)
        };
        if start_writer {
            tokio::spawn(self.clone().drain());
        }
        answer
            .await
            .map_err(|_| crate::StoreError::Corrupt("the database writer stopped".into()))?
    }

    /// Write batches until nobody waits.
    async fn drain(self) {
        // Should writing panic, later callers must not wait for a writer that is gone.
        let _reset = ResetOnPanic(self.queue.clone());
        loop {
            let batch: Vec<Job<T>> = {
                let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
                if queue.waiting.is_empty() {
                    queue.writing = false;
                    return;
                }
                let take = queue.waiting.len().min(MAX_BATCH);
                queue.waiting.drain(..take).collect()
            };
            let (batch, result) = (self.write)(batch).await;
            match result {
                Ok(()) => {
                    for job in batch {
                        let _ = job.done.send(Ok(()));
                    }
                }
                // The database is away: the same for every write, so each one says so now
                // rather than waiting to be tried alone.
                Err(e) if e.is_unavailable() => {
                    for job in batch {
                        let _ = job.done.send(Err(crate::StoreError::Unavailable(e.to_string())));
                    }
                }
                Err(_) if batch.len() > 1 => {
                    // Find which one fails: each alone, in order.
                    for job in batch {
                        let (mut one, result) = (self.write)(vec![job]).await;
                        if let Some(job) = one.pop() {
                            let _ = job.done.send(result);
                        }
                    }
                }
                Err(e) => {
                    if let Some(job) = batch.into_iter().next() {
                        let _ = job.done.send(Err(e));
                    }
                }
            }
        }
    }
}

/// Clears the writer mark and fails the waiting writes if the writer task panics.
struct ResetOnPanic<T>(Arc<Mutex<Queue<T>>>);

impl<T> Drop for ResetOnPanic<T> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let mut queue = self.0.lock().unwrap_or_else(|e| e.into_inner());
            queue.writing = false;
            for job in queue.waiting.drain(..) {
                let _ = job
                    .done
                    .send(Err(crate::StoreError::Corrupt("the database writer failed".into())));
            }
        }
    }
}
