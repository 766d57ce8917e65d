//! Capture: draining the kernel's ring buffer into the pipeline.
//!
//! A dedicated thread polls the ring buffer, decodes each record and hands it to the next
//! stage over a bounded channel. When that stage falls behind, the send blocks, the ring
//! buffer fills and the kernel counts what it drops (per kind, in health): loss is bounded
//! and visible, never silent. Garbled records are counted and skipped.

use std::{
    os::fd::AsRawFd,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
        mpsc::SyncSender,
    },
    thread::JoinHandle,
};

use aya::maps::{MapData, RingBuf};

use crate::{
    decode::{Decoded, Decoder},
    health::Stats,
};

pub fn spawn(
    mut ring: RingBuf<MapData>,
    out: SyncSender<Decoded>,
    stats: Arc<Stats>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("capture".into())
        .spawn(move || {
            let fd = ring.as_raw_fd();
            let mut decoder = Decoder::default();
            while !stop.load(Ordering::Relaxed) {
                let mut pfd = libc::pollfd {
                    fd,
                    events: libc::POLLIN,
                    revents: 0,
                };
                // A short timeout so a stop request is seen promptly.
                // SAFETY: one valid pollfd.
                unsafe { libc::poll(&mut pfd, 1, 100) };
                while let Some(item) = ring.next() {
                    match decoder.decode(&item) {
                        Ok(d) => {
                            if let Some(k) = d.header.kind {
                                stats.received(k);
                            }
                            drop(item);
                            if out.send(d).is_err() {
                                return;
                            }
                        }
                        Err(e) => {
                            stats.decode_error(&e);
                        }
                    }
                }
            }
        })
}
