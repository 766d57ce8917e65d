//! Aggregate: repeats of one detection become one alert with a count.
//!
//! A rule that fires on every read of a file, or on every process a loop starts, would
//! otherwise bury the analyst (and the stream, and the store) under copies of one alert.
//! Detections are folded after blocking mode has acted on each of them, so aggregation
//! never spares a process, and before they are published.
//!
//! Two detections are the same when they have the same rule, the same executable under
//! the same parent process, and the same details (the file, the peer, the target, ...):
//! one process repeating itself is the commonest case of that. Different details are
//! different alerts: a second dropped payload or a second victim is never folded away.
//! The first is published at once, as always. Repeats within the window (counted from
//! the first) are counted, and the detection is published again as an update carrying
//! the same `first_seq`: at most once a second while repeats arrive, and once more when
//! the window closes with repeats not yet reported. A repeat after the window opens a new
//! detection, so something still happening an hour later is alerted again.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use crate::proto;

/// How often an open detection that keeps repeating is published again.
const UPDATE_INTERVAL: Duration = Duration::from_secs(1);

/// How often the open detections are looked at for updates and closing.
const SCAN_INTERVAL: Duration = Duration::from_millis(100);

/// Open detections tracked at once; beyond it the oldest is closed early (its update, if
/// due, is still published), so memory stays bounded under a storm of distinct ones.
const MAX_OPEN: usize = 4096;

/// Evidence sequence numbers an aggregated detection keeps.
const MAX_EVIDENCE: usize = 64;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Key {
    rule: String,
    exe: String,
    /// Parent (pid, start time); the same process keeps its parent until it is orphaned.
    parent: (u32, u64),
    /// The detection's details, sorted.
    details: Vec<(String, String)>,
}

impl Key {
    fn of(det: &proto::Event) -> Option<Self> {
        let d = det.detection.as_ref()?;
        let p = det.process.as_ref();
        Some(Self {
            rule: d.id.clone(),
            exe: p.map(|p| p.exe.clone()).unwrap_or_default(),
            parent: p
                .map(|p| (p.ppid, p.ancestors.first().map_or(0, |a| a.start_time)))
                .unwrap_or_default(),
            details: {
                let mut v: Vec<_> = d
                    .details
                    .iter()
                    .filter(|(k, _)| k.as_str() != LAST_PID)
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                v.sort_unstable();
                v
            },
        })
    }
}

/// The detail an update names the latest repeating process by.
const LAST_PID: &str = "last_pid";

struct Open {
    opened: Instant,
    last_sent: Instant,
    /// The detection as last published, with the count and evidence so far.
    current: proto::Event,
    /// Repeats counted since it was last published.
    pending: bool,
}

pub struct Aggregator {
    window: Duration,
    open: HashMap<Key, Open>,
    /// Updates of detections closed early, published with the next [`Aggregator::due`].
    closed: Vec<proto::Event>,
    next_scan: Option<Instant>,
    merged: u64,
}

impl Aggregator {
    /// `window` zero: every detection is published on its own.
    pub fn new(window: Duration) -> Self {
        Self {
            window,
            open: HashMap::new(),
            closed: Vec::new(),
            next_scan: None,
            merged: 0,
        }
    }

    /// Detections folded as repeats so far.
    pub fn merged(&self) -> u64 {
        self.merged
    }

    /// The detection to publish (then hand the published copy to [`Aggregator::opened`]),
    /// or none when it was counted into an open one.
    pub fn admit(&mut self, mut det: proto::Event, now: Instant) -> Option<proto::Event> {
        let Some(key) = self.tracked(&det) else {
            return Some(det);
        };
        let Some(open) = self
            .open
            .get_mut(&key)
            .filter(|o| now.duration_since(o.opened) < self.window)
        else {
            return Some(det);
        };
        let (Some(cur), Some(new)) = (open.current.detection.as_mut(), det.detection.take()) else {
            return Some(det);
        };
        cur.count += 1;
        cur.last_seen_unix_ns = det.time_unix_ns;
        for seq in new.evidence {
            if cur.evidence.len() < MAX_EVIDENCE {
                cur.evidence.push(seq);
            } else if let Some(last) = cur.evidence.last_mut() {
                *last = seq;
            }
        }
        if new.action != "none" {
            cur.action = new.action;
        }
        if let Some(p) = &det.process {
            cur.details.insert(LAST_PID.into(), p.pid.to_string());
        }
        open.current.timestamp_ns = det.timestamp_ns;
        open.current.time_unix_ns = det.time_unix_ns;
        open.pending = true;
        self.merged += 1;
        None
    }

