//! SNS-0029 an account made by hand: `useradd`, `adduser`, `groupadd`, or a user added
//! to a group (`usermod -aG`, `gpasswd -a`, `adduser USER GROUP`), outside the package
//! scripts that create service accounts. Low on its own (administrators do this);
//! medium when the account gets root's uid or joins an administrative group, the way an
//! intruder keeps a way back in.

use sensor_common::EventKind;

use super::{Detector, Finding, Response, Rule, base_name, persistence::maintainer_script};
use crate::proto;

pub const CREATED: Rule = Rule {
    id: "SNS-0029",
    title: "Account created or changed",
    description: "A user or group was created, or a user added to a group, outside package scripts.",
    severity: "low",
    mitre: &["T1136.001", "T1098"],
    response: Response::Report,
};

pub const PRIVILEGED: Rule = Rule {
    id: "SNS-0030",
    title: "Privileged account created",
    description: "An account was given uid 0 or added to an administrative group, outside package scripts.",
    severity: "medium",
    mitre: &["T1136.001", "T1098"],
    response: Response::Report,
};

/// Groups whose members administer the machine.
const ADMIN_GROUPS: &[&str] = &[
    "root", "sudo", "wheel", "adm", "admin", "docker", "lxd", "disk", "shadow",
];

/// The tool's name: the image's, or for the Perl `adduser` family the script's.
fn tool(p: &proto::Process) -> &str {
    let image = base_name(&p.exe);
    if image.starts_with("perl") {
        return p.args.get(1).map_or(image, |s| base_name(s));
    }
    image
}

/// What `p` does to the accounts, and whether it grants privilege.
pub fn account_change(p: &proto::Process) -> Option<(&'static str, bool)> {
    let args: Vec<&str> = p.args.iter().map(String::as_str).collect();
    let after = |flags: &[&str]| -> Vec<&str> {
        args.windows(2)
            .filter(|w| flags.contains(&w[0]))
            .map(|w| w[1])
            .collect()
    };
    let groups: Vec<&str> = after(&["-G", "-aG", "--groups", "-g", "--gid"])
        .into_iter()
        .flat_map(|g| g.split(','))
        .collect();
    let admin = groups.iter().any(|g| ADMIN_GROUPS.contains(g))
        || after(&["-u", "--uid"]).contains(&"0")
        || (args.contains(&"-o") && after(&["-u"]).contains(&"0"));
    let name = match p.args.first() {
        Some(_) => tool(p),
        None => return None,
    };
    let change = match name {
        "useradd" | "adduser" if !args.iter().skip(1).any(|a| *a == "--help") => {
            // `adduser USER GROUP` adds an existing user to a group.
            let plain: Vec<&str> = args
                .iter()
                .skip(2)
                .copied()
                .filter(|a| !a.starts_with('-'))
                .collect();
            if name == "adduser" && plain.len() == 2 {
                return Some(("user added to a group", ADMIN_GROUPS.contains(&plain[1])));
            }
            "user created"
        }
        "groupadd" | "addgroup" => "group created",
        "usermod" if !groups.is_empty() || admin => "user added to a group",
        "gpasswd" if args.contains(&"-a") || args.contains(&"--add") => {
            let group = args.last().copied().unwrap_or("");
            return Some(("user added to a group", ADMIN_GROUPS.contains(&group)));
        }
        _ => return None,
    };
    Some((change, admin))
}

pub struct Accounts;

impl Detector for Accounts {
    fn rules(&self) -> &'static [&'static Rule] {
        &[&CREATED, &PRIVILEGED]
    }

    fn inspect(&mut self, kind: Option<EventKind>, e: &proto::Event, out: &mut Vec<Finding>) {
        let (Some(EventKind::ProcessExec), Some(p)) = (kind, &e.process) else {
            return;
        };
        let Some((what, admin)) = account_change(p) else {
            return;
        };
        // Package scripts make service accounts, often through adduser, which runs
        // useradd itself: anything with dpkg above it is package work.
        if maintainer_script(p) || p.ancestors.iter().any(|a| base_name(&a.exe) == "dpkg") {
            return;
        }
        let rule = if admin { &PRIVILEGED } else { &CREATED };
        out.push(Finding::on(rule, p, e, vec![("change", what.into())]));
    }
}

#[cfg(test)]
mod tests {
    use sensor_testkit::events::process;

    use super::account_change;

    fn change(exe: &str, args: &[&str]) -> Option<(&'static str, bool)> {
        account_change(&process(5400, exe, args))
    }

    #[test]
    fn account_changes_and_their_privilege() {
        assert_eq!(
            change("/usr/sbin/useradd", &["useradd", "-m", "bob"]),
            Some(("user created", false))
        );
        assert_eq!(
            change("/usr/sbin/useradd", &["useradd", "-o", "-u", "0", "toor"]),
            Some(("user created", true))
        );
        assert_eq!(
            change("/usr/sbin/usermod", &["usermod", "-aG", "sudo", "bob"]),
            Some(("user added to a group", true))
        );
        assert_eq!(
            change(
                "/usr/sbin/usermod",
                &["usermod", "-aG", "video,audio", "bob"]
            ),
            Some(("user added to a group", false))
        );
        assert_eq!(
            change(
                "/usr/bin/perl",
                &["/usr/bin/perl", "/usr/sbin/adduser", "bob", "docker"]
            ),
            Some(("user added to a group", true))
        );
        assert_eq!(
            change("/usr/sbin/groupadd", &["groupadd", "devs"]),
            Some(("group created", false))
        );
        assert_eq!(
            change("/usr/bin/gpasswd", &["gpasswd", "-a", "bob", "wheel"]),
            Some(("user added to a group", true))
        );
        // Changing a shell or a comment is not a new account or group membership.
        assert_eq!(
            change("/usr/sbin/usermod", &["usermod", "-s", "/bin/zsh", "bob"]),
            None
        );
        assert_eq!(change("/usr/bin/id", &["id", "bob"]), None);
    }
}
