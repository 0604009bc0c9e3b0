//! An HTTP endpoint on loopback that records every JSON POST it gets (webhooks, Slack
//! messages) and can be told to fail the next few.

use serde_json::Value;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

#[derive(Debug, Clone)]
pub struct Delivery {
    pub headers: HashMap<String, String>,
    pub body: Value,
    pub raw: String,
    pub at: chrono::DateTime<chrono::Utc>,
    pub answered: u16,
}

/// A webhook endpoint that records every delivery and fails the next `fail` of them.
pub struct Receiver {
    pub url: String,
    pub deliveries: Arc<Mutex<Vec<Delivery>>>,
    pub fail: Arc<AtomicUsize>,
}

pub fn receiver() -> Receiver {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let deliveries = Arc::new(Mutex::new(Vec::new()));
    let fail = Arc::new(AtomicUsize::new(0));
    let (log, failing) = (deliveries.clone(), fail.clone());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut headers = HashMap::new();
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            loop {
                line.clear();
                reader.read_line(&mut line).unwrap();
                let Some((name, value)) = line.trim_end().split_once(": ") else {
                    break;
                };
                headers.insert(name.to_ascii_lowercase(), value.to_string());
            }
            let length: usize = headers.get("content-length").map_or(0, |l| l.parse().unwrap());
            let mut body = vec![0u8; length];
            reader.read_exact(&mut body).unwrap();
            let raw = String::from_utf8(body).unwrap();
            let answered = if failing.load(Ordering::SeqCst) > 0 {
                failing.fetch_sub(1, Ordering::SeqCst);
                500
            } else {
                200
            };
            log.lock().unwrap().push(Delivery {
                headers,
                body: serde_json::from_str(&raw).unwrap_or(Value::String(raw.clone())),
                raw,
                at: chrono::Utc::now(),
                answered,
            });
            let _ = write!(
                stream,
                "HTTP/1.1 {answered} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
        }
    });
    Receiver { url, deliveries, fail }
}

impl Receiver {
    /// The bodies received so far (answered or not).
    pub fn bodies(&self) -> Vec<Value> {
        self.deliveries.lock().unwrap().iter().map(|d| d.body.clone()).collect()
    }
}
