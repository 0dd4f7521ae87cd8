//! Everything mha-helper keeps on the manager for one MHA application, in
//! one directory of its own: the journal, the lock, the session keeper's
//! socket and log, the master's grants recorded by `check`, the mark of the
//! last failover, a pending fence, MHA's output of each switch, and the
//! host keys learnt on first use.
//!
//! These files decide what gets replayed on database hosts as the MHA admin
//! (grant statements) and where the MySQL password is sent (the keeper), so
//! nothing here is trusted that another local user could have written: the
//! directory (default `/var/lib/mha-helper`, created 0700) must be ours and
//! writable by nobody else, each of its ancestors owned by root or us and not
//! writable by others (unless sticky), every file is opened without
//! following symlinks and must be a regular file of ours with no group or
//! other permission bits.

pub mod history;
pub mod journal;
pub mod lock;

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};

/// Used when the helper settings give no `journal_dir`.
pub const DEFAULT_DIR: &str = "/var/lib/mha-helper";

/// The state directory of one application.
#[derive(Debug, Clone)]
pub struct StateDir {
    dir: PathBuf,
    app: String,
}

fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() }
}

impl StateDir {
    /// The directory for `app`, created (0700) when missing, and checked.
    pub fn open(dir: &Path, app: &str) -> Result<StateDir> {
        if !dir.is_absolute() {
            bail!(
                "journal directory {} must be an absolute path",
                dir.display()
            );
        }
        match fs::symlink_metadata(dir) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(dir)
                    .with_context(|| {
                        format!(
                            "cannot create the journal directory {} (set journal_dir to a directory \
                             this user may create)",
                            dir.display()
                        )
                    })?;
            }
            Err(e) => {
                return Err(e).with_context(|| format!("cannot inspect {}", dir.display()));
            }
            Ok(_) => {}
        }
        check_dir(dir)?;
        Ok(StateDir {
            dir: dir.to_path_buf(),
            app: app.to_string(),
        })
    }

    /// A state directory that is not checked, for tests of pure logic.
    #[cfg(test)]
    pub fn unchecked(dir: &Path, app: &str) -> StateDir {
        StateDir {
            dir: dir.to_path_buf(),
            app: app.to_string(),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn app(&self) -> &str {
        &self.app
    }

    fn file(&self, suffix: &str) -> PathBuf {
        self.dir.join(format!("mha-helper.{}.{suffix}", self.app))
    }

    /// The open journal of the current switch.
    pub fn journal(&self) -> PathBuf {
        self.file("journal")
    }

    /// Where a finished journal is kept.
    pub fn closed_journal(&self, id: &str, outcome: &str) -> PathBuf {
        self.file(&format!("journal.{id}.{outcome}"))
    }

    /// The lock every mutating command holds.
    pub fn lock(&self) -> PathBuf {
        self.file("lock")
    }

    pub fn keeper_socket(&self) -> PathBuf {
        self.file("keeper.sock")
    }

    pub fn keeper_log(&self) -> PathBuf {
        self.file("keeper.log")
    }

    /// The master's application grants, as the last `check` read them.
    pub fn grants_snapshot(&self) -> PathBuf {
        self.file("grants.json")
    }

    /// Which host MHA last failed over from.
    pub fn dead_mark(&self) -> PathBuf {
        self.file("failed-over.json")
    }

    /// An old master that could not be fenced yet.
    pub fn fence(&self) -> PathBuf {
        self.file("fence.json")
    }

    /// The fencer's log.
    pub fn fence_log(&self) -> PathBuf {
        self.file("fence.log")
    }

    /// MHA's whole output of switch `id`.
    pub fn switch_log(&self, id: &str) -> PathBuf {
        self.file(&format!("{id}.switch.log"))
    }

    /// Host keys recorded on first use when the configured known_hosts
    /// cannot take them (shared by every application).
    pub fn known_hosts(&self) -> PathBuf {
        self.dir.join("known_hosts")
    }

    /// Read a file of ours; `None` when it does not exist.
    pub fn read(&self, path: &Path) -> Result<Option<String>> {
        let Some(mut f) = open_private(path, false)? else {
            return Ok(None);
        };
        let mut text = String::new();
        f.read_to_string(&mut text)
            .with_context(|| format!("cannot read {}", path.display()))?;
        Ok(Some(text))
    }

    /// Replace a file of ours atomically (temp file, fsync, rename).
    pub fn write(&self, path: &Path, bytes: &[u8]) -> Result<()> {
        let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
        let _ = fs::remove_file(&tmp);
        let res = (|| -> Result<()> {
            let mut f = create_private(&tmp)?;
            f.write_all(bytes)?;
            f.sync_all()?;
            fs::rename(&tmp, path)?;
            sync_dir(path)
        })();
        if res.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        res.with_context(|| format!("cannot write {}", path.display()))
    }

    /// Remove a file of ours (gone already is fine).
    pub fn remove(&self, path: &Path) -> Result<()> {
        match fs::remove_file(path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e).with_context(|| format!("cannot remove {}", path.display())),
        }
    }
}

