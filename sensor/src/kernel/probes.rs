//! Loading and attaching the kernel programs.
//!
//! Every hook is attached on its own: one the kernel lacks (an old kernel without
//! `fchmodat2`, say) is recorded with the kernel's reason and the others still run. The
//! statuses end up in health. Everything is detached when [`Probes`] is dropped; nothing
//! is pinned, so a killed daemon leaves nothing behind either.

use std::{
    collections::{HashMap as StdHashMap, HashSet},
    os::fd::OwnedFd,
    path::Path,
};

use anyhow::{Context, Result};
use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, HashMap, MapData, PerCpuArray, RingBuf},
    programs::{Lsm, RawTracePoint, TracePoint},
};
use sensor_common::{EventKind, HookFamily, KernelOffsets, SENSITIVE_NAME_LEN, syscalls};

use super::btf;
use crate::proto;

static OBJECT: &[u8] = aya::include_bytes_aligned!(env!("SENSOR_BPF_OBJECT"));

/// aya needs its `Pod` marker on globals; the layout lives in `sensor-common`.
#[derive(Clone, Copy)]
#[repr(transparent)]
struct Offsets(KernelOffsets);
// SAFETY: plain `#[repr(C)]` struct of u32s.
unsafe impl aya::Pod for Offsets {}

pub struct Probes {
    pub events: RingBuf<MapData>,
    pub counters: KernelCounters,
    pub status: Vec<proto::ProgramStatus>,
    pub enabled: HashSet<EventKind>,
    /// Wall-clock minus boot time, for the kernel's drop decision; see [`crate::enrich::wall_clock_offset`].
    pub wall_clock: Array<MapData, u64>,
    /// Whether fileless and dropped images are denied at exec (BPF LSM) rather than killed.
    pub exec_denial: ExecDenial,
    pub run_statistics: RunStatistics,
    /// Why module loads are not captured, when they are not (for health).
    pub module_loads: Option<String>,
    pub ebpf: Ebpf,
}

/// The kernel's BPF run statistics (`BPF_ENABLE_STATS`): how often each program ran and
/// for how long, to see where capture's cost goes. The kernel counts only while the fd
/// it returned stays open, so this is kept for the daemon's life; dropping it turns the
/// counting off again.
pub struct RunStatistics {
    /// `None`: not asked for. While the fd is open the kernel times every BPF program on
    /// the machine (two clock reads per run, other software's programs too), so the
    /// daemon asks only when told to (`--bpf-statistics`).
    enabled: Option<Result<OwnedFd, String>>,
}

/// How often one program ran and how long it ran in all.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProgramRuns {
    pub count: u64,
    pub time_ns: u64,
}

impl RunStatistics {
    /// Asks the kernel to count. A kernel that refuses (before 5.8, or a locked-down
    /// one) leaves the counts at zero and the reason in [`Self::refusal`].
    pub fn enable() -> Self {
        let enabled = aya::sys::enable_stats(aya::sys::Stats::RunTime)
            .map_err(|e| format!("the kernel refused BPF run statistics: {e}"));
        if let Err(e) = &enabled {
            log::warn!("{e}");
        }
        Self {
            enabled: Some(enabled),
        }
    }

    pub fn off() -> Self {
        Self { enabled: None }
    }

    pub fn refusal(&self) -> Option<&str> {
        self.enabled.as_ref()?.as_ref().err().map(String::as_str)
    }

    /// `on`, `off`, or the kernel's refusal, for health.
    pub fn describe(&self) -> String {
        match &self.enabled {
            None => "off".into(),
            Some(Ok(_)) => "on".into(),
            Some(Err(e)) => e.clone(),
        }
    }

    /// Current totals of the given programs, by id. aya reads a program's info only
    /// through its id (one walk of the loaded programs), so one walk serves them all.
    pub fn read(&self, ids: &HashSet<u32>) -> StdHashMap<u32, ProgramRuns> {
        if !matches!(self.enabled, Some(Ok(_))) || ids.is_empty() {
            return StdHashMap::new();
        }
        aya::programs::loaded_programs()
            .flatten()
            .filter(|info| ids.contains(&info.id()))
            .map(|info| {
                let runs = ProgramRuns {
                    count: info.run_count(),
                    time_ns: u64::try_from(info.run_time().as_nanos()).unwrap_or(u64::MAX),
                };
                (info.id(), runs)
            })
            .collect()
    }
}

