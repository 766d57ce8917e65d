//! How the sensor's events present themselves to Sigma: the log source categories they
//! stand for, the Sysmon-style field names each category carries, and a view that answers
//! the engine's field lookups straight from the protobuf event.

use std::{borrow::Cow, cell::OnceCell};

use rsigma_eval::EventValue;
use sensor_common::EventKind;

use crate::proto;

/// The Sigma log source categories the sensor's events can stand for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Category {
    ProcessCreation,
    FileEvent,
    FileDelete,
    FileRename,
    NetworkConnection,
    /// `service: auditd`: events shown as auditd records ([`super::auditd`]).
    Auditd,
}

impl Category {
    pub(super) const ALL: [Category; 6] = [
        Category::ProcessCreation,
        Category::FileEvent,
        Category::FileDelete,
        Category::FileRename,
        Category::NetworkConnection,
        Category::Auditd,
    ];

    pub(super) fn name(self) -> &'static str {
        match self {
            Category::ProcessCreation => "process_creation",
            Category::FileEvent => "file_event",
            Category::FileDelete => "file_delete",
            Category::FileRename => "file_rename",
            Category::NetworkConnection => "network_connection",
            Category::Auditd => "auditd",
        }
    }

    /// The category an event of this kind stands for, if any.
    pub(super) fn of_kind(kind: EventKind) -> Option<Self> {
        Some(match kind {
            EventKind::ProcessExec => Category::ProcessCreation,
            EventKind::FileCreate | EventKind::FileWrite => Category::FileEvent,
            EventKind::FileUnlink => Category::FileDelete,
            EventKind::FileRename => Category::FileRename,
            EventKind::NetConnect | EventKind::NetAccept => Category::NetworkConnection,
            _ => return None,
        })
    }

    /// The Sigma fields an event of this category can carry.
    fn fields(self) -> &'static [Field] {
        use Field::*;
        match self {
            Category::ProcessCreation => &[
                Image,
                CommandLine,
                ParentImage,
                ParentCommandLine,
                User,
                ProcessId,
                ParentProcessId,
                CurrentDirectory,
            ],
            Category::FileEvent | Category::FileDelete => &[TargetFilename, Image, User, ProcessId],
            Category::FileRename => &[SourceFilename, TargetFilename, Image, User, ProcessId],
            Category::NetworkConnection => &[
                DestinationIp,
                DestinationPort,
                SourceIp,
                SourcePort,
                Protocol,
                Initiated,
                Image,
                User,
                ProcessId,
            ],
            // Its records have their own fields.
            Category::Auditd => &[],
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Field {
    Image,
    CommandLine,
    ParentImage,
    ParentCommandLine,
    User,
    ProcessId,
    ParentProcessId,
    CurrentDirectory,
    TargetFilename,
    SourceFilename,
    DestinationIp,
    DestinationPort,
    SourceIp,
    SourcePort,
    Protocol,
    Initiated,
}

impl Field {
    fn name(self) -> &'static str {
        match self {
            Field::Image => "Image",
            Field::CommandLine => "CommandLine",
            Field::ParentImage => "ParentImage",
            Field::ParentCommandLine => "ParentCommandLine",
            Field::User => "User",
            Field::ProcessId => "ProcessId",
            Field::ParentProcessId => "ParentProcessId",
            Field::CurrentDirectory => "CurrentDirectory",
            Field::TargetFilename => "TargetFilename",
            Field::SourceFilename => "SourceFilename",
            Field::DestinationIp => "DestinationIp",
            Field::DestinationPort => "DestinationPort",
            Field::SourceIp => "SourceIp",
            Field::SourcePort => "SourcePort",
            Field::Protocol => "Protocol",
            Field::Initiated => "Initiated",
        }
    }
}

/// One event as the Sigma engine sees it: a flat record of the category's fields.
pub(super) struct View<'a> {
    category: Category,
    /// An accepted connection, whose local end Sysmon calls the destination.
    inbound: bool,
    event: &'a proto::Event,
    command_line: OnceCell<String>,
    parent_command_line: OnceCell<String>,
}

/// A string field; empty means the sensor does not know it, which Sigma calls absent.
fn text(s: &str) -> Option<EventValue<'_>> {
    (!s.is_empty()).then_some(EventValue::Str(Cow::Borrowed(s)))
}

fn number(n: u32) -> Option<EventValue<'static>> {
    Some(EventValue::Int(n.into()))
}

impl<'a> View<'a> {
    pub(super) fn new(category: Category, kind: EventKind, event: &'a proto::Event) -> Self {
        Self {
            category,
            inbound: kind == EventKind::NetAccept,
            event,
            command_line: OnceCell::new(),
            parent_command_line: OnceCell::new(),
        }
    }

