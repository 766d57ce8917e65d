//! The daemon's event stream as a test sees it: gathered in the background, waited on
//! with a deadline, and summed up in failure messages.

use std::{
    path::Path,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{Result, bail};
use sensor_proto::{self as proto, Event};

use crate::daemon::client;

/// Events of the subscription, gathered in the background.
pub struct Collector {
    events: Arc<Mutex<Vec<Event>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Collector {
    /// Subscribes (the subscription is live when this returns) to events of `kinds` from
    /// this test process and its descendants.
    pub async fn start(socket: &Path, kinds: &[&str]) -> Result<Self> {
        let mut c = client(socket).await?;
        let req = proto::StreamEventsRequest {
            kinds: kinds.iter().map(|s| s.to_string()).collect(),
            pids: vec![std::process::id()],
            include_descendants: true,
            ..Default::default()
        };
        let mut stream = c.stream_events(req).await?.into_inner();
        let events = Arc::new(Mutex::new(Vec::new()));
        let sink = events.clone();
        let task = tokio::spawn(async move {
            while let Ok(Some(e)) = stream.message().await {
                sink.lock().unwrap().push(e);
            }
        });
        Ok(Self { events, task })
    }

    /// The first event matching `pred`, waiting up to `timeout`.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        pred: impl Fn(&Event) -> bool,
    ) -> Option<Event> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(e) = self.events.lock().unwrap().iter().find(|e| pred(e)) {
                return Some(e.clone());
            }
            if Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// `wait_for` that fails the test with what was seen.
    pub async fn expect(&self, what: &str, pred: impl Fn(&Event) -> bool) -> Event {
        self.try_expect(Duration::from_secs(10), what, pred)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// `wait_for` that returns an error naming what was seen last.
    pub async fn try_expect(
        &self,
        timeout: Duration,
        what: &str,
        pred: impl Fn(&Event) -> bool,
    ) -> Result<Event> {
        match self.wait_for(timeout, pred).await {
            Some(e) => Ok(e),
            None => {
                let seen: Vec<String> = self
                    .events
                    .lock()
                    .unwrap()
                    .iter()
                    .rev()
                    .take(40)
                    .map(summary)
                    .collect();
                bail!("no event: {what}\nlast events seen:\n{}", seen.join("\n"))
            }
        }
    }

    /// Waits for `pid`'s exit event, then a little longer, and fails the test if a
    /// detection `id` names `pid` or one of its children.
    pub async fn assert_quiet(&self, pid: u32, id: &str) {
        self.expect("exit of the benign look-alike", |e| {
            e.kind == "process_exit" && pid_of(e) == pid
        })
        .await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let noisy: Vec<_> = self
            .all()
            .into_iter()
            .filter(|e| is(e, id) && from(e, pid))
            .collect();
        assert!(noisy.is_empty(), "benign look-alike raised {id}: {noisy:?}");
    }

    pub fn all(&self) -> Vec<Event> {
        self.events.lock().unwrap().clone()
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One line per event for failure messages: the process without its ancestry.
pub fn summary(e: &Event) -> String {
    let mut v = sensor_proto::event_json(e);
    if let Some(p) = v.get_mut("process").and_then(|p| p.as_object_mut()) {
        p.retain(|k, _| matches!(k.as_str(), "pid" | "tid" | "ppid" | "exe" | "args"));
    }
    v.to_string()
}

/// Whether `e` is detection `id`.
pub fn is(e: &Event, id: &str) -> bool {
    e.detection.as_ref().is_some_and(|d| d.id == id)
}

/// Whether `e` is about `pid` or one of its children.
pub fn from(e: &Event, pid: u32) -> bool {
    e.process
        .as_ref()
        .is_some_and(|p| p.pid == pid || p.ppid == pid)
}

pub fn pid_of(e: &Event) -> u32 {
    e.process.as_ref().map_or(0, |p| p.pid)
}
