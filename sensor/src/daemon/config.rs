//! The daemon's settings: flags as given ([`DaemonArgs`]), then checked once into a
//! [`DaemonConfig`] that the rest of start-up trusts. Every refusal names the flag.

use std::{collections::HashSet, net::SocketAddr, path::PathBuf, time::Duration};

use anyhow::{Context, Result};
use sensor_common::EventKind;

use crate::{
    antimalware::{DEFAULT_DEADLINE, default_workers, rtp::RtpConfig},
    api::tcp::TcpApi,
    detect::DetectConfig,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Detect and report only.
    Passive,
    /// Also stop what detections and real-time protection mark as preventable.
    Blocking,
}

#[derive(Clone, Debug, clap::Args)]
pub struct DaemonArgs {
    #[arg(long, value_enum, default_value = "passive")]
    pub mode: Mode,
    /// Unix socket of the gRPC API (0600, in a root-owned directory nobody else can write).
    #[arg(long, default_value = crate::cli::DEFAULT_SOCKET)]
    pub socket: PathBuf,
    /// Also serve gRPC on this TCP address (e.g. 127.0.0.1:50051), over mutual TLS only:
    /// needs --grpc-tls-cert, --grpc-tls-key and --grpc-tls-client-ca.
    #[arg(long)]
    pub grpc_listen: Option<SocketAddr>,
    /// Certificate chain (PEM) the TCP listener presents.
    #[arg(long, requires = "grpc_listen")]
    pub grpc_tls_cert: Option<PathBuf>,
    /// Private key (PEM) of --grpc-tls-cert; must be readable by root only.
    #[arg(long, requires = "grpc_listen")]
    pub grpc_tls_key: Option<PathBuf>,
    /// CA certificate(s) (PEM) a TCP client's certificate must chain to.
    #[arg(long, requires = "grpc_listen")]
    pub grpc_tls_client_ca: Option<PathBuf>,
    /// Event kinds not to capture, comma-separated (e.g. dns_query,mprotect_exec).
    #[arg(long, value_delimiter = ',')]
    pub disable: Vec<String>,
    /// Size of the kernel ring buffer in MiB: a power of two, 1 to 1024.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub ring_buffer_mb: u32,
    /// Hard bound on the process table: 256 to 4194304 processes.
    #[arg(long, default_value_t = 32768, value_parser = ranged::<usize>(256, 4_194_304))]
    pub process_table_capacity: usize,
    /// In blocking mode, stop only this process and its descendants (a staged roll-out;
    /// elsewhere detections are reported as in passive mode). A pid from 1 to 4194304.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=4_194_304))]
    pub blocking_scope_pid: Option<u32>,
    /// Directory of extra Sigma rules (*.yml) on top of the shipped ones.
    #[arg(long)]
    pub sigma_rules: Option<PathBuf>,
    /// Detection settings (JSON: disabled ids, allowlists, windows).
    #[arg(long)]
    pub detections_config: Option<PathBuf>,
    /// Events a stream subscriber may fall behind before it loses the oldest: 16 to 1048576.
    #[arg(long, default_value_t = 4096, value_parser = ranged::<usize>(16, 1 << 20))]
    pub stream_buffer: usize,
    /// Where definitions, quarantine, threat history and exclusions are kept. Created 0700
    /// if absent; an existing one must be owned by root and writable by nobody else.
    #[arg(long, default_value = "/var/lib/sensor")]
    pub state_dir: PathBuf,
    /// Real-time protection: scan files on exec (and open) and after they are written.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub real_time_protection: bool,
    /// Scan plain opens too, not only execs (default: on in blocking mode).
    #[arg(long, action = clap::ArgAction::Set)]
    pub scan_on_open: Option<bool>,
    /// Mount points to protect instead of every local filesystem (repeatable).
    #[arg(long)]
    pub rtp_mount: Vec<PathBuf>,
    /// Mount points not to protect (repeatable).
    #[arg(long)]
    pub rtp_exclude_mount: Vec<PathBuf>,
    /// Every open or exec waiting on a scan is answered within this; past it, allowed.
    /// 100 to 600000 ms.
    #[arg(
        long,
        default_value_t = DEFAULT_DEADLINE.as_millis() as u64,
        value_parser = clap::value_parser!(u64).range(100..=600_000)
    )]
    pub scan_deadline_ms: u64,
    /// Parallel scan workers (real-time and on-demand), 1 to 256; default: one per CPU, at
    /// least 2.
    #[arg(long, value_parser = ranged::<usize>(1, 256))]
    pub scan_workers: Option<usize>,
    /// Files larger than this are not scanned (allowed and counted): 1 to 4096 MiB.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=4096))]
    pub max_scan_size_mb: u64,
    /// Count each kernel program's runs and run time (`sensor diagnostic
    /// ebpf-statistics`). Off by default: while on, the kernel times every BPF program on
    /// the machine, not only the sensor's.
    #[arg(long)]
    pub bpf_statistics: bool,
    /// On a kernel built without module support (no init_module/finit_module syscall
    /// tracepoints), report module load attempts anyway; they always fail there. Off by
    /// default: the hook runs on every syscall of the machine. No effect where the
    /// tracepoints exist: module loads are always captured there.
    #[arg(long)]
    pub module_load_attempts: bool,
    /// Delay added to every scan: proves the deadline, fail-open and cancel paths.
    #[arg(long, default_value_t = 0, hide = true,
          value_parser = clap::value_parser!(u64).range(0..=600_000))]
    pub debug_scan_delay_ms: u64,
}

