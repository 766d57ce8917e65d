//! The sensor's protocol, shared by every role that speaks it: the daemon serves it, the
//! CLI, the integration tests and the developer tasks are its clients.
//!
//! It holds the types generated from `proto/sensor/v1/sensor.proto`, the connection to
//! the daemon's unix socket (with the check that the socket is root's, and advice when
//! it cannot be reached), and the JSON form of an event that the CLI prints. It does not
//! depend on the daemon, so a client builds without the scan engine.

pub mod client;

tonic::include_proto!("sensor.v1");

/// The same messages generated a second time, for the plain `Process` among them.
#[allow(dead_code, clippy::all)]
mod process_data {
    include!(concat!(env!("OUT_DIR"), "/process_data/sensor.v1.rs"));
}

/// The fields of a [`Process`].
pub use process_data::Process as ProcessData;

/// The process an event is about, as the events carry it: its fields behind a shared
/// pointer. The events of one process share one copy (a clone is a reference count), so
/// enrichment does not copy a command line and an ancestry per event, nor free them with
/// each event. Reads go through `Deref`; a write copies the fields first if they are
/// shared. On the wire and in JSON it is the plain `Process` message.
#[derive(Clone, Default, PartialEq)]
pub struct Process(std::sync::Arc<ProcessData>);

impl Process {
    /// Whether two events carry the very same copy (not only equal fields).
    pub fn shares(&self, other: &Process) -> bool {
        std::sync::Arc::ptr_eq(&self.0, &other.0)
    }
}

impl From<ProcessData> for Process {
    fn from(p: ProcessData) -> Self {
        Self(std::sync::Arc::new(p))
    }
}

impl std::ops::Deref for Process {
    type Target = ProcessData;
    fn deref(&self) -> &ProcessData {
        &self.0
    }
}

impl std::ops::DerefMut for Process {
    fn deref_mut(&mut self) -> &mut ProcessData {
        std::sync::Arc::make_mut(&mut self.0)
    }
}

impl std::fmt::Debug for Process {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl serde::Serialize for Process {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<'de> serde::Deserialize<'de> for Process {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        ProcessData::deserialize(d).map(Self::from)
    }
}

impl prost::Message for Process {
    fn encode_raw(&self, buf: &mut impl prost::bytes::BufMut) {
        self.0.encode_raw(buf)
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: prost::encoding::WireType,
        buf: &mut impl prost::bytes::Buf,
        ctx: prost::encoding::DecodeContext,
    ) -> Result<(), prost::DecodeError> {
        std::sync::Arc::make_mut(&mut self.0).merge_field(tag, wire_type, buf, ctx)
    }

    fn encoded_len(&self) -> usize {
        self.0.encoded_len()
    }

    fn clear(&mut self) {
        *self = Self::default();
    }
}

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

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;

    fn sample() -> ProcessData {
        ProcessData {
            pid: 7,
            tid: 8,
            exe: "/usr/bin/true".into(),
            args: vec!["true".into(), "-x".into()],
            ancestors: vec![Ancestor {
                pid: 1,
                start_time: 2,
                exe: "/sbin/init".into(),
            }],
            ..Default::default()
        }
    }

    #[test]
    fn shared_process_is_the_plain_message_on_the_wire_and_in_json() {
        let shared = Process::from(sample());
        assert_eq!(shared.encode_to_vec(), sample().encode_to_vec());
        assert_eq!(
            serde_json::to_value(&shared).unwrap(),
            serde_json::to_value(sample()).unwrap()
        );
        let event = Event {
            seq: 3,
            process: Some(shared),
            ..Default::default()
        };
        let back = Event::decode(event.encode_to_vec().as_slice()).unwrap();
        assert_eq!(back, event);
        assert_eq!(back.process.unwrap().args, sample().args);
    }

    #[test]
    fn writing_to_a_shared_process_leaves_the_other_copies_alone() {
        let a = Process::from(sample());
        let mut b = a.clone();
        b.exe = "/tmp/x".into();
        assert_eq!(a.exe, "/usr/bin/true");
        assert_eq!(b.exe, "/tmp/x");
    }
}
