//! The pipeline after capture, run in order on each record by one thread:
//! enrich (process table) -> detect -> act (blocking mode) -> publish (detections
//! aggregated first, so repeats become one alert with a count).
//!
//! Records arrive through [`input`]; capture reads the kernel on its own thread
//! ([`capture`]) and detections made by the antimalware side come in beside them. A
//! detection gets its sequence number after the event it cites, so clients can follow
//! the evidence.

pub mod act;
pub mod aggregate;
pub mod capture;
pub mod input;
pub mod publish;
pub mod stats;
pub mod stream;

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
        mpsc::{Receiver, RecvTimeoutError},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use act::Responder;
use aggregate::Aggregator;
use input::Input;
use publish::Publisher;
use stats::Stats;

use crate::{
    decode::Decoded,
    detect::{DetectionEngine, DetectionStore},
    enrich::Enricher,
    proto,
};

/// The stages after capture, in the order each record goes through them.
pub struct Stages {
    pub enricher: Enricher,
    pub detector: DetectionEngine,
    pub responder: Responder,
    pub aggregator: Aggregator,
    pub publisher: Publisher,
    pub detections: DetectionStore,
}

impl Stages {
    fn run(&mut self, d: Decoded) {
        let mut event = self.enricher.enrich(d);
        event.seq = self.publisher.next_seq();
        let mut found = self.detector.observe(&event);
        for det in &mut found {
            self.responder.respond(&event, det, &self.enricher.table);
        }
        self.publisher.publish(event);
        if found.is_empty() {
            return;
        }
        let now = Instant::now();
        for det in found {
            if let Some(det) = self.aggregator.admit(det, now) {
                let published = self.publish_detection(det);
                self.aggregator.opened(&published, now);
            }
        }
    }

    /// Publishes the updates of repeating detections that are due (all of them at the
    /// end, `close`).
    fn flush_aggregates(&mut self, close: bool) {
        let updates = if close {
            self.aggregator.close_all()
        } else {
            self.aggregator.due(Instant::now())
        };
        for update in updates {
            self.publish_detection(update);
        }
    }

    fn publish_detection(&mut self, mut det: proto::Event) -> Arc<proto::Event> {
        let seq = self.publisher.next_seq();
        det.seq = seq;
        aggregate::first_publication(&mut det, seq);
        let det = self.publisher.publish(det);
        self.detections.push(det.clone());
        det
    }

    /// A detection made outside the kernel pipeline: its process gets the ancestry the
    /// process table knows.
    fn run_detection(&mut self, mut det: proto::Event) {
        if let Some(p) = &det.process
            && let Some(known) = self.enricher.process_of(p.pid, p.start_time)
        {
            det.process = Some(known);
        }
        self.publish_detection(det);
    }

    /// Table and hash figures for health, which the pipeline thread alone can read.
    fn report(&self, stats: &Stats) {
        let e = &self.enricher;
        *stats.table.lock().unwrap() = e.table.stats();
        stats
            .hash_cache_size
            .store(e.hash_cache_len() as u64, Ordering::Relaxed);
        stats
            .hashes_computed
            .store(e.hashes_computed(), Ordering::Relaxed);
        stats
            .detections_merged
            .store(self.aggregator.merged(), Ordering::Relaxed);
    }
}

/// Runs the stages on their own thread until every sender of `input` is gone, or until
/// `finish` is set and nothing has arrived for a poll period. The daemon sets `finish`
/// once the producers have stopped, so what they queued is still published; it need not
/// wait for the last clone of a sender to be dropped somewhere.
pub(crate) fn spawn(
    input: Receiver<Input>,
    mut stages: Stages,
    stats: Arc<Stats>,
    finish: Arc<AtomicBool>,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("pipeline".into())
        .spawn(move || {
            let mut last_report: Option<Instant> = None;
            loop {
                // Reported before the first event too: health shows the seeded table at once.
                if last_report.is_none_or(|t| t.elapsed() > Duration::from_millis(100)) {
                    last_report = Some(Instant::now());
                    stages.report(&stats);
                }
                match input.recv_timeout(Duration::from_millis(100)) {
                    Ok(Input::Records(batch)) => {
                        // Rules installed before these records were read apply to them.
                        stages.detector.refresh();
                        batch.into_iter().for_each(|d| stages.run(d))
                    }
                    Ok(Input::Detection(d)) => stages.run_detection(*d),
                    Err(RecvTimeoutError::Timeout) if finish.load(Ordering::Acquire) => break,
                    Err(RecvTimeoutError::Timeout) => {
                        stages.enricher.table.evict_exited(Instant::now())
                    }
                    Err(RecvTimeoutError::Disconnected) => break,
                }
                stages.flush_aggregates(false);
            }
            // What repeated since its last update is told before the stream ends.
            stages.flush_aggregates(true);
        })
}
