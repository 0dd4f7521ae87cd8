//! OpenSSH known_hosts lookup, done by us rather than by libssh2.
//!
//! libssh2 does not pick its host-key algorithm from known_hosts, so a host
//! known only by its RSA key reads as a mismatch when the server offers
//! ed25519. We read the files ourselves: the key types recorded for a host
//! decide the algorithm preference, and the key the server shows is compared
//! with the recorded ones. Plain, wildcard, negated, `[host]:port` and hashed
//! (`|1|salt|hash`) entries are understood; `@revoked` keys are refused;
//! `@cert-authority` lines are skipped.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// One recorded key: its type name (`ssh-ed25519`, ...) and base64 blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownKey {
    pub key_type: String,
    pub blob: String,
    pub file: PathBuf,
    pub line: usize,
}

/// What the files say about a host.
#[derive(Debug, Default)]
pub struct Lookup {
    pub keys: Vec<KnownKey>,
    pub revoked: Vec<KnownKey>,
}

/// The result of comparing a server's key with the files.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Match,
    /// The host is recorded, but not with this key.
    Mismatch,
    NotFound,
    Revoked,
}

/// The name known_hosts uses for a host: `host`, or `[host]:port` off 22.
pub fn host_label(host: &str, port: u16) -> String {
    if port == 22 {
        host.to_string()
    } else {
        format!("[{host}]:{port}")
    }
}

/// Collect every key recorded for any of `names` (e.g. ssh_host and ssh_ip)
/// at `port` in `files`. Missing files are skipped.
pub fn lookup(files: &[PathBuf], names: &[&str], port: u16) -> Result<Lookup> {
    let labels: Vec<String> = names.iter().map(|n| host_label(n, port)).collect();
    let mut out = Lookup::default();
    for file in files {
        let text = match fs::read_to_string(file) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", file.display())),
        };
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut fields = line.split_whitespace();
            let mut first = fields.next().unwrap_or_default();
            let mut revoked = false;
            if let Some(marker) = first.strip_prefix('@') {
                match marker {
                    "revoked" => revoked = true,
                    _ => continue,
                }
                first = fields.next().unwrap_or_default();
            }
            let (Some(key_type), Some(blob)) = (fields.next(), fields.next()) else {
                continue;
            };
            if !labels.iter().any(|l| patterns_match(first, l)) {
                continue;
            }
            let key = KnownKey {
                key_type: key_type.to_string(),
                blob: blob.to_string(),
                file: file.clone(),
                line: i + 1,
            };
            if revoked {
                out.revoked.push(key);
            } else {
                out.keys.push(key);
            }
        }
    }
    Ok(out)
}

impl Lookup {
    /// Compare the key a server presented (type name and raw blob).
    pub fn verdict(&self, key_type: &str, blob: &[u8]) -> Verdict {
        let b64 = base64_encode(blob);
        if self.revoked.iter().any(|k| k.blob == b64) {
            return Verdict::Revoked;
        }
        if self
            .keys
            .iter()
            .any(|k| k.key_type == key_type && k.blob == b64)
        {
            return Verdict::Match;
        }
        if self.keys.is_empty() {
            Verdict::NotFound
        } else {
            Verdict::Mismatch
        }
    }

    /// libssh2 host-key method preference built from the recorded key types,
    /// best first. Empty when nothing is recorded.
    pub fn hostkey_methods(&self) -> String {
        const ORDER: &[(&str, &[&str])] = &[
            ("ssh-ed25519", &["ssh-ed25519"]),
            ("ecdsa-sha2-nistp256", &["ecdsa-sha2-nistp256"]),
            ("ecdsa-sha2-nistp384", &["ecdsa-sha2-nistp384"]),
            ("ecdsa-sha2-nistp521", &["ecdsa-sha2-nistp521"]),
            ("ssh-rsa", &["rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"]),
            ("ssh-dss", &["ssh-dss"]),
        ];
        let mut methods = Vec::new();
        for (recorded, wire) in ORDER {
            if self.keys.iter().any(|k| k.key_type == *recorded) {
                methods.extend_from_slice(wire);
            }
        }
        methods.join(",")
    }
}

