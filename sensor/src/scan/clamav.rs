//! ClamAV hash-signature databases, read as ClamAV writes them.
//!
//! - `.hdb` (and `.hdu`): `MD5:size:Name`
//! - `.hsb` (and `.hsu`): `SHA1:size:Name` or `SHA256:size:Name`; size may be `*` (any size)
//!
//! ClamAV lets a line end with functionality-level fields (`:MinFL[:MaxFL]`); they are
//! accepted and ignored. Signatures are indexed by hash, and the sizes that carry signatures
//! are kept apart, so a file whose size matches no signature is never hashed at all: most
//! files on a real system are not.

use std::{
    collections::{HashMap, HashSet},
    io::{BufRead, Read},
};

use anyhow::{Context, Result, bail};

/// Longest line a hash database may have: a SHA-256, a size and a name fit many times over.
pub const MAX_LINE: usize = 4096;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Algo {
    Md5,
    Sha1,
    Sha256,
}

impl Algo {
    fn from_hex_len(n: usize) -> Option<Self> {
        match n {
            32 => Some(Self::Md5),
            40 => Some(Self::Sha1),
            64 => Some(Self::Sha256),
            _ => None,
        }
    }
}

#[derive(Default)]
struct Table {
    by_hash: HashMap<Vec<u8>, Vec<(Option<u64>, String)>>,
    sizes: HashSet<u64>,
    any_size: bool,
}

impl Table {
    fn wants(&self, size: u64) -> bool {
        self.any_size || self.sizes.contains(&size)
    }

    fn lookup(&self, digest: &[u8], size: u64) -> Option<&str> {
        self.by_hash
            .get(digest)?
            .iter()
            .find(|(s, _)| s.is_none_or(|s| s == size))
            .map(|(_, n)| n.as_str())
    }
}

/// Every hash signature of a definitions set.
#[derive(Default)]
pub struct HashDb {
    tables: [Table; 3],
    count: usize,
}

impl HashDb {
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    fn table(&mut self, a: Algo) -> &mut Table {
        &mut self.tables[a as usize]
    }

    /// Adds the signatures of one database file held in memory (see [`Self::load_lines`]).
    pub fn load(&mut self, file: &str, text: &str, sha_only: bool) -> Result<usize> {
        self.load_lines(file, text.as_bytes(), sha_only)
    }

    /// Adds the signatures of one database file, read a line at a time so that a large
    /// database never sits in memory whole. `sha_only` is set for `.hsb` files, whose
    /// hashes are SHA-1 or SHA-256 and may have `*` sizes; `.hdb` hashes are MD5.
    ///
    /// Errors name the file and line and say what was expected, never what was found: the
    /// file may be something its author should not be able to read.
    pub fn load_lines(
        &mut self,
        file: &str,
        mut db: impl BufRead,
        sha_only: bool,
    ) -> Result<usize> {
        let mut n = 0;
        let mut raw = Vec::new();
        for number in 1.. {
            raw.clear();
            let read = (&mut db)
                .take(MAX_LINE as u64 + 1)
                .read_until(b'\n', &mut raw)
                .with_context(|| format!("{file}:{number}"))?;
            if read == 0 {
                break;
            }
            if raw.len() > MAX_LINE {
                bail!("{file}:{number}: line longer than {MAX_LINE} bytes");
            }
            let Ok(line) = std::str::from_utf8(&raw) else {
                bail!("{file}:{number}: not UTF-8 text");
            };
            let line = line.trim_end_matches(['\n', '\r']);
            if line.trim().is_empty() {
                continue;
            }
            self.add_line(line, sha_only)
                .map_err(|what| anyhow::anyhow!("{file}:{number}: {what}"))?;
            n += 1;
        }
        self.count += n;
        Ok(n)
    }