/// Per-kind counters the kernel keeps: records lost (ring buffer full) and records sent
/// with fields that could not be read.
pub struct KernelCounters {
    lost: PerCpuArray<MapData, u64>,
    errors: PerCpuArray<MapData, u64>,
}

impl KernelCounters {
    pub fn lost(&self, kind: EventKind) -> u64 {
        sum(&self.lost, kind)
    }
    pub fn errors(&self, kind: EventKind) -> u64 {
        sum(&self.errors, kind)
    }
}

fn sum(map: &PerCpuArray<MapData, u64>, kind: EventKind) -> u64 {
    map.get(&(kind as u32), 0)
        .map(|v| v.iter().sum())
        .unwrap_or(0)
}

/// Names of files whose reads are reported (`file_read`): account secrets, SSH private
/// keys, and credential files of cloud and developer tools. Matched on the opened file's
/// name in the kernel; the detection layer judges the full path. Names as common as
/// `config` or `config.json` (kubectl's, docker's) are left out: every program reading
/// a file of that name would cost an event.
const SENSITIVE_FILE_NAMES: &[&str] = &[
    "shadow",
    "gshadow",
    "shadow-",
    "gshadow-",
    "id_rsa",
    "id_dsa",
    "id_ecdsa",
    "id_ed25519",
    "id_ecdsa_sk",
    "id_ed25519_sk",
    "master.passwd",
    "credentials",
    ".git-credentials",
    ".netrc",
    ".pgpass",
    "credentials.db",
    "access_tokens.db",
];

pub struct ProbeConfig {
    pub ring_buffer_bytes: u32,
    /// Blocking mode: fileless and dropped images are stopped at exec.
    pub blocking: bool,
    /// Blocking applies only below this thread group (0: everywhere).
    pub block_scope_tgid: u32,
    pub disabled: HashSet<EventKind>,
    pub ignored_tgids: Vec<u32>,
    /// Processes whose incoming signals are reported (the sensor, auditd).
    pub protected_tgids: Vec<u32>,
    /// Turn on the kernel's per-program run statistics.
    pub run_statistics: bool,
    /// An image whose inode changed this recently below a world-writable directory is
    /// dropped (`drop_exec_window_secs`).
    pub drop_window_secs: u64,
    /// On a kernel without module support, report module load attempts anyway through
    /// the per-syscall fallback.
    pub module_load_attempts: bool,
}

/// Programs of one syscall family; the syscalls they follow and the kinds they produce
/// come from the tables in `sensor-common`.
struct SyscallFamily {
    family: HookFamily,
    enter: &'static str,
    exit: Option<&'static str>,
    /// Syscalls the exit program reports from its record alone (`EXIT_ONLY` in the
    /// family's eBPF file): no entry program for them.
    exit_only: &'static [&'static str],
}

const FAMILIES: &[SyscallFamily] = &[
    SyscallFamily {
        family: HookFamily::File,
        enter: "file_enter",
        exit: Some("file_exit"),
        exit_only: &[],
    },
    SyscallFamily {
        family: HookFamily::Net,
        enter: "net_enter",
        exit: Some("net_exit"),
        exit_only: &["accept", "accept4"],
    },
    SyscallFamily {
        family: HookFamily::Dns,
        enter: "dns_enter",
        exit: None,
        exit_only: &[],
    },
    SyscallFamily {
        family: HookFamily::Security,
        enter: "security_enter",
        exit: Some("security_exit"),
        exit_only: &[],
    },
];

/// (program, tracepoint, kind). On one tracepoint, programs run in the order attached:
/// the exec verdict comes before the exec record that carries it.
const PROCESS_HOOKS: &[(&str, &str, EventKind)] = &[
    ("exec_verdict", "sched_process_exec", EventKind::ProcessExec),
    (
        "sched_process_exec",
        "sched_process_exec",
        EventKind::ProcessExec,
    ),
    (
        "sched_process_fork",
        "sched_process_fork",
        EventKind::ProcessFork,
    ),
    (
        "sched_process_exit",
        "sched_process_exit",
        EventKind::ProcessExit,
    ),
];

