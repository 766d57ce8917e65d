//! What enters the pipeline thread, and the two doors it comes through.
//!
//! Capture hands over batches of kernel records; real-time protection and scans hand over
//! detections they made themselves, which still need a sequence number and the process
//! tree. Each producer gets only its own door ([`RecordSender`], [`DetectionSender`]), so
//! the antimalware side never sees kernel records and can run without the daemon. This
//! module sits below every stage and imports none of them.

use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use crate::{decode::Decoded, proto};

/// Batches in flight between the producers and the pipeline thread: when it falls behind,
/// producers wait, and the kernel's ring buffer absorbs (and counts) the rest.
const CAPACITY: usize = 64;

pub(crate) enum Input {
    Records(Vec<Decoded>),
    Detection(Box<proto::Event>),
}

/// The pipeline has stopped: nothing sent from now on is read.
#[derive(Debug)]
pub struct Closed;

/// Capture's door: batches of decoded kernel records.
pub struct RecordSender(SyncSender<Input>);

impl RecordSender {
    /// Waits while the pipeline is full.
    pub fn send(&self, batch: Vec<Decoded>) -> Result<(), Closed> {
        self.0.send(Input::Records(batch)).map_err(|_| Closed)
    }
}

/// The door for detections made outside the kernel pipeline (real-time protection,
/// on-demand scans).
#[derive(Clone)]
pub struct DetectionSender(SyncSender<Input>);

impl DetectionSender {
    /// Waits while the pipeline is full.
    pub fn send(&self, detection: proto::Event) -> Result<(), Closed> {
        self.0
            .send(Input::Detection(Box::new(detection)))
            .map_err(|_| Closed)
    }

    /// A sender whose detections are read from the returned receiver, for testing a
    /// producer on its own.
    #[cfg(test)]
    pub(crate) fn detached() -> (Self, Receiver<Input>) {
        let (tx, rx) = sync_channel(CAPACITY);
        (Self(tx), rx)
    }
}

/// The pipeline's input: the receiving end stays with the pipeline thread. It ends when
/// both senders (and every clone) are gone.
pub(crate) fn channel() -> (RecordSender, DetectionSender, Receiver<Input>) {
    let (tx, rx) = sync_channel(CAPACITY);
    (RecordSender(tx.clone()), DetectionSender(tx), rx)
}
