//! The EICAR anti-malware test file, matched exactly as EICAR defines it: the 68-byte string
//! at offset 0, followed by nothing but whitespace or Ctrl-Z, 128 bytes at most in all. The
//! same string inside a larger file is not the test file; every vendor agrees on that, and
//! test suites rely on it.

pub const NAME: &str = "EICAR-Test-File";

pub const STRING: &[u8; 68] =
    b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";

pub const MAX_LEN: usize = 128;

pub fn matches(data: &[u8]) -> bool {
    data.len() <= MAX_LEN
        && data.starts_with(STRING)
        && data[STRING.len()..]
            .iter()
            .all(|&b| b.is_ascii_whitespace() || b == 0x1a)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_string_with_allowed_padding() {
        assert!(matches(STRING));
        let mut echoed = STRING.to_vec();
        echoed.push(b'\n');
        assert!(matches(&echoed));
        let mut dos = STRING.to_vec();
        dos.extend_from_slice(b"\r\n\x1a");
        assert!(matches(&dos));
        let mut padded = STRING.to_vec();
        padded.resize(MAX_LEN, b' ');
        assert!(matches(&padded));
    }

    #[test]
    fn anything_else_is_not_the_test_file() {
        let mut long = STRING.to_vec();
        long.resize(MAX_LEN + 1, b' ');
        assert!(!matches(&long));
        let mut trailing = STRING.to_vec();
        trailing.extend_from_slice(b" x");
        assert!(!matches(&trailing));
        let mut buried = b"#!/bin/sh\n".to_vec();
        buried.extend_from_slice(STRING);
        assert!(!matches(&buried));
        assert!(!matches(&STRING[..67]));
        assert!(!matches(b""));
    }
}