    /// One `HASH:SIZE:NAME[:MinFL[:MaxFL]]` line; the error says what was expected.
    fn add_line(&mut self, line: &str, sha_only: bool) -> Result<(), String> {
        let mut f = line.splitn(4, ':');
        let (Some(hash), Some(size), Some(name)) = (f.next(), f.next(), f.next()) else {
            return Err("expected HASH:SIZE:NAME".into());
        };
        let Some(algo) = Algo::from_hex_len(hash.len()) else {
            return Err(
                "expected an MD5, SHA-1 or SHA-256 hex digest (32, 40 or 64 digits)".into(),
            );
        };
        if sha_only == (algo == Algo::Md5) {
            let want = if sha_only { "SHA-1 or SHA-256" } else { "MD5" };
            return Err(format!("this database holds {want} hashes"));
        }
        let Some(digest) = decode_hex(hash) else {
            return Err("the digest is not hexadecimal".into());
        };
        let size = match size {
            "*" if sha_only => None,
            s => match s.parse::<u64>() {
                Ok(v) => Some(v),
                Err(_) if sha_only => {
                    return Err("bad size: expected a number of bytes or *".into());
                }
                Err(_) => return Err("bad size: expected a number of bytes".into()),
            },
        };
        if name.is_empty() || name.chars().any(|c| c.is_control()) {
            return Err("missing or bad signature name".into());
        }
        let t = self.table(algo);
        match size {
            Some(s) => {
                t.sizes.insert(s);
            }
            None => t.any_size = true,
        }
        t.by_hash
            .entry(digest)
            .or_default()
            .push((size, name.to_string()));
        Ok(())
    }

    /// Whether any signature could match a file of this size.
    pub fn wants(&self, size: u64) -> bool {
        self.tables.iter().any(|t| t.wants(size))
    }

    /// The name of the first signature `data` matches. Only the digests some signature of
    /// this size needs are computed.
    pub fn lookup(&self, data: &[u8]) -> Option<String> {
        use sha2::Digest;
        let size = data.len() as u64;
        let [md5, sha1, sha256] = &self.tables;
        if md5.wants(size)
            && let Some(n) = md5.lookup(&md5::Md5::digest(data), size)
        {
            return Some(n.to_string());
        }
        if sha1.wants(size)
            && let Some(n) = sha1.lookup(&sha1::Sha1::digest(data), size)
        {
            return Some(n.to_string());
        }
        if sha256.wants(size)
            && let Some(n) = sha256.lookup(&sha2::Sha256::digest(data), size)
        {
            return Some(n.to_string());
        }
        None
    }
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(d: &[u8]) -> String {
        d.iter().map(|b| format!("{b:02x}")).collect()
    }

    const EICAR: &[u8] = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*\n";

    #[test]
    fn hdb_and_hsb_lines_as_clamav_writes_them() {
        use sha2::Digest;
        let md5 = hex(&md5::Md5::digest(EICAR));
        let sha1 = hex(&sha1::Sha1::digest(b"other"));
        let sha256 = hex(&sha2::Sha256::digest(b"third file")).to_uppercase();
        let mut db = HashDb::default();
        db.load("a.hdb", &format!("{md5}:69:Eicar-Hdb\n\n"), false)
            .unwrap();
        db.load(
            "b.hsb",
            &format!("{sha1}:5:Other-Sha1:73\r\n{sha256}:*:Third-Sha256\n"),
            true,
        )
        .unwrap();
        assert_eq!(db.len(), 3);
        assert_eq!(db.lookup(EICAR).as_deref(), Some("Eicar-Hdb"));
        assert_eq!(db.lookup(b"other").as_deref(), Some("Other-Sha1"));
        assert_eq!(db.lookup(b"third file").as_deref(), Some("Third-Sha256"));
        assert_eq!(db.lookup(b"clean"), None);
    }

    #[test]
    fn size_must_match_unless_any() {
        use sha2::Digest;
        let md5 = hex(&md5::Md5::digest(b"abc"));
        let mut db = HashDb::default();
        db.load("x.hdb", &format!("{md5}:4:Wrong-Size"), false)
            .unwrap();
        assert_eq!(db.lookup(b"abc"), None);
    }

    #[test]
    fn malformed_lines_are_refused_with_their_place() {
        let md5 = "44d88612fea8a8f36de82e1278abb02f";
        for (text, sha_only, want) in [
            ("nocolons", false, "x:1"),
            (&format!("{md5}:abc:Name") as &str, false, "bad size"),
            (&format!("{md5}:*:Name"), false, "bad size"),
            (&format!("{md5}:68:"), false, "signature name"),
            ("zz:68:Name", false, "digest"),
            (&format!("{md5}:68:Name"), true, "SHA-1 or SHA-256"),
            (&format!("{}:68:Name", "g".repeat(32)), false, "hexadecimal"),
        ] {
            let err = HashDb::default()
                .load("x", text, sha_only)
                .unwrap_err()
                .to_string();
            assert!(err.contains(want), "{text:?}: {err}");
            assert!(!err.contains("Name") && !err.contains("abc"), "{err}");
        }
        let long = format!("{md5}:68:{}\n", "N".repeat(MAX_LINE));
        let err = HashDb::default().load("x", &long, false).unwrap_err();
        assert!(err.to_string().contains("x:1: line longer than"), "{err}");
    }
}
