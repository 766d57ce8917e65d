//! The sensor's events as auditd records, for Sigma rules written against
//! `logsource: {product: linux, service: auditd}` (SigmaHQ's `rules/linux/auditd`).
//!
//! auditd logs one syscall as several records that share a serial: `SYSCALL` (the call,
//! its result and the caller), then `EXECVE` (argv), `CWD`, one `PATH` per name it
//! touched and `PROCTITLE`. Rules match one record at a time (`type: EXECVE` with `a0`,
//! `a1`, ...; `type: PATH` with `name`; `type: SYSCALL` with `syscall` and `exe`), so an
//! event is shown to the auditd rules once per record it would have produced, each a
//! [`Record`] view answering the field names auditd uses, with values as `ausearch -i`
//! prints them (syscall names, not numbers). Fields auditd has and the sensor does not
//! (`key`, which names the operator's audit rule; `auid`; `ses`) are absent, so rules on
//! them load and never match.
//!
//! `SERVICE_STOP` comes from systemd, not a syscall: it is shown for each unit that
//! `systemctl stop` names, as that is where a unit stop is seen without systemd's
//! journal.

use std::borrow::Cow;

use rsigma_eval::EventValue;
use sensor_common::EventKind;

use crate::proto;

/// The record types an event is shown as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Type {
    Syscall,
    Execve,
    Cwd,
    /// `item` 0 or 1: a rename or link names two paths.
    Path(u8),
    Proctitle,
    /// One of the units `systemctl stop` names (its index among the arguments).
    ServiceStop(usize),
}

impl Type {
    fn name(self) -> &'static str {
        match self {
            Type::Syscall => "SYSCALL",
            Type::Execve => "EXECVE",
            Type::Cwd => "CWD",
            Type::Path(_) => "PATH",
            Type::Proctitle => "PROCTITLE",
            Type::ServiceStop(_) => "SERVICE_STOP",
        }
    }

    /// The fields of this record, for keyword searches over all of it (`EXECVE`'s
    /// arguments are added by [`Record::present`]).
    fn fields(self) -> &'static [&'static str] {
        match self {
            Type::Syscall => &[
                "type", "syscall", "success", "exit", "pid", "ppid", "uid", "euid", "gid", "comm",
                "exe",
            ],
            Type::Execve => &["type", "argc"],
            Type::Cwd => &["type", "cwd"],
            Type::Path(_) => &["type", "item", "name", "nametype"],
            Type::Proctitle => &["type", "proctitle"],
            Type::ServiceStop(_) => &["type", "unit", "comm", "exe"],
        }
    }
}

/// The records `event` would have made, in auditd's order.
pub(super) fn records(kind: EventKind, event: &proto::Event) -> Vec<Record<'_>> {
    use EventKind::*;
    let mut types = match kind {
        ProcessExec => vec![Type::Syscall, Type::Execve, Type::Cwd, Type::Path(0)],
        FileCreate | FileWrite | FileRead | FileUnlink | FileChmod | FileChown | FileTruncate
        | FileTimes => vec![Type::Syscall, Type::Path(0)],
        FileRename | FileLink | FileSymlink => vec![Type::Syscall, Type::Path(0), Type::Path(1)],
        NetConnect | NetAccept | NetBind | NetListen | Ptrace | ModuleLoad | BpfLoad
        | MemfdCreate | Setuid | Setgid | MprotectExec | Signal | FdDup => vec![Type::Syscall],
        _ => return Vec::new(),
    };
    if kind == ProcessExec {
        types.push(Type::Proctitle);
        types.extend(stopped_units(event).map(Type::ServiceStop));
    }
    types
        .into_iter()
        .map(|record| Record {
            record,
            kind,
            event,
        })
        .collect()
}

/// The argument indexes of the units `systemctl [options] stop UNIT...` stops.
fn stopped_units(event: &proto::Event) -> impl Iterator<Item = usize> + '_ {
    let args = event.process.as_ref().map_or(&[][..], |p| &p.args[..]);
    let systemctl = args
        .first()
        .is_some_and(|a| a.rsplit('/').next() == Some("systemctl"));
    let stop = args.iter().position(|a| a == "stop").filter(|_| systemctl);
    stop.into_iter()
        .flat_map(move |at| (at + 1..args.len()).filter(move |&i| !args[i].starts_with('-')))
}

/// One event as one auditd record.
pub(super) struct Record<'a> {
    record: Type,
    kind: EventKind,
    event: &'a proto::Event,
}

fn text(s: &str) -> Option<EventValue<'_>> {
    (!s.is_empty()).then_some(EventValue::Str(Cow::Borrowed(s)))
}

fn owned(s: String) -> Option<EventValue<'static>> {
    Some(EventValue::Str(Cow::Owned(s)))
}

