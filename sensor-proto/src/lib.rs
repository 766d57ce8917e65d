//! The sensor's protocol, shared by every role that speaks it: the daemon serves it, the
//! CLI, the integration tests and the developer tasks are its clients.
//!
//! It holds the types generated from `proto/sensor/v1/sensor.proto`, the connection to
//! the daemon's unix socket (with the check that the socket is root's, and advice when
//! it cannot be reached), and the JSON form of an event that the CLI prints. It does not
//! depend on the daemon, so a client builds without the scan engine.

pub mod client;

tonic::include_proto!("sensor.v1");

/// Encoded descriptors, served by gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("sensor_descriptor");

/// The event as JSON without the parts that do not apply to its kind.
pub fn event_json(e: &Event) -> serde_json::Value {
    let mut v = serde_json::to_value(e).unwrap_or(serde_json::Value::Null);
    strip_nulls(&mut v);
    v
}

fn strip_nulls(v: &mut serde_json::Value) {
    use serde_json::Value;
    match v {
        Value::Object(m) => {
            m.retain(|_, x| !x.is_null());
            m.values_mut().for_each(strip_nulls);
        }
        Value::Array(a) => a.iter_mut().for_each(strip_nulls),
        _ => {}
    }
}
