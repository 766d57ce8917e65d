//! Process lifecycle: exec, fork, exit.
//!
//! Raw tracepoints, so the programs get the `task_struct` and `linux_binprm` pointers the
//! kernel passes (`TP_PROTO`), not the formatted trace record:
//! - `sched_process_exec(struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)`
//! - `sched_process_fork(struct task_struct *parent, struct task_struct *child)`
//! - `sched_process_exit(struct task_struct *p[, bool group_dead])` (the second argument
//!   exists from 6.16 on; the program reads `signal->live` instead so it works on both)
//!
//! These prototypes are stable from 4.x through 6.18.

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, generated::bpf_send_signal},
    macros::raw_tracepoint,
    programs::RawTracePointContext,
};
use sensor_common::{
    ARGS_LEN, ENV_LEN, EXEC_ARGS_TRUNCATED, EXEC_DROPPED, EXEC_ENV_TRUNCATED, EXEC_KILLED,
    EventKind, ExecEvent, ExecImage, ExitEvent, ForkEvent,
};

use crate::{
    kernel::{
        counters::guarded,
        files::{file_identity, file_name},
        globals::off,
        paths::{chain, cwd_of, of_file, root_of},
        ring::{reserve, send},
        task::{current_task, read, read_ptr},
        user::{kernel_str, read_user_bytes},
    },
    maps::EXEC_VERDICTS,
    prevent::assess,
};

#[raw_tracepoint(tracepoint = "sched_process_exec")]
pub fn sched_process_exec(ctx: RawTracePointContext) -> i32 {
    guarded(EventKind::ProcessExec, || try_exec(&ctx));
    0
}

fn try_exec(ctx: &RawTracePointContext) -> Result<(), i64> {
    let kind = EventKind::ProcessExec;
    let task: usize = ctx.arg::<u64>(0) as usize;
    let bprm: usize = ctx.arg::<u64>(2) as usize;
    let verdict = take_verdict();
    let Some(mut entry) = reserve::<ExecEvent>(kind) else {
        return Ok(());
    };
    let e = entry.as_mut_ptr();
    let o = off();
    unsafe {
        (*e).flags = verdict;
        (*e).args_len = 0;
        (*e).env_len = 0;
        (*e).cwd_len = 0;
    }
    let body = exec_body(e, task, bprm, o);
    send(entry, task, kind).and(body)
}

/// Prevention at exec, in its own program on the same tracepoint, attached before
/// [`sched_process_exec`] so it runs first: decided before anything can fail to be
/// reported (a full ring buffer must not let a fileless or dropped image run), and kept
/// apart from the record's path walks, which together with the checks here are more than
/// older verifiers (6.1) accept in one program. What it decided reaches the exec record
/// through `EXEC_VERDICTS`, only for the rare exec it has something to say about.
#[raw_tracepoint(tracepoint = "sched_process_exec")]
pub fn exec_verdict(ctx: RawTracePointContext) -> i32 {
    let task: usize = ctx.arg::<u64>(0) as usize;
    let bprm: usize = ctx.arg::<u64>(2) as usize;
    let (killed, dropped) = prevent(task, bprm);
    let flags = if killed { EXEC_KILLED } else { 0 } | if dropped { EXEC_DROPPED } else { 0 };
    if flags != 0 {
        let _ = EXEC_VERDICTS.insert(bpf_get_current_pid_tgid(), flags, 0);
    }
    0
}

/// What [`exec_verdict`] decided about this thread's exec (0: nothing).
#[inline(always)]
fn take_verdict() -> u32 {
    let key = bpf_get_current_pid_tgid();
    match unsafe { EXEC_VERDICTS.get(key) }.copied() {
        Some(flags) => {
            let _ = EXEC_VERDICTS.remove(key);
            flags
        }
        None => 0,
    }
}

/// Blocking mode: an image doomed to be stopped ([`assess`]) is killed here, in the
/// tracepoint that runs after the kernel committed to the new image and before its first
/// instruction. Where BPF LSM runs, such an exec was already denied and never gets here.
/// Returns (killed, dropped): whether the image was dropped is recorded in every mode.
fn prevent(task: usize, bprm: usize) -> (bool, bool) {
    let (dropped, doomed) = assess(task, bprm);
    (
        doomed.is_some() && unsafe { bpf_send_signal(SIGKILL) == 0 },
        dropped,
    )
}

const SIGKILL: u32 = 9;