/// A clap parser for an integer flag within `min..=max`, so a typo is refused with the range
/// instead of silently becoming something else.
fn ranged<T>(min: u64, max: u64) -> clap::builder::RangedU64ValueParser<T>
where
    T: TryFrom<u64> + Clone + Send + Sync + 'static,
    <T as TryFrom<u64>>::Error: std::fmt::Display + Send + Sync + 'static,
{
    clap::builder::RangedU64ValueParser::<T>::new().range(min..=max)
}

/// The daemon's settings, checked: what start-up builds the daemon from.
pub struct DaemonConfig {
    pub mode: Mode,
    pub socket: PathBuf,
    pub tcp: Option<TcpApi>,
    /// Kinds the kernel programs do not capture.
    pub disabled: HashSet<EventKind>,
    pub ring_buffer_bytes: u32,
    pub process_table_capacity: usize,
    pub blocking_scope_pid: Option<u32>,
    pub sigma_rules: Option<PathBuf>,
    pub detect: DetectConfig,
    pub stream_buffer: usize,
    pub state_dir: PathBuf,
    pub real_time_protection: bool,
    pub rtp: RtpConfig,
    pub max_file_size: u64,
    pub bpf_statistics: bool,
    pub module_load_attempts: bool,
}

impl DaemonConfig {
    /// Checks what clap's own parsers cannot (a power of two, kind names) and reads the
    /// files the flags name (detection settings, TLS material).
    pub fn from_args(args: DaemonArgs) -> Result<Self> {
        let disabled = parse_kinds(&args.disable).context("--disable")?;
        let detect = match &args.detections_config {
            Some(p) => DetectConfig::load(p)?,
            None => DetectConfig::default(),
        };
        if !args.ring_buffer_mb.is_power_of_two() {
            anyhow::bail!(
                "--ring-buffer-mb must be a power of two, got {}",
                args.ring_buffer_mb
            );
        }
        let tcp = TcpApi::from_flags(
            args.grpc_listen,
            args.grpc_tls_cert.as_deref(),
            args.grpc_tls_key.as_deref(),
            args.grpc_tls_client_ca.as_deref(),
        )?;
        let blocking = args.mode == Mode::Blocking;
        let drop_window = blocking.then(|| detect.drop_exec_window());
        Ok(Self {
            mode: args.mode,
            socket: args.socket,
            tcp,
            disabled,
            ring_buffer_bytes: args.ring_buffer_mb * 1024 * 1024,
            process_table_capacity: args.process_table_capacity,
            blocking_scope_pid: args.blocking_scope_pid,
            sigma_rules: args.sigma_rules,
            detect,
            stream_buffer: args.stream_buffer,
            state_dir: args.state_dir,
            real_time_protection: args.real_time_protection,
            rtp: RtpConfig {
                scan_on_open: args.scan_on_open.unwrap_or(blocking),
                mounts: args.rtp_mount,
                exclude_mounts: args.rtp_exclude_mount,
                workers: args.scan_workers.unwrap_or_else(default_workers),
                deadline: Duration::from_millis(args.scan_deadline_ms),
                scan_delay: Duration::from_millis(args.debug_scan_delay_ms),
                drop_window,
            },
            max_file_size: args.max_scan_size_mb * 1024 * 1024,
            bpf_statistics: args.bpf_statistics,
            module_load_attempts: args.module_load_attempts,
        })
    }

    pub fn blocking(&self) -> bool {
        self.mode == Mode::Blocking
    }
}

fn parse_kinds(names: &[String]) -> Result<HashSet<EventKind>> {
    names
        .iter()
        .filter(|n| !n.is_empty())
        .map(|n| EventKind::from_name(n).with_context(|| format!("unknown event kind {n:?}")))
        .collect()
}