/// Whether new keys may be appended to `file`: a regular file we can
/// write, or a missing file in a directory we can write. Not `/dev/null`
/// or any other device, and not a file opened read-only.
pub fn recordable(file: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let writable = |p: &Path| {
        let Ok(c) = std::ffi::CString::new(p.as_os_str().as_bytes()) else {
            return false;
        };
        // SAFETY: a valid C string for the duration of the call.
        unsafe { libc::access(c.as_ptr(), libc::W_OK) == 0 }
    };
    match fs::metadata(file) {
        Ok(m) => m.is_file() && writable(file),
        Err(_) => file.parent().is_some_and(|d| d.is_dir() && writable(d)),
    }
}

/// OpenSSH's fingerprint of a key blob: `SHA256:` and unpadded base64.
pub fn fingerprint(blob: &[u8]) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(blob);
    format!("SHA256:{}", base64_encode(&digest).trim_end_matches('='))
}

/// Append `label key_type blob` to `file` (accept-new), creating it 0600.
pub fn append(file: &Path, label: &str, key_type: &str, blob: &[u8]) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = file.parent() {
        fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let mut f = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(file)
        .with_context(|| format!("cannot open {} for writing", file.display()))?;
    // One write(2) per line: hosts are connected in parallel, and pieces of
    // lines written separately by two of them would interleave.
    let line = format!("{label} {key_type} {}\n", base64_encode(blob));
    f.write_all(line.as_bytes())
        .and_then(|_| f.sync_all())
        .with_context(|| format!("cannot write {}", file.display()))
}

/// A comma-separated pattern list as OpenSSH reads it: any positive match
/// and no negated match; a hashed entry is one exact name.
fn patterns_match(list: &str, label: &str) -> bool {
    if let Some(hashed) = list.strip_prefix("|1|") {
        return hashed_match(hashed, label);
    }
    let mut matched = false;
    for pat in list.split(',') {
        if let Some(neg) = pat.strip_prefix('!') {
            if glob(neg, label) {
                return false;
            }
        } else if glob(pat, label) {
            matched = true;
        }
    }
    matched
}

fn hashed_match(salt_and_hash: &str, label: &str) -> bool {
    let Some((salt, hash)) = salt_and_hash.split_once('|') else {
        return false;
    };
    match (base64_decode(salt), base64_decode(hash)) {
        (Some(salt), Some(hash)) => hmac_sha1(&salt, label.as_bytes())[..] == hash[..],
        _ => false,
    }
}

