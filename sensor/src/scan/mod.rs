//! The scan engine: decides whether a file's content is malware.
//!
//! Three engines, cheapest first: the EICAR test file ([`eicar`]), ClamAV hash signatures
//! ([`clamav`]) and YARA rules (yara-x). The definitions they use ([`definitions`]) can be
//! replaced while scans run: each scan takes the set current when it starts and keeps it
//! to the end, so a verdict always names the version that produced it.
//!
//! Both real-time protection and on-demand scans come here; neither trusts a path for
//! content. Real-time protection hands in the fd fanotify opened, so what is scanned is
//! what the process is about to open.

pub mod clamav;
pub mod definitions;
pub mod eicar;

use std::{
    fs::File,
    os::unix::fs::FileExt,
    sync::{Arc, RwLock},
    time::Duration,
};

use definitions::Definitions;

/// YARA rules can be slow on hostile input; a scan past this gives up (and allows).
const YARA_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Threat {
    pub name: String,
    /// eicar, hash or yara
    pub engine: &'static str,
}

#[derive(Debug)]
pub enum Verdict {
    Clean,
    Threat(Threat, ScannedFile),
    /// Over the size limit: not scanned, allowed.
    TooLarge,
    Error(String),
}

/// What was read of a file found malicious: enough to quarantine it and report it without
/// going back to a path that may have changed since.
#[derive(Debug)]
pub struct ScannedFile {
    pub data: Vec<u8>,
    pub sha256: String,
}

pub struct Engine {
    defs: RwLock<Arc<Definitions>>,
    max_size: u64,
}

impl Engine {
    pub fn new(defs: Definitions, max_size: u64) -> Self {
        Self {
            defs: RwLock::new(Arc::new(defs)),
            max_size,
        }
    }

    pub fn definitions(&self) -> Arc<Definitions> {
        self.defs.read().unwrap().clone()
    }

    pub fn replace(&self, defs: Definitions) {
        *self.defs.write().unwrap() = Arc::new(defs);
    }

    pub fn max_size(&self) -> u64 {
        self.max_size
    }

    /// The verdict a file's size alone gives: over the limit, or (most files) a size
    /// nothing can match: too long for EICAR, a size no hash signature has, and no YARA
    /// rules loaded. Such content is never read.
    pub fn verdict_by_size(&self, size: u64, defs: &Definitions) -> Option<Verdict> {
        if size > self.max_size {
            Some(Verdict::TooLarge)
        } else if !defs.could_match(size) {
            Some(Verdict::Clean)
        } else {
            None
        }
    }

    /// Scans an open file from offset 0, without moving its offset. `size` is what the
    /// caller's fstat said: the read still goes to the end, bounded by the size limit.
    pub fn scan_file(&self, file: &File, size: u64, defs: &Definitions) -> Verdict {
        if let Some(v) = self.verdict_by_size(size, defs) {
            return v;
        }
        let data = match read_all(file, size, self.max_size) {
            Ok(Some(d)) => d,
            Ok(None) => return Verdict::TooLarge,
            Err(e) => return Verdict::Error(format!("read: {e}")),
        };
        match scan_bytes(defs, &data) {
            Ok(None) => Verdict::Clean,
            Ok(Some(t)) => {
                let sha256 = sha256_hex(&data);
                Verdict::Threat(t, ScannedFile { data, sha256 })
            }
            Err(e) => Verdict::Error(e),
        }
    }
}

/// The file's bytes, or None when it grew past `max` while being read.
fn read_all(file: &File, size_hint: u64, max: u64) -> std::io::Result<Option<Vec<u8>>> {
    let mut data = Vec::with_capacity(size_hint as usize);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match file.read_at(&mut buf, data.len() as u64) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if n == 0 {
            return Ok(Some(data));
        }
        data.extend_from_slice(&buf[..n]);
        if data.len() as u64 > max {
            return Ok(None);
        }
    }
}

pub fn scan_bytes(defs: &Definitions, data: &[u8]) -> Result<Option<Threat>, String> {
    if eicar::matches(data) {
        return Ok(Some(Threat {
            name: eicar::NAME.into(),
            engine: "eicar",
        }));
    }
    if let Some(name) = defs.hashes.lookup(data) {
        return Ok(Some(Threat {
            name,
            engine: "hash",
        }));
    }
    if let Some(rules) = &defs.yara {
        let mut scanner = yara_x::Scanner::new(rules);
        scanner.set_timeout(YARA_TIMEOUT);
        let results = scanner.scan(data).map_err(|e| format!("yara: {e}"))?;
        if let Some(r) = results.matching_rules().next() {
            return Ok(Some(Threat {
                name: r.identifier().to_string(),
                engine: "yara",
            }));
        }
    }
    Ok(None)
}

pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engines_in_order_and_size_limit() {
        let dir = std::env::temp_dir().join(format!("sensor-scan-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("r.yar"),
            "rule Sensor_Test_Marker { strings: $a = \"marker-7f3a\" condition: $a }",
        )
        .unwrap();
        let defs = Definitions::load_dir(&dir).unwrap();
        assert_eq!(
            scan_bytes(&defs, eicar::STRING).unwrap().unwrap().engine,
            "eicar"
        );
        let hit = scan_bytes(&defs, b"....marker-7f3a....").unwrap().unwrap();
        assert_eq!(
            (hit.name.as_str(), hit.engine),
            ("Sensor_Test_Marker", "yara")
        );
        assert_eq!(scan_bytes(&defs, b"clean").unwrap(), None);

        let f = dir.join("big");
        std::fs::write(&f, vec![b'a'; 100]).unwrap();
        let engine = Engine::new(Definitions::builtin(), 99);
        let file = File::open(&f).unwrap();
        assert!(matches!(
            engine.scan_file(&file, 100, &engine.definitions()),
            Verdict::TooLarge
        ));
        std::fs::write(&f, eicar::STRING).unwrap();
        let file = File::open(&f).unwrap();
        let size = eicar::STRING.len() as u64;
        match engine.scan_file(&file, size, &engine.definitions()) {
            Verdict::Threat(t, s) => {
                assert_eq!(t.name, eicar::NAME);
                assert_eq!(s.data, eicar::STRING);
                assert_eq!(s.sha256, sha256_hex(eicar::STRING));
            }
            v => panic!("{v:?}"),
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
