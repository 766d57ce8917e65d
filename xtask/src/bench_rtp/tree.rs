//! Trees the bench writes: sizes and counts of what was written, the pseudo-random
//! source that keeps runs reproducible, and the mixed on-disk tree `scan custom` is
//! timed on.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use sensor_testkit::EICAR;

use super::guards::check_interrupted;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) struct TreeStats {
    pub(super) files: u64,
    pub(super) bytes: u64,
}

/// splitmix64: reproducible, fast, and needs no dependency.
pub(super) struct Rng(u64);

impl Rng {
    pub(super) fn new(seed: u64) -> Self {
        Self(seed ^ 0x5eed_b0a7_c0ff_ee00)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub(super) fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    pub(super) fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let word = self.next().to_le_bytes();
            chunk.copy_from_slice(&word[..chunk.len()]);
        }
    }
}

const WORDS: &str = "the process kernel file open read scan verdict cache signature daemon \
    mount inode event permission deny allow hash rule match socket config a of to and in is for \
    with on by this";

/// Where the mixed tree holds its EICAR file.
pub(super) const TREE_EICAR: &str = "docs/eicar.com";

/// About `target` bytes in nested directories: two fifths copies of
/// /usr/bin's executables, one fifth text, the rest pseudo-random data, plus
/// one EICAR file so the summary shows the engine really looked.
pub(super) fn build_mixed_tree(root: &Path, target: u64) -> Result<TreeStats> {
    let mut stats = TreeStats { files: 0, bytes: 0 };
    let mut rng = Rng::new(target);
    let write = |stats: &mut TreeStats, path: PathBuf, data: &[u8]| -> Result<()> {
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        fs::write(&path, data).with_context(|| format!("cannot write {}", path.display()))?;
        stats.files += 1;
        stats.bytes += data.len() as u64;
        Ok(())
    };

    let binaries = executables("/usr/bin")?;
    let bin_budget = target * 2 / 5;
    let mut i = 0usize;
    while stats.bytes < bin_budget && !binaries.is_empty() {
        check_interrupted()?;
        let src = &binaries[i % binaries.len()];
        // Read and write rather than fs::copy, which would carry set-uid bits over.
        let data = fs::read(src).with_context(|| format!("cannot read {}", src.display()))?;
        let name = src
            .file_name()
            .map_or("bin".into(), |n| n.to_string_lossy());
        let dst = root.join(format!("bin/{}/{}/{name}.{i}", i % 8, i % 3));
        write(&mut stats, dst, &data)?;
        i += 1;
    }

    let text_budget = stats.bytes + target / 5;
    let mut i = 0u64;
    let mut text = String::new();
    let words: Vec<&str> = WORDS.split_whitespace().collect();
    while stats.bytes < text_budget {
        check_interrupted()?;
        let size = 1024 + rng.below(63 * 1024) as usize;
        text.clear();
        while text.len() < size {
            let word = words[rng.below(words.len() as u64) as usize];
            text.push_str(word);
            text.push(if rng.below(12) == 0 { '\n' } else { ' ' });
        }
        let dst = root.join(format!("docs/{}/{}/{}/note-{i}.txt", i % 5, i % 7, i % 2));
        write(&mut stats, dst, text.as_bytes())?;
        i += 1;
    }

    let mut i = 0u64;
    let mut data = Vec::new();
    while stats.bytes < target {
        check_interrupted()?;
        let size = 64 * 1024 + rng.below(4 * 1024 * 1024) as usize;
        data.resize(size, 0);
        rng.fill(&mut data);
        let dst = root.join(format!("data/{}/blob-{i}.bin", i % 4));
        write(&mut stats, dst, &data)?;
        i += 1;
    }

    write(&mut stats, root.join(TREE_EICAR), EICAR)?;
    Ok(stats)
}

/// Regular files (not symlinks) of `dir` up to 32 MB, in a stable order.
fn executables(dir: &str) -> Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir).with_context(|| format!("cannot list {dir}"))? {
        let Ok(entry) = entry else { continue };
        let Ok(meta) = entry.path().symlink_metadata() else {
            continue;
        };
        if meta.is_file() && meta.len() > 0 && meta.len() <= 32 << 20 {
            found.push(entry.path());
        }
    }
    found.sort();
    Ok(found)
}
