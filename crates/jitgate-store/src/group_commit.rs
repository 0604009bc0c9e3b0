//! Group commit for new requests on SQLite: requests filed at the same moment are written in one
//! transaction, so they share one durable commit (one fsync) instead of paying one each. Each
//! caller is answered only after the commit that holds its request, so nothing acknowledged
//! can be lost; a batch that fails is retried one request at a time, so one bad request cannot
//! fail the others.
//!
//! The writing happens in a task of its own, not in any caller's future: a caller that goes
//! away (its client disconnected) cannot leave the queue without a writer.

use crate::Result;
use jitgate_core::{NewEvent, Request};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;

/// Requests written in one transaction at most.
const MAX_BATCH: usize = 512;

pub(crate) struct Filing {
    pub request: Request,
    pub events: Vec<NewEvent>,
    done: oneshot::Sender<Result<()>>,
}

/// Writes a batch in one transaction (`Err` leaves none of it written).
pub(crate) type WriteBatch =
    Arc<dyn Fn(Vec<Filing>) -> Pin<Box<dyn Future<Output = (Vec<Filing>, Result<()>)> + Send>> + Send + Sync>;

#[derive(Default)]
struct Queue {
    waiting: Vec<Filing>,
    /// A writer task is running and will take what is waiting.
    writing: bool,
}

#[derive(Clone)]
pub(crate) struct GroupCommit {
    queue: Arc<Mutex<Queue>>,
    write: WriteBatch,
}

impl GroupCommit {
    pub fn new(write: WriteBatch) -> Self {
        GroupCommit {
            queue: Arc::default(),
            write,
        }
    }

    /// Write `request` with its events; answers once it is durably committed.
    pub async fn file(&self, request: Request, events: Vec<NewEvent>) -> Result<()> {
        let (done, answer) = oneshot::channel();
        let start_writer = {
            let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
            queue.waiting.push(Filing { request, events, done });
            !std::mem::replace(&mut queue.writing, true)
        };
        if start_writer {
            tokio::spawn(self.clone().drain());
        }
        answer
            .await
            .map_err(|_| crate::StoreError::Corrupt("the request writer stopped".into()))?
    }

    /// Write batches until nobody waits.
    async fn drain(self) {
        loop {
            let batch: Vec<Filing> = {
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
                    for filing in batch {
                        let _ = filing.done.send(Ok(()));
                    }
                }
                Err(_) if batch.len() > 1 => {
                    // Find which one fails: each alone, in order.
                    for filing in batch {
                        let (mut one, result) = (self.write)(vec![filing]).await;
                        if let Some(filing) = one.pop() {
                            let _ = filing.done.send(result);
                        }
                    }
                }
                Err(e) => {
                    if let Some(filing) = batch.into_iter().next() {
                        let _ = filing.done.send(Err(e));
                    }
                }
            }
        }
    }
}
