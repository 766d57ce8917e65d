//! The API's doors, tried as a hostile local user and a careless administrator would: the
//! TCP listener serves only mutual TLS, start-up fails loudly on what it cannot honour, the
//! socket and state directory are never borrowed from or handed to another user, and
//! numeric flags stay within their documented ranges.

use std::{
    os::unix::fs::{MetadataExt, PermissionsExt},
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use sensor_proto::{self as proto, sensor_client::SensorClient};
use sensor_tests::{Daemon, TempDir, as_nobody, nobody_uid, sensor_bin};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

/// A certificate authority made for one test, and the PEM files it signs.
struct Pki {
    dir: TempDir,
    ca: CertifiedIssuer<'static, KeyPair>,
}

impl Pki {
    fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let dir = TempDir::new("pki");
        std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
        Self { dir, ca }
    }

    fn ca_pem(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// Signs a leaf for `usage`; returns (certificate, key) paths, the key 0600.
    fn leaf(&self, name: &str, usage: ExtendedKeyUsagePurpose) -> (PathBuf, PathBuf) {
        let mut params =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![usage];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.ca).unwrap();
        let (c, k) = (
            self.dir.path().join(format!("{name}.pem")),
            self.dir.path().join(format!("{name}.key")),
        );
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        std::fs::set_permissions(&k, std::fs::Permissions::from_mode(0o600)).unwrap();
        (c, k)
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs `sensor daemon ARGS` expecting it to refuse to start; returns its output. A daemon
/// that starts anyway is stopped, and the test fails.
fn refused(args: &[&str]) -> Output {
    let dir = TempDir::new("refused");
    let mut cmd = Command::new(sensor_bin());
    cmd.arg("daemon").args(args);
    if !args.contains(&"--socket") {
        cmd.arg("--socket").arg(dir.path().join("sensor.sock"));
    }
    if !args.contains(&"--state-dir") {
        cmd.arg("--state-dir").arg(dir.path().join("state"));
    }
    cmd.arg("--real-time-protection=false")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("daemon {args:?} did not refuse to start within 60 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        !out.status.success(),
        "daemon {args:?} exited 0: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

async fn tls_client(
    port: u16,
    ca: &Path,
    identity: Option<(&Path, &Path)>,
) -> anyhow::Result<SensorClient<Channel>> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(std::fs::read(ca)?))
        .domain_name("localhost");
    if let Some((c, k)) = identity {
        tls = tls.identity(Identity::from_pem(std::fs::read(c)?, std::fs::read(k)?));
    }
    let channel = Endpoint::from_shared(format!("https://127.0.0.1:{port}"))?
        .tls_config(tls)?
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(5))
        .connect()
        .await?;
    Ok(SensorClient::new(channel))
}

async fn health_over(client: anyhow::Result<SensorClient<Channel>>) -> anyhow::Result<()> {
    client?.get_health(proto::GetHealthRequest {}).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn tcp_api_serves_only_clients_with_a_certificate_from_its_ca() {
    let pki = Pki::new("sensor test CA");
    let (server_cert, server_key) = pki.leaf("server", ExtendedKeyUsagePurpose::ServerAuth);
    let (client_cert, client_key) = pki.leaf("client", ExtendedKeyUsagePurpose::ClientAuth);
    let stranger = Pki::new("someone else's CA");
    let (other_cert, other_key) = stranger.leaf("intruder", ExtendedKeyUsagePurpose::ClientAuth);

    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let _d = Daemon::start(&[
        "--grpc-listen",
        &addr,
        "--grpc-tls-cert",
        server_cert.to_str().unwrap(),
        "--grpc-tls-key",
        server_key.to_str().unwrap(),
        "--grpc-tls-client-ca",
        pki.ca_pem().to_str().unwrap(),
    ])
    .unwrap();

    let ca = pki.ca_pem();
    health_over(tls_client(port, &ca, Some((&client_cert, &client_key))).await)
        .await
        .expect("a client certificate signed by the configured CA is served");
    assert!(
        health_over(tls_client(port, &ca, None).await)
            .await
            .is_err(),
        "a TLS client without a certificate was served"
    );
    assert!(
        health_over(tls_client(port, &ca, Some((&other_cert, &other_key))).await)
            .await
            .is_err(),
        "a client certificate from another CA was served"
    );
    // Plain HTTP/2 (what `--grpc-listen` used to serve to anyone) gets nothing either.
    let plain = Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
        .unwrap()
        .timeout(Duration::from_secs(5))
        .connect()
        .await;
    assert!(
        health_over(plain.map(SensorClient::new).map_err(Into::into))
            .await
            .is_err(),
        "a plaintext client was served"
    );
}

#[test]
fn tcp_api_without_tls_material_refuses_to_start() {
    for addr in ["127.0.0.1:0", "0.0.0.0:0"] {
        let out = refused(&["--grpc-listen", addr]);
        let err = stderr(&out);
        assert!(
            err.contains("mutual TLS") && err.contains("--grpc-tls-cert"),
            "no reason given for {addr}: {err}"
        );
    }
}

#[test]
fn tls_key_readable_by_others_is_refused() {
    let pki = Pki::new("sensor test CA");
    let (cert, key) = pki.leaf("server", ExtendedKeyUsagePurpose::ServerAuth);
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = refused(&[
        "--grpc-listen",
        "127.0.0.1:0",
        "--grpc-tls-cert",
        cert.to_str().unwrap(),
        "--grpc-tls-key",
        key.to_str().unwrap(),
        "--grpc-tls-client-ca",
        pki.ca_pem().to_str().unwrap(),
    ]);
    let err = stderr(&out);
    assert!(err.contains("readable by others"), "{err}");
}

#[test]
fn busy_tcp_port_fails_start_up_naming_the_address() {
    let pki = Pki::new("sensor test CA");
    let (cert, key) = pki.leaf("server", ExtendedKeyUsagePurpose::ServerAuth);
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = refused(&[
        "--grpc-listen",
        &addr,
        "--grpc-tls-cert",
        cert.to_str().unwrap(),
        "--grpc-tls-key",
        key.to_str().unwrap(),
        "--grpc-tls-client-ca",
        pki.ca_pem().to_str().unwrap(),
    ]);
    let err = stderr(&out);
    assert!(err.contains(&addr), "the busy address is not named: {err}");
    assert!(
        !err.contains("sensor: ready"),
        "said ready on a busy port: {err}"
    );
}

#[test]
fn socket_path_naming_a_regular_file_is_refused_and_the_file_kept() {
    let dir = TempDir::new("sockfile");
    let victim = dir.path().join("important.txt");
    std::fs::write(&victim, b"keep me").unwrap();
    let out = refused(&["--socket", victim.to_str().unwrap()]);
    assert!(stderr(&out).contains("not a socket"), "{}", stderr(&out));
    assert_eq!(std::fs::read(&victim).unwrap(), b"keep me");
}

#[test]
fn socket_in_a_directory_others_can_write_is_refused() {
    let dir = TempDir::new("sockdir");
    let shared = dir.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let out = refused(&["--socket", shared.join("s.sock").to_str().unwrap()]);
    assert!(
        stderr(&out).contains("writable by others"),
        "{}",
        stderr(&out)
    );

    // A directory of another user is refused too: they could swap the socket for theirs.
    let theirs = dir.path().join("theirs");
    std::fs::create_dir(&theirs).unwrap();
    let uid = nobody_uid();
    std::os::unix::fs::chown(&theirs, Some(uid), None).unwrap();
    let out = refused(&["--socket", theirs.join("s.sock").to_str().unwrap()]);
    assert!(stderr(&out).contains("belongs to uid"), "{}", stderr(&out));
}

#[test]
fn socket_is_root_only_and_refuses_nobody() {
    let d = Daemon::start(&[]).unwrap();
    let m = std::fs::metadata(&d.socket).unwrap();
    assert_eq!(m.mode() & 0o777, 0o600);
    assert_eq!(m.uid(), 0);
    let out = as_nobody(sensor_bin().to_str().unwrap())
        .args(["health", "--socket", d.socket.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success(), "nobody was served over the socket");
}

#[test]
fn state_dir_with_unsafe_mode_is_refused_and_left_as_it_was() {
    let dir = TempDir::new("state");
    let state = dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let out = refused(&["--state-dir", state.to_str().unwrap()]);
    assert!(
        stderr(&out).contains("writable by others"),
        "{}",
        stderr(&out)
    );
    let mode = std::fs::metadata(&state).unwrap().mode() & 0o7777;
    assert_eq!(
        mode, 0o1777,
        "the daemon changed the mode of an existing directory"
    );
}

#[test]
fn new_state_dir_is_private_and_two_daemons_cannot_share_one() {
    let dir = TempDir::new("state2");
    let state = dir.path().join("state");
    let s = state.to_str().unwrap();
    let _first = Daemon::start(&["--state-dir", s]).unwrap();
    assert_eq!(std::fs::metadata(&state).unwrap().mode() & 0o777, 0o700);
    let out = refused(&["--state-dir", s]);
    assert!(
        stderr(&out).contains("uses the state directory"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn numeric_flags_out_of_range_are_refused_with_the_flag_named() {
    let cases: &[(&str, &str)] = &[
        ("--scan-deadline-ms", "0"),
        ("--max-scan-size-mb", "0"),
        ("--max-scan-size-mb", "17592186044416"),
        ("--ring-buffer-mb", "4096"),
        ("--ring-buffer-mb", "0"),
        ("--stream-buffer", "1000000000000"),
        ("--process-table-capacity", "0"),
        ("--scan-workers", "0"),
        ("--blocking-scope-pid", "0"),
    ];
    for (flag, value) in cases {
        let out = refused(&[flag, value]);
        let err = stderr(&out);
        assert!(
            err.contains(flag) && !err.contains("panicked"),
            "{flag} {value}: {err}"
        );
    }
}

#[test]
fn sigterm_ends_a_start_up_that_cannot_finish() {
    // A FIFO nobody writes to: reading it as the detections config never ends.
    let dir = TempDir::new("fifo");
    let fifo = dir.path().join("detections.json");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let mut child = Command::new(sensor_bin())
        .args([
            "daemon",
            "--real-time-protection=false",
            "--detections-config",
        ])
        .arg(&fifo)
        .arg("--socket")
        .arg(dir.path().join("s.sock"))
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(5);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("SIGTERM during start-up was not honoured within 5 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
