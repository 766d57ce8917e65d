//! `sensor diagnostic`: views for whoever tunes the sensor rather than runs it. Today the
//! kernel programs' run statistics, to find where capture's cost goes before cutting.

use std::path::PathBuf;

use anyhow::Result;
use serde::Serialize;

use super::{DEFAULT_SOCKET, Output, daemon_health, output};
use crate::proto;

#[derive(Clone, Debug, clap::Args)]
pub struct EbpfStatisticsArgs {
    #[arg(long, value_enum, default_value = "text")]
    pub output: Output,
    #[arg(long, default_value = DEFAULT_SOCKET)]
    pub socket: PathBuf,
}

/// One kernel program and what it cost since the daemon started. A program attached to
/// several hooks (a syscall family's enter program) is one row: the kernel counts per
/// program, not per hook.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ProgramCost {
    pub name: String,
    pub hooks: Vec<String>,
    pub prog_id: u32,
    pub run_count: u64,
    pub run_time_ns: u64,
    pub mean_ns: u64,
}

pub async fn ebpf_statistics(args: EbpfStatisticsArgs) -> Result<()> {
    let h = daemon_health(&args.socket).await?;
    let rows = program_costs(&h.programs);
    match args.output {
        Output::Json => output::json_pretty(&rows),
        Output::Text => {
            if h.platform
                .as_ref()
                .is_some_and(|p| p.bpf_statistics == "off")
            {
                output::text_line(
                    "NOTE BPF run statistics are off: start the daemon with --bpf-statistics \
                     to count runs (the kernel then times every BPF program on the machine)",
                )?;
            }
            for issue in h.issues.iter().filter(|i| i.contains("statistics")) {
                output::text_line(&format!("ISSUE {issue}"))?;
            }
            for line in cost_table(&rows) {
                output::text_line(&line)?;
            }
            Ok(())
        }
    }
}

/// The attached programs, one row each, busiest (most total run time) first.
pub fn program_costs(programs: &[proto::ProgramStatus]) -> Vec<ProgramCost> {
    let mut rows: Vec<ProgramCost> = Vec::new();
    for p in programs.iter().filter(|p| p.attached) {
        let same = rows
            .iter_mut()
            .find(|r| r.name == p.name && r.prog_id == p.prog_id);
        match same {
            Some(r) => r.hooks.push(p.hook.clone()),
            None => rows.push(ProgramCost {
                name: p.name.clone(),
                hooks: vec![p.hook.clone()],
                prog_id: p.prog_id,
                run_count: p.run_count,
                run_time_ns: p.run_time_ns,
                mean_ns: p.run_time_ns.checked_div(p.run_count).unwrap_or(0),
            }),
        }
    }
    rows.sort_by(|a, b| {
        b.run_time_ns
            .cmp(&a.run_time_ns)
            .then_with(|| a.name.cmp(&b.name))
    });
    rows
}

fn cost_table(rows: &[ProgramCost]) -> Vec<String> {
    let hook = |r: &ProgramCost| match r.hooks.len() {
        1 => r.hooks[0].clone(),
        n => format!("{} (+{} more)", r.hooks[0], n - 1),
    };
    let mut lines = vec![format!(
        "{:<22} {:<48} {:>12} {:>14} {:>10}",
        "PROGRAM", "HOOK", "RUNS", "TOTAL MS", "MEAN NS"
    )];
    lines.extend(rows.iter().map(|r| {
        format!(
            "{:<22} {:<48} {:>12} {:>14.3} {:>10}",
            r.name,
            hook(r),
            r.run_count,
            r.run_time_ns as f64 / 1e6,
            r.mean_ns
        )
    }));
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    fn program(name: &str, hook: &str, id: u32, count: u64, time: u64) -> proto::ProgramStatus {
        proto::ProgramStatus {
            name: name.into(),
            hook: hook.into(),
            attached: true,
            prog_id: id,
            run_count: count,
            run_time_ns: time,
            ..Default::default()
        }
    }

    #[test]
    fn one_row_per_program_busiest_first() {
        let programs = vec![
            program(
                "sched_process_exec",
                "raw_tracepoint/sched_process_exec",
                7,
                10,
                5_000,
            ),
            program("file_enter", "syscalls/sys_enter_openat", 9, 400, 80_000),
            program("file_enter", "syscalls/sys_enter_unlinkat", 9, 400, 80_000),
            proto::ProgramStatus {
                attached: false,
                ..program("file_exit", "syscalls/sys_exit_openat", 0, 0, 0)
            },
        ];
        let rows = program_costs(&programs);
        let names: Vec<&str> = rows.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["file_enter", "sched_process_exec"]);
        assert_eq!(rows[0].hooks.len(), 2);
        assert_eq!(rows[0].run_count, 400);
        assert_eq!(rows[0].mean_ns, 200);
        assert_eq!(rows[1].mean_ns, 500);
        let table = cost_table(&rows);
        assert!(table[0].starts_with("PROGRAM"), "{table:?}");
        assert!(table[1].contains("(+1 more)"), "{table:?}");
    }

    #[test]
    fn a_program_that_never_ran_has_no_mean() {
        let rows = program_costs(&[program("dns_enter", "syscalls/sys_enter_sendto", 3, 0, 0)]);
        assert_eq!(rows[0].mean_ns, 0);
    }
}
