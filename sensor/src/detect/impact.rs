//! SNS-0023 disk wipe: `dd` writing onto a block device, `shred` of a device, `wipefs`
//! erasing signatures (`-a`, `-o`, not with `-n`), `blkdiscard`. Listing signatures (`wipefs` alone) and
//! writing to files or to /dev/null are quiet.

use sensor_common::EventKind;

use super::{Detector, Finding, Response, Rule, base_name};
use crate::proto;

pub const RULE: Rule = Rule {
    id: "SNS-0023",
    title: "Disk wipe",
    description: "A block device was overwritten or its signatures erased.",
    severity: "high",
    mitre: &["T1561.001", "T1561.002", "T1485"],
    response: Response::Report,
};

/// Block device names (disks, partitions, device-mapper, RAID, loop, by-id links).
const BLOCK_DEVICES: &[&str] = &[
    "/dev/sd",
    "/dev/hd",
    "/dev/vd",
    "/dev/xvd",
    "/dev/nvme",
    "/dev/mmcblk",
    "/dev/dm-",
    "/dev/md",
    "/dev/loop",
    "/dev/mapper/",
    "/dev/disk/",
];

fn block_device(path: &str) -> bool {
    BLOCK_DEVICES.iter().any(|d| path.starts_with(d)) && path != "/dev/loop-control"
}

/// The device `p` wipes, if it wipes one.
fn wiped(p: &proto::Process) -> Option<String> {
    let args = p.args.get(1..).unwrap_or_default();
    let device = || args.iter().find(|a| block_device(a)).cloned();
    match base_name(&p.exe) {
        "dd" => args
            .iter()
            .filter_map(|a| a.strip_prefix("of="))
            .find(|d| block_device(d))
            .map(str::to_string),
        "shred" | "blkdiscard" => device(),
        "wipefs" if wipefs_erases(args) => device(),
        _ => None,
    }
}

/// Whether `wipefs` with `args` erases (`-a`, `--all`, `-o`, `--offset`) for real (not
/// `-n`, `--no-act`).
fn wipefs_erases(args: &[String]) -> bool {
    let short = |c| {
        args.iter()
            .any(|a| a.starts_with('-') && !a.starts_with("--") && a.contains(c))
    };
    let erases = short('a')
        || short('o')
        || args
            .iter()
            .any(|a| a == "--all" || a.starts_with("--offset"));
    erases && !short('n') && !args.iter().any(|a| a == "--no-act")
}

pub struct Impact;

impl Detector for Impact {
    fn rules(&self) -> &'static [&'static Rule] {
        &[&RULE]
    }

    fn inspect(&mut self, kind: Option<EventKind>, e: &proto::Event, out: &mut Vec<Finding>) {
        if kind != Some(EventKind::ProcessExec) {
            return;
        }
        let Some(p) = &e.process else { return };
        if let Some(device) = wiped(p) {
            let details = vec![("device", device), ("command", p.args.join(" "))];
            out.push(Finding::on(&RULE, p, e, details));
        }
    }
}

#[cfg(test)]
mod tests {
    use sensor_testkit::events::{exec, process};

    use super::*;
    use crate::detect::replay::raises;

    fn runs(exe: &str, args: &[&str]) -> Vec<proto::Event> {
        vec![exec(&process(5200, exe, args))]
    }

    #[test]
    fn writes_onto_block_devices() {
        for (exe, args) in [
            (
                "/usr/bin/dd",
                &["dd", "if=/dev/zero", "of=/dev/sda", "bs=1M"][..],
            ),
            (
                "/usr/bin/dd",
                &["dd", "if=/dev/urandom", "of=/dev/nvme0n1p2"],
            ),
            ("/usr/bin/shred", &["shred", "-n", "1", "/dev/vdb"]),
            ("/usr/sbin/wipefs", &["wipefs", "-a", "/dev/mapper/vg-root"]),
            ("/usr/sbin/wipefs", &["wipefs", "--all", "/dev/sdb1"]),
            ("/usr/sbin/blkdiscard", &["blkdiscard", "/dev/sdc"]),
        ] {
            assert!(raises(RULE.id, runs(exe, args)), "{args:?}");
        }
    }

    #[test]
    fn files_null_and_listing_are_quiet() {
        for (exe, args) in [
            (
                "/usr/bin/dd",
                &["dd", "if=/dev/sda", "of=/tmp/mbr", "count=1"][..],
            ),
            ("/usr/bin/dd", &["dd", "if=/dev/zero", "of=/dev/null"]),
            ("/usr/bin/shred", &["shred", "-u", "/tmp/secret.txt"]),
            ("/usr/sbin/wipefs", &["wipefs", "/dev/sda"]),
            (
                "/usr/sbin/wipefs",
                &["wipefs", "--no-act", "--all", "/tmp/img"],
            ),
        ] {
            assert!(!raises(RULE.id, runs(exe, args)), "{args:?}");
        }
    }
}