    /// Records a new detection as published (numbered, with its count and times set by
    /// [`first_publication`]), opening its window.
    pub fn opened(&mut self, published: &proto::Event, now: Instant) {
        let Some(key) = self.tracked(published) else {
            return;
        };
        if self.open.len() >= MAX_OPEN && !self.open.contains_key(&key) {
            self.close_oldest();
        }
        self.open.insert(
            key,
            Open {
                opened: now,
                last_sent: now,
                current: published.clone(),
                pending: false,
            },
        );
    }

    /// Updates to publish now; closes the detections whose window has passed. Cheap to
    /// call after every batch: the open detections are looked at every [`SCAN_INTERVAL`].
    pub fn due(&mut self, now: Instant) -> Vec<proto::Event> {
        if self.next_scan.is_some_and(|t| now < t) && self.closed.is_empty() {
            return Vec::new();
        }
        self.next_scan = Some(now + SCAN_INTERVAL);
        self.updates(now, false)
    }

    /// Every update not yet published, closing every detection: for the end of the stream.
    pub fn close_all(&mut self) -> Vec<proto::Event> {
        self.updates(Instant::now(), true)
    }

    fn updates(&mut self, now: Instant, close: bool) -> Vec<proto::Event> {
        let mut out = std::mem::take(&mut self.closed);
        let window = self.window;
        self.open.retain(|_, o| {
            let expired = close || now.duration_since(o.opened) >= window;
            if o.pending && (expired || now.duration_since(o.last_sent) >= UPDATE_INTERVAL) {
                o.pending = false;
                o.last_sent = now;
                out.push(o.current.clone());
            }
            !expired
        });
        out
    }

    fn tracked(&self, det: &proto::Event) -> Option<Key> {
        (!self.window.is_zero()).then(|| Key::of(det)).flatten()
    }

    fn close_oldest(&mut self) {
        let Some(key) = self
            .open
            .iter()
            .min_by_key(|(_, o)| o.opened)
            .map(|(k, _)| k.clone())
        else {
            return;
        };
        if let Some(o) = self.open.remove(&key).filter(|o| o.pending) {
            self.closed.push(o.current);
        }
    }
}