    fn value(&self, field: Field) -> Option<EventValue<'_>> {
        let e = self.event;
        let process = e.process.as_ref();
        let file = e.file.as_ref();
        let net = e.net.as_ref();
        // Sysmon's convention: the source is the side that opened the connection, so on
        // an accepted connection the remote peer is the source and the local (listening)
        // endpoint the destination. Rules such as `Initiated: 'false'` with
        // `DestinationPort: 22` (inbound SSH) rely on it.
        let inbound = self.inbound;
        match field {
            Field::Image => {
                let p = process?;
                match text(&p.exe) {
                    Some(v) => Some(v),
                    None if self.category == Category::ProcessCreation => {
                        text(&e.exec.as_ref()?.filename)
                    }
                    None => None,
                }
            }
            Field::CommandLine => {
                let args = &process?.args;
                if args.is_empty() {
                    return None;
                }
                text(self.command_line.get_or_init(|| args.join(" ")))
            }
            Field::ParentImage => text(&process?.parent_exe),
            Field::ParentCommandLine => {
                let args = &process?.parent_args;
                if args.is_empty() {
                    return None;
                }
                text(self.parent_command_line.get_or_init(|| args.join(" ")))
            }
            Field::User => text(&process?.user),
            Field::ProcessId => number(process?.pid),
            Field::ParentProcessId => number(process?.ppid),
            // The working directory the kernel saw at exec.
            Field::CurrentDirectory => text(&e.exec.as_ref()?.cwd),
            Field::TargetFilename if self.category == Category::FileRename => text(&file?.new_path),
            Field::TargetFilename | Field::SourceFilename => text(&file?.path),
            Field::DestinationIp if inbound => text(&net?.src_addr),
            Field::DestinationIp => text(&net?.dst_addr),
            Field::DestinationPort if inbound => port(net?.src_port),
            Field::DestinationPort => port(net?.dst_port),
            Field::SourceIp if inbound => text(&net?.dst_addr),
            Field::SourceIp => text(&net?.src_addr),
            Field::SourcePort if inbound => port(net?.dst_port),
            Field::SourcePort => port(net?.src_port),
            Field::Protocol => text(&net?.protocol),
            Field::Initiated => {
                net?;
                text(if inbound { "false" } else { "true" })
            }
        }
    }

    fn present(&self) -> impl Iterator<Item = (Cow<'static, str>, EventValue<'_>)> {
        self.category
            .fields()
            .iter()
            .filter_map(|&f| Some((Cow::Borrowed(f.name()), self.value(f)?)))
    }
}

/// Port 0 is "no endpoint" (see `decode::net::sock_to_net`).
fn port(p: u32) -> Option<EventValue<'static>> {
    if p == 0 { None } else { number(p) }
}

/// Implements [`rsigma_eval::Event`] for a view with `lookup(name)` and `present()` (every
/// field it has, named, with its value): keyword searches and JSON walk `present()`.
///
/// `top_level_keys`/`visit_top_level_keys` are left to their defaults: told nothing
/// about the event's shape, the engine walks only the fields its rules name, each lookup
/// a short scan of a record's list, instead of hashing every field a view could offer.
macro_rules! sigma_event {
    ($view:ty) => {
        impl rsigma_eval::Event for $view {
            fn get_field(&self, path: &str) -> Option<EventValue<'_>> {
                self.lookup(path)
            }

            fn any_string_value(&self, pred: &dyn Fn(&str) -> bool) -> bool {
                self.present()
                    .any(|(_, v)| matches!(v, EventValue::Str(s) if pred(&s)))
            }

            fn all_string_values(&self) -> Vec<std::borrow::Cow<'_, str>> {
                self.present()
                    .filter_map(|(_, v)| match v {
                        EventValue::Str(s) => Some(s),
                        _ => None,
                    })
                    .collect()
            }

            fn visit_string_values(&self, visit: &mut dyn FnMut(&str)) {
                for (_, v) in self.present() {
                    if let EventValue::Str(s) = v {
                        visit(&s);
                    }
                }
            }

            fn to_json(&self) -> serde_json::Value {
                self.present()
                    .map(|(f, v)| (f.into_owned(), v.to_json()))
                    .collect::<serde_json::Map<_, _>>()
                    .into()
            }

            fn field_keys(&self) -> Vec<std::borrow::Cow<'_, str>> {
                self.present().map(|(f, _)| f).collect()
            }
        }
    };
}
pub(super) use sigma_event;

impl View<'_> {
    fn lookup(&self, path: &str) -> Option<EventValue<'_>> {
        let field = self.category.fields().iter().find(|f| f.name() == path)?;
        self.value(*field)
    }
}

sigma_event!(View<'_>);