/// `*` and `?` wildcards, case-insensitive like OpenSSH host patterns.
fn glob(pat: &str, s: &str) -> bool {
    let p: Vec<char> = pat.to_ascii_lowercase().chars().collect();
    let s: Vec<char> = s.to_ascii_lowercase().chars().collect();
    let (mut pi, mut si, mut star, mut mark) = (0, 0, None, 0);
    while si < s.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == s[si]) {
            pi += 1;
            si += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = si;
            pi += 1;
        } else if let Some(st) = star {
            pi = st + 1;
            mark += 1;
            si = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

pub fn base64_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(B64[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

pub fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() / 4 * 3);
    let (mut acc, mut bits) = (0u32, 0);
    for c in s.bytes() {
        if c == b'=' {
            break;
        }
        let v = B64.iter().position(|&b| b == c)? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

fn sha1(data: &[u8]) -> [u8; 20] {
    let mut h: [u32; 5] = [0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0];
    let mut msg = data.to_vec();
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&((data.len() as u64) * 8).to_be_bytes());
    for block in msg.chunks(64) {
        let mut w = [0u32; 80];
        for i in 0..16 {
            w[i] = u32::from_be_bytes([
                block[4 * i],
                block[4 * i + 1],
                block[4 * i + 2],
                block[4 * i + 3],
            ]);
        }
        for i in 16..80 {
            w[i] = (w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]).rotate_left(1);
        }
        let [mut a, mut b, mut c, mut d, mut e] = h;
        for (i, wi) in w.iter().enumerate() {
            let (f, k) = match i {
                0..=19 => ((b & c) | (!b & d), 0x5A827999),
                20..=39 => (b ^ c ^ d, 0x6ED9EBA1),
                40..=59 => ((b & c) | (b & d) | (c & d), 0x8F1BBCDC),
                _ => (b ^ c ^ d, 0xCA62C1D6),
            };
            let t = a
                .rotate_left(5)
                .wrapping_add(f)
                .wrapping_add(e)
                .wrapping_add(k)
                .wrapping_add(*wi);
            e = d;
            d = c;
            c = b.rotate_left(30);
            b = a;
            a = t;
        }
        for (x, y) in h.iter_mut().zip([a, b, c, d, e]) {
            *x = x.wrapping_add(y);
        }
    }
    let mut out = [0u8; 20];
    for (i, x) in h.iter().enumerate() {
        out[4 * i..4 * i + 4].copy_from_slice(&x.to_be_bytes());
    }
    out
}

fn hmac_sha1(key: &[u8], msg: &[u8]) -> [u8; 20] {
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..20].copy_from_slice(&sha1(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let mut inner: Vec<u8> = k.iter().map(|b| b ^ 0x36).collect();
    inner.extend_from_slice(msg);
    let mut outer: Vec<u8> = k.iter().map(|b| b ^ 0x5c).collect();
    outer.extend_from_slice(&sha1(&inner));
    sha1(&outer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    fn temp_file(name: &str, text: &str) -> PathBuf {
        let p = std::env::temp_dir().join(format!("mha-helper-kh-{}-{name}", std::process::id()));
        fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn sha1_and_hmac_match_published_vectors() {
        assert_eq!(
            hex(&sha1(b"abc")),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
        assert_eq!(hex(&sha1(b"")), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
        // RFC 2202 test case 2 (value checked with Python hmac)
        assert_eq!(
            hex(&hmac_sha1(b"Jefe", b"what do ya want for nothing?")),
            "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79"
        );
    }

    #[test]
    fn base64_round_trips_all_lengths() {
        for n in 0..10 {
            let data: Vec<u8> = (0..n).map(|i| (i * 37 + 5) as u8).collect();
            assert_eq!(base64_decode(&base64_encode(&data)).unwrap(), data);
        }
        assert_eq!(base64_encode(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64_encode(b"fo"), "Zm8=");
    }

    #[test]
    fn hashed_entry_matches_only_its_host() {
        let salt = b"0123456789abcdefghij";
        let hash = hmac_sha1(salt, b"db2");
        let line = format!(
            "|1|{}|{} ssh-ed25519 AAAAC3key\n",
            base64_encode(salt),
            base64_encode(&hash)
        );
        let f = temp_file("hashed", &line);
        assert_eq!(
            lookup(std::slice::from_ref(&f), &["db2"], 22)
                .unwrap()
                .keys
                .len(),
            1
        );
        assert!(lookup(std::slice::from_ref(&f), &["db3"], 22)
            .unwrap()
            .keys
            .is_empty());
        fs::remove_file(f).unwrap();
    }

    #[test]
    fn plain_wildcard_negated_and_port_entries() {
        let f = temp_file(
            "plain",
            "# comment\n\
             db1,198.51.100.11 ssh-ed25519 AAAA1\n\
             [db1]:2222 ssh-rsa AAAA2\n\
             db*,!db3 ecdsa-sha2-nistp256 AAAA3\n\
             @cert-authority * ssh-rsa AAAACA\n\
             @revoked db9 ssh-ed25519 AAAAREV\n",
        );
        let files = [f.clone()];
        let db1 = lookup(&files, &["db1"], 22).unwrap();
        assert_eq!(db1.keys.len(), 2);
        assert_eq!(db1.hostkey_methods(), "ssh-ed25519,ecdsa-sha2-nistp256");
        let by_ip = lookup(&files, &["198.51.100.11"], 22).unwrap();
        assert_eq!(by_ip.keys[0].blob, "AAAA1");
        let port = lookup(&files, &["db1"], 2222).unwrap();
        assert_eq!(port.keys.len(), 1);
        assert_eq!(port.hostkey_methods(), "rsa-sha2-512,rsa-sha2-256,ssh-rsa");
        assert!(lookup(&files, &["db3"], 22).unwrap().keys.is_empty());
        assert_eq!(lookup(&files, &["db9"], 22).unwrap().revoked.len(), 1);
        fs::remove_file(f).unwrap();
    }

    #[test]
    fn verdict_tells_match_mismatch_unknown_and_revoked() {
        let blob = b"server key bytes";
        let b64 = base64_encode(blob);
        let f = temp_file(
            "verdict",
            &format!("db1 ssh-ed25519 {b64}\ndb2 ssh-ed25519 AAAAother\n@revoked db4 ssh-ed25519 {b64}\n"),
        );
        let files = [f.clone()];
        let v = |h| {
            lookup(&files, &[h], 22)
                .unwrap()
                .verdict("ssh-ed25519", blob)
        };
        assert_eq!(v("db1"), Verdict::Match);
        assert_eq!(v("db2"), Verdict::Mismatch);
        assert_eq!(v("db3"), Verdict::NotFound);
        assert_eq!(v("db4"), Verdict::Revoked);
        // same blob recorded under another type is not a match
        let l = lookup(&files, &["db1"], 22).unwrap();
        assert_eq!(l.verdict("ssh-rsa", blob), Verdict::Mismatch);
        fs::remove_file(f).unwrap();
    }

    #[test]
    fn dev_null_and_unwritable_files_cannot_take_keys() {
        assert!(!recordable(Path::new("/dev/null")));
        assert!(!recordable(Path::new("/nonexistent-dir/known_hosts")));
        let p = temp_file("recordable", "");
        assert!(recordable(&p));
        assert!(recordable(&p.with_file_name("not-yet-there")));
    }

    #[test]
    fn fingerprint_is_openssh_sha256() {
        // ssh-keygen -lf of this ed25519 public key prints this fingerprint.
        let blob =
            base64_decode("AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl")
                .unwrap();
        assert_eq!(
            fingerprint(&blob),
            "SHA256:+DiY3wvvV6TuJJhbpZisF/zLDA0zPMSvHdkr4UvCOqU"
        );
    }

    #[test]
    fn missing_file_is_not_an_error() {
        let l = lookup(&[PathBuf::from("/nonexistent/known_hosts")], &["db1"], 22).unwrap();
        assert!(l.keys.is_empty());
    }

    #[test]
    fn keys_recorded_by_parallel_connections_stay_one_whole_line_each() {
        let dir = std::env::temp_dir().join(format!("mha-helper-kh-par-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("known_hosts");
        let _ = std::fs::remove_file(&file);
        let blob = [7u8; 51];
        std::thread::scope(|s| {
            for t in 0..8 {
                let file = &file;
                s.spawn(move || {
                    for i in 0..50 {
                        append(file, &format!("db{t}-{i}"), "ssh-ed25519", &blob).unwrap();
                    }
                });
            }
        });
        let text = std::fs::read_to_string(&file).unwrap();
        let want = format!(" ssh-ed25519 {}", base64_encode(&blob));
        assert_eq!(text.lines().count(), 400);
        for l in text.lines() {
            let (label, rest) = l.split_at(l.find(' ').unwrap());
            assert!(label.starts_with("db") && rest == want, "torn line {l:?}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