/// A detection's own count, sequence and times on its first publication, `seq` being the
/// number it was just given.
pub fn first_publication(det: &mut proto::Event, seq: u64) {
    let time = det.time_unix_ns;
    if let Some(d) = det.detection.as_mut()
        && d.first_seq == 0
    {
        d.count = 1;
        d.first_seq = seq;
        d.first_seen_unix_ns = time;
        d.last_seen_unix_ns = time;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn detection(rule: &str, pid: u32, ppid: u32, evidence: u64) -> proto::Event {
        proto::Event {
            kind: "detection".into(),
            time_unix_ns: evidence * 1_000,
            process: Some(
                proto::ProcessData {
                    pid,
                    ppid,
                    exe: "/usr/bin/cat".into(),
                    ancestors: vec![proto::Ancestor {
                        pid: ppid,
                        start_time: 5,
                        exe: "/bin/sh".into(),
                    }],
                    ..Default::default()
                }
                .into(),
            ),
            detection: Some(proto::Detection {
                id: rule.into(),
                evidence: vec![evidence],
                action: "none".into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// Publishes what `admit` lets through, numbered by its evidence (which the tests
    /// keep unique among published detections).
    fn publish(agg: &mut Aggregator, det: proto::Event, now: Instant) -> bool {
        match agg.admit(det, now) {
            Some(mut d) => {
                let seq = d.detection.as_ref().map_or(0, |d| d.evidence[0]);
                d.seq = seq;
                first_publication(&mut d, seq);
                agg.opened(&d, now);
                true
            }
            None => false,
        }
    }

    #[test]
    fn repeats_fold_into_one_detection_updated_at_most_once_a_second() {
        let t0 = Instant::now();
        let mut agg = Aggregator::new(Duration::from_secs(300));
        let mut published = 0;
        for i in 0..10_000u64 {
            let now = t0 + Duration::from_micros(i * 300);
            // Processes of one executable under one parent: a loop in a shell.
            let det = detection("SNS-0007", 100 + (i % 7) as u32, 9, i + 1);
            if publish(&mut agg, det, now) {
                published += 1;
            }
            published += agg.due(now).len();
        }
        // 3 s of repeats: the first, then one update per elapsed second.
        assert!((1..=4).contains(&published), "{published}");
        assert_eq!(agg.merged(), 9_999);
        let last = agg.due(t0 + Duration::from_secs(5));
        let d = last[0].detection.as_ref().unwrap();
        assert_eq!(d.count, 10_000);
        assert_eq!(d.first_seq, 1);
        assert_eq!(d.first_seen_unix_ns, 1_000);
        assert_eq!(d.last_seen_unix_ns, 10_000_000);
        assert_eq!(d.evidence.len(), MAX_EVIDENCE);
        assert_eq!(d.evidence[..3], [1, 2, 3]);
        assert_eq!(d.evidence.last(), Some(&10_000));
        // Nothing new to say: no further update.
        assert!(agg.due(t0 + Duration::from_secs(7)).is_empty());
    }

    #[test]
    fn distinct_detections_are_never_folded() {
        let now = Instant::now();
        let mut agg = Aggregator::new(Duration::from_secs(300));
        assert!(publish(&mut agg, detection("SNS-0007", 10, 9, 1), now));
        // Another rule, another parent, another executable: each its own detection.
        assert!(publish(&mut agg, detection("SNS-0011", 10, 9, 2), now));
        assert!(publish(&mut agg, detection("SNS-0007", 11, 8, 3), now));
        let mut other = detection("SNS-0007", 10, 9, 4);
        if let Some(p) = other.process.as_mut() {
            p.exe = "/usr/bin/head".into();
        }
        assert!(publish(&mut agg, other, now));
        // The same process on another file (another payload, another victim).
        let mut elsewhere = detection("SNS-0007", 10, 9, 5);
        if let Some(d) = elsewhere.detection.as_mut() {
            d.details
                .insert("path".into(), "/root/.ssh/id_ed25519".into());
        }
        assert!(publish(&mut agg, elsewhere, now));
        assert!(!publish(&mut agg, detection("SNS-0007", 10, 9, 5), now));
    }

    #[test]
    fn a_repeat_after_the_window_is_a_new_detection() {
        let t0 = Instant::now();
        let mut agg = Aggregator::new(Duration::from_secs(60));
        assert!(publish(&mut agg, detection("SNS-0007", 10, 9, 1), t0));
        assert!(!publish(&mut agg, detection("SNS-0007", 10, 9, 2), t0));
        // The window closes with a repeat unreported: one last update says so.
        let closing = agg.due(t0 + Duration::from_secs(61));
        assert_eq!(closing.len(), 1);
        assert_eq!(closing[0].detection.as_ref().unwrap().count, 2);
        let later = t0 + Duration::from_secs(62);
        assert!(publish(&mut agg, detection("SNS-0007", 10, 9, 3), later));
    }

    #[test]
    fn no_window_publishes_everything_and_keeps_nothing() {
        let now = Instant::now();
        let mut agg = Aggregator::new(Duration::ZERO);
        for i in 0..3 {
            assert!(publish(&mut agg, detection("SNS-0007", 10, 9, i), now));
        }
        assert!(agg.open.is_empty());
    }

    #[test]
    fn open_detections_are_bounded_and_the_oldest_closes_with_its_update() {
        let t0 = Instant::now();
        let mut agg = Aggregator::new(Duration::from_secs(300));
        assert!(publish(&mut agg, detection("SNS-0007", 1, 1, 1), t0));
        assert!(!publish(&mut agg, detection("SNS-0007", 1, 1, 2), t0));
        for i in 2..=MAX_OPEN as u32 + 1 {
            let now = t0 + Duration::from_millis(u64::from(i));
            assert!(publish(&mut agg, detection("SNS-0007", i, i, 3), now));
        }
        assert_eq!(agg.open.len(), MAX_OPEN);
        let due = agg.due(t0 + Duration::from_millis(500));
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].detection.as_ref().unwrap().count, 2);
    }
}