/// What the last failover left behind, for `check`: which host MHA gave
/// up on, for which new master, and when.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DeadMark {
    pub host: String,
    pub new_master: String,
    pub at: String,
}

impl StateDir {
    pub fn read_dead_mark(&self) -> Option<DeadMark> {
        let text = self.read(&self.dead_mark()).ok()??;
        serde_json::from_str(&text).ok()
    }

    pub fn write_dead_mark(&self, mark: &DeadMark) {
        let text = serde_json::to_string(mark).unwrap_or_default();
        if let Err(e) = self.write(&self.dead_mark(), text.as_bytes()) {
            log::warn!("cannot record the failover: {e:#}");
        }
    }
}

/// The directory must be a real directory of ours that nobody else may
/// write, under ancestors nobody else may replace.
pub fn check_dir(dir: &Path) -> Result<()> {
    let md =
        fs::symlink_metadata(dir).with_context(|| format!("cannot inspect {}", dir.display()))?;
    if md.file_type().is_symlink() {
        bail!(
            "journal directory {} is a symbolic link; refusing it (set journal_dir to the real directory)",
            dir.display()
        );
    }
    if !md.is_dir() {
        bail!("journal directory {} is not a directory", dir.display());
    }
    if md.uid() != euid() {
        bail!(
            "journal directory {} belongs to uid {}, not to this user (uid {}); refusing a directory \
             another user controls (set journal_dir to a directory of your own)",
            dir.display(),
            md.uid(),
            euid()
        );
    }
    if md.mode() & 0o022 != 0 {
        bail!(
            "journal directory {} is writable by other users (mode {:o}); refusing it: run chmod 700 {} \
             or set journal_dir to a directory of its own",
            dir.display(),
            md.mode() & 0o7777,
            dir.display()
        );
    }
    let mut cur = dir.parent();
    while let Some(p) = cur {
        let md = fs::metadata(p).with_context(|| format!("cannot inspect {}", p.display()))?;
        let others_write = md.mode() & 0o022 != 0;
        let sticky = md.mode() & 0o1000 != 0;
        if (md.uid() != 0 && md.uid() != euid()) || (others_write && !sticky) {
            bail!(
                "{} (above the journal directory {}) can be changed by other users (owner uid {}, mode \
                 {:o}); refusing it: choose a journal_dir whose parents only root or you can write",
                p.display(),
                dir.display(),
                md.uid(),
                md.mode() & 0o7777
            );
        }
        cur = p.parent();
    }
    Ok(())
}

/// Check an open file: a regular file of ours without group or other
/// permission bits.
pub fn check_file(f: &File, path: &Path) -> Result<()> {
    let md = f
        .metadata()
        .with_context(|| format!("cannot inspect {}", path.display()))?;
    if !md.is_file() {
        bail!("{} is not a regular file; refusing it", path.display());
    }
    if md.uid() != euid() {
        bail!(
            "{} belongs to uid {}, not to this user (uid {}); refusing a file another user wrote \
             (move it away after checking it)",
            path.display(),
            md.uid(),
            euid()
        );
    }
    if md.mode() & 0o077 != 0 {
        bail!(
            "{} has mode {:o}: other users may read or change it; refusing it (mha-helper writes \
             these files 0600; move it away after checking it)",
            path.display(),
            md.mode() & 0o7777
        );
    }
    Ok(())
}

fn is_symlink_error(e: &std::io::Error) -> bool {
    e.raw_os_error() == Some(libc::ELOOP)
}