impl Probes {
    pub fn load(cfg: &ProbeConfig) -> Result<Self> {
        ensure_kernel_filesystems();
        // Before attaching, so the first runs are counted too.
        let run_statistics = if cfg.run_statistics {
            RunStatistics::enable()
        } else {
            RunStatistics::off()
        };
        let btf = btf::Btf::from_sys_fs()?;
        let offsets = btf::kernel_offsets(&btf).context("kernel struct layout")?;
        // Freed before aya parses the BTF again, so the two parses do not add up.
        drop(btf);
        release_freed_heap();
        let mut ebpf = EbpfLoader::new()
            .override_global("OFFSETS", &Offsets(offsets), true)
            .override_global("BLOCKING", &u32::from(cfg.blocking), true)
            .override_global("BLOCK_SCOPE_TGID", &cfg.block_scope_tgid, true)
            .override_global("DROP_WINDOW_SECS", &cfg.drop_window_secs, true)
            .map_max_entries("EVENTS", cfg.ring_buffer_bytes)
            .load(OBJECT)
            .context("loading the eBPF object")?;

        let enabled: HashSet<EventKind> = EventKind::ALL
            .iter()
            .copied()
            .filter(|k| !cfg.disabled.contains(k))
            .collect();
        {
            let mut switches: Array<_, u32> =
                Array::try_from(ebpf.map_mut("ENABLED").context("map ENABLED")?)?;
            for k in &enabled {
                switches.set(*k as u32, 1, 0)?;
            }
            let mut names: HashMap<_, [u8; SENSITIVE_NAME_LEN], u8> = HashMap::try_from(
                ebpf.map_mut("SENSITIVE_NAMES")
                    .context("map SENSITIVE_NAMES")?,
            )?;
            for name in SENSITIVE_FILE_NAMES {
                let mut key = [0u8; SENSITIVE_NAME_LEN];
                key[..name.len()].copy_from_slice(name.as_bytes());
                names.insert(key, 1, 0)?;
            }
            let mut protected: HashMap<_, u32, u8> = HashMap::try_from(
                ebpf.map_mut("PROTECTED_TGIDS")
                    .context("map PROTECTED_TGIDS")?,
            )?;
            for pid in &cfg.protected_tgids {
                protected.insert(pid, 1, 0)?;
            }
            let mut ignored: HashMap<_, u32, u8> =
                HashMap::try_from(ebpf.map_mut("IGNORED_TGIDS").context("map IGNORED_TGIDS")?)?;
            for pid in &cfg.ignored_tgids {
                ignored.insert(pid, 1, 0)?;
            }
            let mut wall: Array<_, u64> =
                Array::try_from(ebpf.map_mut("WALL_CLOCK").context("map WALL_CLOCK")?)?;
            wall.set(0, crate::enrich::wall_clock_offset(), 0)?;
        }

        let mut status = Vec::new();
        for (name, tracepoint, kind) in PROCESS_HOOKS {
            if enabled.contains(kind) {
                status.push(attach_raw_as(&mut ebpf, name, tracepoint));
            }
        }
        for fam in FAMILIES {
            if !EventKind::of_family(fam.family).any(|k| enabled.contains(&k)) {
                continue;
            }
            let calls: Vec<&str> = syscalls::names_of(fam.family).collect();
            let entered: Vec<&str> = calls
                .iter()
                .copied()
                .filter(|c| !fam.exit_only.contains(c))
                .collect();
            for (prog, dir, calls) in [
                (Some(fam.enter), "enter", &entered),
                (fam.exit, "exit", &calls),
            ] {
                let Some(prog) = prog else { continue };
                status.extend(attach_syscalls(&mut ebpf, prog, dir, calls));
            }
        }

        let mut module_loads = None;
        if enabled.contains(&EventKind::ModuleLoad) && module_hooks_missing(&status) {
            if cfg.module_load_attempts {
                status.push(attach_module_fallback(&mut ebpf));
            } else {
                module_loads = Some(NO_MODULE_SUPPORT.to_string());
            }
        }
        let (lsm_status, exec_denial) = attach_exec_denial(&mut ebpf, cfg.blocking);
        status.extend(lsm_status);

        let events = RingBuf::try_from(ebpf.take_map("EVENTS").context("map EVENTS")?)?;
        let counters = KernelCounters {
            lost: PerCpuArray::try_from(ebpf.take_map("LOST").context("map LOST")?)?,
            errors: PerCpuArray::try_from(ebpf.take_map("ERRORS").context("map ERRORS")?)?,
        };
        let wall_clock = Array::try_from(ebpf.take_map("WALL_CLOCK").context("map WALL_CLOCK")?)?;
        release_freed_heap();
        Ok(Self {
            events,
            counters,
            status,
            enabled,
            wall_clock,
            exec_denial,
            run_statistics,
            module_loads,
            ebpf,
        })
    }
}

