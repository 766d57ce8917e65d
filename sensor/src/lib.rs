//! The sensor daemon and its command-line client.
//!
//! The daemon's pipeline, in the order data flows (see [`daemon`] for the wiring):
//! capture ([`kernel`] programs, [`pipeline::capture`], [`decode`]) -> enrich ([`enrich`])
//! -> detect ([`detect`]) -> act ([`pipeline::act`]) -> publish ([`pipeline::publish`],
//! served by [`api`]).
//!
//! Beside it, [`antimalware`]: the scan engine, real-time protection over fanotify,
//! on-demand scans, and what is done with threats (quarantine, history, exclusions).
//! Threats join the pipeline as detections before publish, through
//! [`pipeline::input`], the one module both sides share.

pub(crate) mod antimalware;
pub(crate) mod api;
pub mod cli;
pub mod daemon;
pub(crate) mod decode;
pub mod detect;
pub(crate) mod enrich;
pub(crate) mod kernel;
pub(crate) mod pipeline;
pub(crate) mod safe_fs;
pub(crate) mod scope;

/// The protocol, generated from `proto/sensor/v1/sensor.proto` in its own crate so that
/// clients build without the daemon.
pub use sensor_proto as proto;