impl<'a> Record<'a> {
    fn process(&self) -> Option<&'a proto::Process> {
        self.event.process.as_ref()
    }

    fn args(&self) -> &'a [String] {
        self.process().map_or(&[], |p| &p.args[..])
    }

    /// The syscall as `ausearch -i` names it.
    fn syscall(&self) -> Option<&'a str> {
        let e = self.event;
        let named = [
            e.file.as_ref().map(|f| f.syscall.as_str()),
            e.net.as_ref().map(|n| n.syscall.as_str()),
            e.module.as_ref().map(|m| m.syscall.as_str()),
            e.setid.as_ref().map(|s| s.syscall.as_str()),
            e.fd_dup.as_ref().map(|f| f.syscall.as_str()),
            e.mem_exec.as_ref().map(|m| m.syscall.as_str()),
            e.signal.as_ref().map(|s| s.syscall.as_str()),
        ]
        .into_iter()
        .flatten()
        .find(|s| !s.is_empty());
        named.or(match self.kind {
            EventKind::ProcessExec => Some("execve"),
            EventKind::Ptrace => Some("ptrace"),
            EventKind::BpfLoad => Some("bpf"),
            EventKind::MemfdCreate => Some("memfd_create"),
            _ => None,
        })
    }

    /// The call's return value, where the event has one (an exec that is reported
    /// succeeded).
    fn result(&self) -> Option<i64> {
        let e = self.event;
        [
            e.ptrace.as_ref().map(|x| x.result),
            e.module.as_ref().map(|x| x.result),
            e.bpf.as_ref().map(|x| x.result),
            e.memfd.as_ref().map(|x| x.result),
            e.setid.as_ref().map(|x| x.result),
            e.fd_dup.as_ref().map(|x| x.result),
            e.mem_exec.as_ref().map(|x| x.result),
            e.signal.as_ref().map(|x| x.result),
        ]
        .into_iter()
        .flatten()
        .next()
        .or_else(|| (self.kind == EventKind::ProcessExec).then_some(0))
    }

    fn path(&self, item: u8) -> Option<&'a str> {
        let f = self.event.file.as_ref();
        match (self.kind, item) {
            (EventKind::ProcessExec, _) => {
                let exe = self
                    .process()
                    .map(|p| p.exe.as_str())
                    .filter(|s| !s.is_empty());
                exe.or(self.event.exec.as_ref().map(|x| x.filename.as_str()))
            }
            (_, 0) => f.map(|f| f.path.as_str()),
            _ => f.map(|f| f.new_path.as_str()),
        }
    }

    fn nametype(&self, item: u8) -> &'static str {
        use EventKind::*;
        match (self.kind, item) {
            (FileCreate | FileSymlink | FileLink, 1) | (FileCreate, 0) => "CREATE",
            (FileRename, 0) | (FileUnlink, _) => "DELETE",
            (FileRename, 1) => "CREATE",
            _ => "NORMAL",
        }
    }

    fn lookup(&self, field: &str) -> Option<EventValue<'a>> {
        let p = self.process();
        let number = |n: u32| Some(EventValue::Int(n.into()));
        if field == "type" {
            return text(self.record.name());
        }
        match self.record {
            Type::Syscall => match field {
                // `SYSCALL` is the name the enriched log format gives the interpreted call.
                "syscall" | "SYSCALL" => text(self.syscall()?),
                "success" => text(if self.result()? < 0 { "no" } else { "yes" }),
                "exit" => Some(EventValue::Int(self.result()?)),
                "pid" => number(p?.pid),
                "ppid" => number(p?.ppid),
                "uid" => number(p?.uid),
                "euid" => number(p?.euid),
                "gid" => number(p?.gid),
                "comm" => text(&p?.comm),
                "exe" => text(&p?.exe),
                // ptrace's request and the set-id calls' first id, as auditd's hex.
                "a0" => match (&self.event.ptrace, &self.event.setid) {
                    (Some(t), _) => owned(format!("{:x}", t.request_code)),
                    (_, Some(s)) => owned(format!("{:x}", *s.ids.first()?)),
                    _ => None,
                },
                _ => None,
            },
            Type::Execve => {
                let args = self.args();
                if field == "argc" {
                    return Some(EventValue::Int(args.len() as i64));
                }
                let i: usize = field.strip_prefix('a')?.parse().ok()?;
                text(args.get(i)?)
            }
            Type::Cwd => match field {
                "cwd" => text(&self.event.exec.as_ref()?.cwd),
                _ => None,
            },
            Type::Path(item) => match field {
                "item" => Some(EventValue::Int(item.into())),
                "name" => text(self.path(item)?),
                "nametype" => text(self.nametype(item)),
                _ => None,
            },
            Type::Proctitle => match field {
                "proctitle" if !self.args().is_empty() => owned(self.args().join(" ")),
                _ => None,
            },
            Type::ServiceStop(i) => match field {
                "unit" => {
                    let unit = self.args().get(i)?;
                    text(unit.strip_suffix(".service").unwrap_or(unit))
                }
                "comm" => text("systemd"),
                "exe" => text("/usr/lib/systemd/systemd"),
                _ => None,
            },
        }
    }

    fn present(&self) -> impl Iterator<Item = (Cow<'static, str>, EventValue<'a>)> + '_ {
        let argv = match self.record {
            Type::Execve => self.args().len(),
            _ => 0,
        };
        self.record
            .fields()
            .iter()
            .map(|f| Cow::Borrowed(*f))
            .chain((0..argv).map(|i| Cow::Owned(format!("a{i}"))))
            .filter_map(|f| {
                let v = self.lookup(&f)?;
                Some((f, v))
            })
    }
}

super::schema::sigma_event!(Record<'_>);