/// Loading parses the kernel's BTF twice (our offsets, aya's relocations): some 15 MB
/// on the heap each time, freed afterwards but kept by the allocator, where it would
/// count in the daemon's resident memory for its whole life. Handing it back costs one
/// call.
fn release_freed_heap() {
    #[cfg(target_env = "gnu")]
    // SAFETY: no preconditions; only returns free memory to the kernel.
    unsafe {
        libc::malloc_trim(0);
    }
}

fn attach_raw_as(ebpf: &mut Ebpf, name: &str, tracepoint: &str) -> proto::ProgramStatus {
    let mut st = proto::ProgramStatus {
        name: name.into(),
        hook: format!("raw_tracepoint/{tracepoint}"),
        ..Default::default()
    };
    let r = (|| -> Result<u32> {
        let prog: &mut RawTracePoint = ebpf
            .program_mut(name)
            .context("program missing from object")?
            .try_into()?;
        prog.load()?;
        prog.attach(tracepoint)?;
        Ok(prog.info().map(|i| i.id()).unwrap_or(0))
    })();
    match r {
        Ok(id) => {
            st.attached = true;
            st.prog_id = id;
        }
        Err(e) => st.error = format!("{e:#}"),
    }
    st
}

/// Whether the kernel lacks the module syscall tracepoints (no module support built in).
fn module_hooks_missing(status: &[proto::ProgramStatus]) -> bool {
    status
        .iter()
        .any(|s| s.hook.ends_with("init_module") && !s.attached)
}

/// What health says when the kernel has no module syscall tracepoints and the fallback
/// was not asked for.
const NO_MODULE_SUPPORT: &str = "module_load: not captured: this kernel has no module \
    support (no init_module/finit_module syscall tracepoints), so no module can be loaded; \
    --module-load-attempts reports the failed attempts through a hook on every syscall";

/// Catches module load attempts at raw syscall entry instead. It runs on every syscall of
/// the machine (the largest single cost of capture when on) to report attempts that can
/// only fail, so it is attached only when asked for (`--module-load-attempts`).
fn attach_module_fallback(ebpf: &mut Ebpf) -> proto::ProgramStatus {
    let mut st = attach_raw_as(ebpf, "module_sys_enter", "sys_enter");
    st.hook = "raw_tracepoint/sys_enter (module_load fallback)".into();
    st
}

fn attach_syscalls(
    ebpf: &mut Ebpf,
    prog_name: &str,
    dir: &str,
    calls: &[&str],
) -> Vec<proto::ProgramStatus> {
    let prog = match load_tracepoint(ebpf, prog_name) {
        Ok(p) => p,
        Err(e) => {
            return vec![proto::ProgramStatus {
                name: prog_name.into(),
                hook: format!("syscalls/sys_{dir}_*"),
                error: format!("{e:#}"),
                ..Default::default()
            }];
        }
    };
    let id = prog.info().map(|i| i.id()).unwrap_or(0);
    calls
        .iter()
        .map(|call| {
            let tp = format!("sys_{dir}_{call}");
            let mut st = proto::ProgramStatus {
                name: prog_name.into(),
                hook: format!("syscalls/{tp}"),
                prog_id: id,
                ..Default::default()
            };
            match prog.attach("syscalls", &tp) {
                Ok(_) => st.attached = true,
                Err(e) => st.error = format!("{e:#}"),
            }
            st
        })
        .collect()
}

fn load_tracepoint<'a>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut TracePoint> {
    let p: &mut TracePoint = ebpf
        .program_mut(name)
        .context("program missing from object")?
        .try_into()?;
    p.load()?;
    Ok(p)
}