/// Open an existing file of ours (read, and append when `append`), never
/// through a symlink. `None` when it does not exist.
pub fn open_private(path: &Path, append: bool) -> Result<Option<File>> {
    let mut o = OpenOptions::new();
    o.read(true).custom_flags(libc::O_NOFOLLOW);
    if append {
        o.append(true);
    }
    match o.open(path) {
        Ok(f) => {
            check_file(&f, path)?;
            Ok(Some(f))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) if is_symlink_error(&e) => Err(anyhow!(
            "{} is a symbolic link; refusing it (mha-helper never follows links in its directory)",
            path.display()
        )),
        Err(e) => Err(e).with_context(|| format!("cannot open {}", path.display())),
    }
}

/// Create a new file of ours, 0600; fails if anything is already there.
pub fn create_private(path: &Path) -> Result<File> {
    let f = OpenOptions::new()
        .append(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    // The umask may have taken bits away, never added them; be exact.
    f.set_permissions(fs::Permissions::from_mode(0o600))?;
    Ok(f)
}

/// fsync the directory holding `path`, so a create or rename survives a
/// crash.
pub fn sync_dir(path: &Path) -> Result<()> {
    if let Some(dir) = path.parent() {
        let d = File::open(dir).with_context(|| format!("cannot open {}", dir.display()))?;
        d.sync_all()
            .with_context(|| format!("cannot sync {}", dir.display()))?;
    }
    Ok(())
}

#[cfg(test)]
pub mod tests {
    use super::*;

    /// A fresh private directory for a test.
    pub fn temp_dir(name: &str) -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("mha-helper-state-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::DirBuilder::new().mode(0o700).create(&d).unwrap();
        d
    }

    #[test]
    fn missing_directory_is_created_private() {
        let base = temp_dir("create");
        let d = base.join("a/b");
        let s = StateDir::open(&d, "app1").unwrap();
        assert_eq!(
            fs::metadata(s.dir()).unwrap().permissions().mode() & 0o777,
            0o700
        );
        assert_eq!(s.journal(), d.join("mha-helper.app1.journal"));
        fs::remove_dir_all(base).unwrap();
    }

    #[test]
    fn group_or_world_writable_directory_is_refused() {
        let d = temp_dir("world");
        fs::set_permissions(&d, fs::Permissions::from_mode(0o777)).unwrap();
        let e = StateDir::open(&d, "app1").unwrap_err().to_string();
        assert!(e.contains("writable by other users"), "{e}");
        fs::set_permissions(&d, fs::Permissions::from_mode(0o770)).unwrap();
        assert!(StateDir::open(&d, "app1").is_err());
        fs::set_permissions(&d, fs::Permissions::from_mode(0o755)).unwrap();
        assert!(StateDir::open(&d, "app1").is_ok());
        fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn symlinked_directory_is_refused() {
        let d = temp_dir("link");
        let real = d.join("real");
        fs::DirBuilder::new().mode(0o700).create(&real).unwrap();
        let link = d.join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let e = StateDir::open(&link, "app1").unwrap_err().to_string();
        assert!(e.contains("symbolic link"), "{e}");
        fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn world_writable_ancestor_without_sticky_bit_is_refused() {
        let d = temp_dir("ancestor");
        let open = d.join("open");
        fs::create_dir(&open).unwrap();
        fs::set_permissions(&open, fs::Permissions::from_mode(0o777)).unwrap();
        let e = StateDir::open(&open.join("journals"), "app1")
            .unwrap_err()
            .to_string();
        assert!(e.contains("can be changed by other users"), "{e}");
        // /tmp-like: sticky, others cannot replace our directory
        fs::set_permissions(&open, fs::Permissions::from_mode(0o1777)).unwrap();
        assert!(StateDir::open(&open.join("journals"), "app1").is_ok());
        fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn files_must_be_private_regular_and_not_links() {
        let d = temp_dir("files");
        let s = StateDir::open(&d, "app1").unwrap();
        let p = s.grants_snapshot();
        s.write(&p, b"[]").unwrap();
        assert_eq!(s.read(&p).unwrap().as_deref(), Some("[]"));
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
        let e = s.read(&p).unwrap_err().to_string();
        assert!(e.contains("other users may read or change it"), "{e}");
        let target = d.join("elsewhere");
        fs::write(&target, "x").unwrap();
        fs::set_permissions(&target, fs::Permissions::from_mode(0o600)).unwrap();
        let link = s.dead_mark();
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let e = s.read(&link).unwrap_err().to_string();
        assert!(e.contains("symbolic link"), "{e}");
        assert!(s.read(&s.fence()).unwrap().is_none());
        fs::remove_dir_all(d).unwrap();
    }
}
