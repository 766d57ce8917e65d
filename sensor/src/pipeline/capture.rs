//! Capture: draining the kernel's ring buffer into the pipeline.
//!
//! A dedicated thread polls the ring buffer, decodes each record and hands batches to the
//! next stage over a bounded channel. The kernel does not wake the reader per record
//! (see `wakeup()` in the eBPF crate): the thread polls every [`POLL_MS`] and is woken
//! early only when the buffer fills up, so a busy machine pays one wakeup per batch, not
//! per event. When that stage falls behind, the send blocks, the ring
//! buffer fills and the kernel counts what it drops (per kind, in health): loss is bounded
//! and visible, never silent. Garbled records are counted and skipped.

use std::{
    os::fd::AsRawFd,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
};

use aya::maps::{MapData, RingBuf};

use super::{input::RecordSender, stats::Stats};
use crate::decode;

/// Poll period: the upper bound this stage adds to event latency.
pub const POLL_MS: i32 = 10;
/// Records handed over at once. With the input channel's bound (64 batches) this caps
/// the records decoded but not yet published, which the daemon's peak memory follows
/// when the pipeline falls behind: at 256, a file storm parked 16k decoded records
/// (some 30 MB of heap) in flight; at 128, 8k. A longer backlog waits in the ring
/// buffer, whose memory is fixed.
const BATCH: usize = 128;

pub fn spawn(
    mut ring: RingBuf<MapData>,
    out: RecordSender,
    stats: Arc<Stats>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("capture".into())
        .spawn(move || {
            let fd = ring.as_raw_fd();
            while !stop.load(Ordering::Relaxed) {
                let mut pfd = libc::pollfd {
                    fd,
                    events: libc::POLLIN,
                    revents: 0,
                };
                // Also bounds how long a stop request waits.
                // SAFETY: one valid pollfd.
                unsafe { libc::poll(&mut pfd, 1, POLL_MS) };
                let mut batch = Vec::with_capacity(BATCH);
                while let Some(item) = ring.next() {
                    match decode::decode(&item) {
                        Ok(d) => {
                            if let Some(k) = d.header.kind {
                                stats.received(k);
                                stats.paths_truncated(k, d.paths_truncated);
                            }
                            batch.push(d);
                        }
                        Err(e) => stats.decode_error(&e),
                    }
                    drop(item);
                    if batch.len() == BATCH {
                        let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
                        if out.send(full).is_err() {
                            return;
                        }
                    }
                }
                if !batch.is_empty() && out.send(batch).is_err() {
                    return;
                }
            }
        })
}
