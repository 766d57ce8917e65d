//! Built events replayed through the whole engine, for the detectors' unit tests: a
//! detector is tested by its behaviour (events in, detections out), with the other
//! detectors and the default configuration around it, as the daemon runs it.

use sensor_testkit::events::numbered;

use super::{DetectConfig, DetectionEngine};
use crate::proto;

/// The ids of the detections `events` raise, in order, after numbering them as capture
/// would (sequence numbers; a millisecond apart unless they carry their own time).
pub(crate) fn detection_ids(events: Vec<proto::Event>) -> Vec<String> {
    let mut engine = DetectionEngine::new(DetectConfig::default());
    numbered(events)
        .iter()
        .flat_map(|e| engine.observe(e))
        .filter_map(|d| d.detection.map(|d| d.id))
        .collect()
}

/// Whether `events` raise detection `id`.
pub(crate) fn raises(id: &str, events: Vec<proto::Event>) -> bool {
    detection_ids(events).iter().any(|d| d == id)
}