/// Detaches everything, one thread per program. Each tracepoint detach waits for an RCU
/// grace period in the kernel; ninety of them in a row took six seconds.
pub fn detach_all(ebpf: &mut Ebpf) {
    let programs: Vec<&mut aya::programs::Program> = ebpf.programs_mut().map(|(_, p)| p).collect();
    std::thread::scope(|s| {
        for p in programs {
            s.spawn(move || {
                let r = match p {
                    aya::programs::Program::TracePoint(t) => t.unload(),
                    aya::programs::Program::RawTracePoint(t) => t.unload(),
                    aya::programs::Program::Lsm(t) => t.unload(),
                    _ => Ok(()),
                };
                if let Err(e) = r {
                    log::warn!("detaching: {e}");
                }
            });
        }
    });
}

/// Syscall tracepoints are found through tracefs, and the active LSM list through
/// securityfs; a fresh machine may mount neither.
fn ensure_kernel_filesystems() {
    if !Path::new("/sys/kernel/tracing/events").exists()
        && !Path::new("/sys/kernel/debug/tracing/events").exists()
    {
        mount_kernel_fs(c"tracefs", c"/sys/kernel/tracing");
    }
    if !Path::new(LSM_LIST).exists() {
        mount_kernel_fs(c"securityfs", c"/sys/kernel/security");
    }
}

fn mount_kernel_fs(fstype: &std::ffi::CStr, target: &std::ffi::CStr) {
    // SAFETY: NUL-terminated constants; no data.
    let r = unsafe {
        libc::mount(
            fstype.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if r != 0 {
        log::warn!(
            "mounting {fstype:?} on {target:?} failed: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// Running processes with this `comm`, found in /proc (to protect auditd).
pub fn pids_named(comm: &str) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return vec![];
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == comm)
        })
        .collect()
}

/// Whether blocking mode denies execs through BPF LSM on this machine, and why not.
#[derive(Clone, Debug, Default)]
pub struct ExecDenial {
    pub active: bool,
    pub reason: String,
}

const LSM_HOOK: &str = "bprm_check_security";
const LSM_LIST: &str = "/sys/kernel/security/lsm";

/// Loads and attaches the exec-denial program. An LSM program attaches even where the
/// `bpf` LSM is inactive, and then never runs: the active list is checked first, so
/// `active` means the hook really acts. Only blocking mode attaches it; passive mode
/// reports what blocking mode would find.
fn attach_exec_denial(
    ebpf: &mut Ebpf,
    blocking: bool,
) -> (Option<proto::ProgramStatus>, ExecDenial) {
    let inactive = |reason: String| ExecDenial {
        active: false,
        reason,
    };
    match std::fs::read_to_string(LSM_LIST) {
        Ok(list) if list.split(',').any(|l| l.trim() == "bpf") => {}
        Ok(list) => {
            return (
                None,
                inactive(format!("bpf is not an active LSM ({})", list.trim())),
            );
        }
        Err(e) => {
            return (None, inactive(format!("cannot read {LSM_LIST}: {e}")));
        }
    }
    if !blocking {
        return (
            None,
            inactive(
                "bpf is an active LSM; the exec-denial program is loaded in blocking mode".into(),
            ),
        );
    }
    let mut st = proto::ProgramStatus {
        name: LSM_HOOK.into(),
        hook: format!("lsm/{LSM_HOOK}"),
        ..Default::default()
    };
    let r = (|| -> Result<u32> {
        let btf = aya::Btf::from_sys_fs().context("kernel BTF")?;
        let prog: &mut Lsm = ebpf
            .program_mut(LSM_HOOK)
            .context("program missing from object")?
            .try_into()?;
        prog.load(LSM_HOOK, &btf).context("loading")?;
        prog.attach().context("attaching")?;
        Ok(prog.info().map(|i| i.id()).unwrap_or(0))
    })();
    let denial = match r {
        Ok(id) => {
            st.attached = true;
            st.prog_id = id;
            ExecDenial {
                active: true,
                reason: format!("bpf is an active LSM and lsm/{LSM_HOOK} is attached"),
            }
        }
        Err(e) => {
            st.error = format!("{e:#}");
            inactive(format!("the kernel refused lsm/{LSM_HOOK}: {e:#}"))
        }
    };
    (Some(st), denial)
}