fn exec_body(
    e: *mut ExecEvent,
    task: usize,
    bprm: usize,
    o: &sensor_common::KernelOffsets,
) -> Result<(), i64> {
    read_image(bprm, unsafe { &raw mut (*e).image })?;
    if let (Ok(cwd), Ok(root)) = (cwd_of(task), root_of(task)) {
        unsafe { chain(&raw mut (*e).cwd, &raw mut (*e).cwd_len, cwd, root) };
    }

    let mm = read_ptr(task, o.task_mm)?;
    let start: u64 = read(mm, o.mm_arg_start)?;
    let end: u64 = read(mm, o.mm_arg_end)?;
    let len = end.saturating_sub(start);
    if len >= ARGS_LEN as u64 {
        unsafe { (*e).flags |= EXEC_ARGS_TRUNCATED };
    }
    let n = read_user_bytes(unsafe { &raw mut (*e).args }, len, start)?;
    unsafe { (*e).args_len = n };

    let start: u64 = read(mm, o.mm_env_start)?;
    let end: u64 = read(mm, o.mm_env_end)?;
    let len = end.saturating_sub(start);
    if len >= ENV_LEN as u64 {
        unsafe { (*e).flags |= EXEC_ENV_TRUNCATED };
    }
    // An unreadable environment leaves the argv already captured standing.
    if let Ok(n) = read_user_bytes(unsafe { &raw mut (*e).env }, len, start) {
        unsafe { (*e).env_len = n };
    }
    Ok(())
}

/// Describes the file `bprm` executes into `image`. Every field is set, to zero where the
/// kernel could not be read.
#[inline(always)]
pub fn read_image(bprm: usize, image: *mut ExecImage) -> Result<(), i64> {
    unsafe {
        (*image).ino = 0;
        (*image).dev = 0;
        (*image).nlink = 0;
        (*image).filename_len = 0;
        (*image).name_len = 0;
        (*image).path_len = 0;
        (*image)._pad = 0;
    }
    let o = off();
    let path = read_ptr(bprm, o.binprm_filename)?;
    unsafe { (*image).filename_len = kernel_str(path, &raw mut (*image).filename) };
    let file = read_ptr(bprm, o.binprm_file)?;
    let (ino, dev, nlink) = file_identity(file)?;
    unsafe {
        (*image).ino = ino;
        (*image).dev = dev;
        (*image).nlink = nlink;
    }
    unsafe { (*image).name_len = file_name(file, &raw mut (*image).name)? };
    // Built here and not read from /proc/PID/exe later: a short-lived process is gone by
    // then, and `./a.out` is all execve was given.
    let task = current_task();
    if let (Ok(loc), Ok(root)) = (of_file(file), root_of(task)) {
        unsafe { chain(&raw mut (*image).path, &raw mut (*image).path_len, loc, root) };
    }
    Ok(())
}

#[raw_tracepoint(tracepoint = "sched_process_fork")]
pub fn sched_process_fork(ctx: RawTracePointContext) -> i32 {
    guarded(EventKind::ProcessFork, || try_fork(&ctx));
    0
}

fn try_fork(ctx: &RawTracePointContext) -> Result<(), i64> {
    let kind = EventKind::ProcessFork;
    let child: usize = ctx.arg::<u64>(1) as usize;
    let o = off();
    // Threads share the parent's tgid: only new processes are reported.
    let pid: u32 = read(child, o.task_pid)?;
    let tgid: u32 = read(child, o.task_tgid)?;
    if pid != tgid {
        return Ok(());
    }
    let Some(entry) = reserve::<ForkEvent>(kind) else {
        return Ok(());
    };
    send(entry, child, kind)
}

#[raw_tracepoint(tracepoint = "sched_process_exit")]
pub fn sched_process_exit(ctx: RawTracePointContext) -> i32 {
    guarded(EventKind::ProcessExit, || try_exit(&ctx));
    0
}

fn try_exit(_ctx: &RawTracePointContext) -> Result<(), i64> {
    let kind = EventKind::ProcessExit;
    let task = current_task();
    let o = off();
    // `signal->live` drops to 0 when the last thread exits: that is the process's exit.
    let signal = read_ptr(task, o.task_signal)?;
    let live: i32 = read(signal, o.signal_live)?;
    if live != 0 {
        return Ok(());
    }
    let Some(mut entry) = reserve::<ExitEvent>(kind) else {
        return Ok(());
    };
    let e = entry.as_mut_ptr();
    unsafe {
        (*e).exit_code = 0;
        (*e)._pad = 0;
    }
    let code = read::<u32>(task, o.task_exit_code);
    if let Ok(c) = code {
        unsafe { (*e).exit_code = c };
    }
    send(entry, task, kind).and(code.map(|_| ()))
}
