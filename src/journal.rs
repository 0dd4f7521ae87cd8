//! The switch journal: an append-only file of JSON lines on the manager,
//! mode 0600 (it holds grant statements), fsynced after every record.
//!
//! Before any step changes a host, the way to undo it is written here, so
//! a crash, a kill -9 or a cut connection at any point leaves enough on disk
//! for `mha-helper recover` to put the cluster back or finish the switch.
//! One journal per MHA application is open at a time; when a switch ends
//! (completed or rolled back) the file is renamed aside with its id.

use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::steps::Undo;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "kebab-case")]
pub enum Entry {
    /// A switch starts.
    Begin {
        id: String,
        kind: String,
        orig: String,
        new: String,
        at: String,
        pid: u32,
    },
    /// About to change `host` in `step`; `undo` reverses it.
    Intent {
        step: String,
        host: String,
        undo: Undo,
    },
    /// The step finished.
    Done { step: String, host: String },
    /// The step's undo ran.
    Undone { step: String, host: String },
    /// A fact later phases or the report need.
    Note {
        key: String,
        value: serde_json::Value,
    },
    /// A phase boundary: stop-begun, stop-complete, start-begun, ...
    Phase { phase: String },
    /// The switch is over.
    End { outcome: String },
}

pub struct Journal {
    path: PathBuf,
    file: File,
    entries: Vec<Entry>,
}

impl Journal {
    /// Where the journal of application `app` lives.
    pub fn path_for(dir: &Path, app: &str) -> PathBuf {
        dir.join(format!("mha-helper.{app}.journal"))
    }

    /// Start a new journal; fails if one is already there.
    pub fn create(path: &Path, begin: Entry) -> Result<Journal> {
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir)
                .with_context(|| format!("cannot create journal directory {}", dir.display()))?;
        }
        let file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .mode(0o600)
            .open(path)
            .with_context(|| format!("cannot create journal {}", path.display()))?;
        let mut j = Journal {
            path: path.to_path_buf(),
            file,
            entries: Vec::new(),
        };
        j.append(begin)?;
        sync_dir(path)?;
        Ok(j)
    }

    /// Open the journal at `path` if there is one, reading what it holds.
    /// A torn last line (a crash during a write) is ignored.
    pub fn open(path: &Path) -> Result<Option<Journal>> {
        let file = match OpenOptions::new().read(true).append(true).open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(e).with_context(|| format!("cannot open journal {}", path.display()))
            }
        };
        let mut entries = Vec::new();
        let lines: Vec<String> = BufReader::new(&file)
            .lines()
            .collect::<std::io::Result<_>>()
            .with_context(|| format!("cannot read journal {}", path.display()))?;
        let n = lines.len();
        for (i, line) in lines.iter().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str::<Entry>(line) {
                Ok(e) => entries.push(e),
                Err(_) if i + 1 == n => {
                    log::warn!("journal {}: ignoring a torn last line", path.display())
                }
                Err(e) => bail!("journal {} line {}: {e}", path.display(), i + 1),
            }
        }
        Ok(Some(Journal {
            path: path.to_path_buf(),
            file,
            entries,
        }))
    }

    /// Write one record and make it (and every lazy one before it) durable
    /// before returning. Everything a recovery needs before a change is
    /// written this way.
    pub fn append(&mut self, entry: Entry) -> Result<()> {
        self.write(entry, true)
    }

    /// Write one record without waiting for the disk: for facts recorded
    /// after a change (a step done, a report), whose loss only makes
    /// `recover` repeat an idempotent undo. The next `append` or `close`
    /// makes it durable.
    pub fn append_lazy(&mut self, entry: Entry) -> Result<()> {
        self.write(entry, false)
    }

    fn write(&mut self, entry: Entry, durable: bool) -> Result<()> {
        let mut line = serde_json::to_string(&entry).context("cannot encode journal entry")?;
        line.push('\n');
        self.file
            .write_all(line.as_bytes())
            .and_then(|_| {
                if durable {
                    self.file.sync_data()
                } else {
                    Ok(())
                }
            })
            .with_context(|| {
                format!(
                    "cannot write journal {} (disk full? read-only?)",
                    self.path.display()
                )
            })?;
        self.entries.push(entry);
        Ok(())
    }

    /// A durable note.
    pub fn note(&mut self, key: &str, value: serde_json::Value) -> Result<()> {
        self.append(Entry::Note {
            key: key.to_string(),
            value,
        })
    }

    /// A note written after the fact (see [`Journal::append_lazy`]).
    pub fn note_lazy(&mut self, key: &str, value: serde_json::Value) -> Result<()> {
        self.append_lazy(Entry::Note {
            key: key.to_string(),
            value,
        })
    }

    /// A durable phase boundary.
    pub fn phase(&mut self, phase: &str) -> Result<()> {
        self.append(Entry::Phase {
            phase: phase.to_string(),
        })
    }

    pub fn phase_lazy(&mut self, phase: &str) -> Result<()> {
        self.append_lazy(Entry::Phase {
            phase: phase.to_string(),
        })
    }

    /// Record the outcome and move the file aside as `<name>.<id>.<outcome>`.
    pub fn close(mut self, outcome: &str) -> Result<PathBuf> {
        self.append(Entry::End {
            outcome: outcome.to_string(),
        })?;
        let id = self.id().unwrap_or("unknown").to_string();
        let done = self.path.with_extension(format!("journal.{id}.{outcome}"));
        fs::rename(&self.path, &done)
            .with_context(|| format!("cannot move journal {} aside", self.path.display()))?;
        sync_dir(&done)?;
        Ok(done)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    fn begin(&self) -> Option<(&str, &str, &str, &str)> {
        self.entries.iter().find_map(|e| match e {
            Entry::Begin {
                id,
                kind,
                orig,
                new,
                ..
            } => Some((id.as_str(), kind.as_str(), orig.as_str(), new.as_str())),
            _ => None,
        })
    }

    pub fn id(&self) -> Option<&str> {
        self.begin().map(|b| b.0)
    }
    pub fn kind(&self) -> Option<&str> {
        self.begin().map(|b| b.1)
    }
    /// (orig, new) masters of the switch.
    pub fn masters(&self) -> Option<(&str, &str)> {
        self.begin().map(|b| (b.2, b.3))
    }

    pub fn reached(&self, phase: &str) -> bool {
        self.entries
            .iter()
            .any(|e| matches!(e, Entry::Phase { phase: p } if p == phase))
    }

    pub fn note_value(&self, key: &str) -> Option<&serde_json::Value> {
        self.entries.iter().rev().find_map(|e| match e {
            Entry::Note { key: k, value } if k == key => Some(value),
            _ => None,
        })
    }

    /// Undos recorded and not yet run, in the order they were recorded.
    pub fn pending_undos(&self) -> Vec<(String, Undo)> {
        let mut out: Vec<(String, Undo)> = Vec::new();
        for e in &self.entries {
            match e {
                Entry::Intent { step, undo, .. } => out.push((step.clone(), undo.clone())),
                Entry::Undone { step, .. } => {
                    if let Some(i) = out.iter().rposition(|(s, _)| s == step) {
                        out.remove(i);
                    }
                }
                _ => {}
            }
        }
        out
    }

    /// The latest undo recorded for a step, whether or not it ran.
    pub fn undo_of(&self, step: &str) -> Option<&Undo> {
        self.entries.iter().rev().find_map(|e| match e {
            Entry::Intent { step: s, undo, .. } if s == step => Some(undo),
            _ => None,
        })
    }
}

/// fsync the directory holding `path`, so a create or rename survives a
/// crash.
fn sync_dir(path: &Path) -> Result<()> {
    if let Some(dir) = path.parent() {
        let d = File::open(dir).with_context(|| format!("cannot open {}", dir.display()))?;
        d.sync_all()
            .with_context(|| format!("cannot sync {}", dir.display()))?;
    }
    Ok(())
}

/// A switch id: UTC time plus pid, sortable and unique enough per manager.
pub fn new_id() -> String {
    let t = crate::logger::utc_now();
    let compact: String = t.chars().filter(|c| c.is_ascii_digit()).collect();
    format!("{}-{}", &compact[..14], std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn temp_dir(name: &str) -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("mha-helper-journal-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    fn begin() -> Entry {
        Entry::Begin {
            id: "1".into(),
            kind: "online".into(),
            orig: "db1".into(),
            new: "db2".into(),
            at: "now".into(),
            pid: 1,
        }
    }

    fn ro(host: &str) -> Undo {
        Undo::ReadOnly {
            host: host.into(),
            read_only: false,
            super_read_only: None,
        }
    }

    #[test]
    fn journal_is_private_and_survives_reopen() {
        let d = temp_dir("reopen");
        let p = Journal::path_for(&d, "app1");
        let mut j = Journal::create(&p, begin()).unwrap();
        j.append(Entry::Intent {
            step: "a".into(),
            host: "db2".into(),
            undo: ro("db2"),
        })
        .unwrap();
        j.append(Entry::Intent {
            step: "b".into(),
            host: "db1".into(),
            undo: ro("db1"),
        })
        .unwrap();
        j.append(Entry::Undone {
            step: "b".into(),
            host: "db1".into(),
        })
        .unwrap();
        drop(j);
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let j = Journal::open(&p).unwrap().unwrap();
        assert_eq!(j.masters(), Some(("db1", "db2")));
        let pending = j.pending_undos();
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].0, "a");
        fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn second_create_is_refused() {
        let d = temp_dir("twice");
        let p = Journal::path_for(&d, "app1");
        let _j = Journal::create(&p, begin()).unwrap();
        assert!(Journal::create(&p, begin()).is_err());
        fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn torn_last_line_is_ignored_but_torn_middle_is_an_error() {
        let d = temp_dir("torn");
        let p = Journal::path_for(&d, "app1");
        let j = Journal::create(&p, begin()).unwrap();
        drop(j);
        let mut f = OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(b"{\"t\":\"phase\",\"pha").unwrap();
        drop(f);
        assert_eq!(Journal::open(&p).unwrap().unwrap().entries().len(), 1);
        let mut f = OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(b"\n{\"t\":\"phase\",\"phase\":\"x\"}\n")
            .unwrap();
        drop(f);
        assert!(Journal::open(&p).is_err());
        fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn close_moves_the_file_aside() {
        let d = temp_dir("close");
        let p = Journal::path_for(&d, "app1");
        let mut j = Journal::create(&p, begin()).unwrap();
        j.phase("stop-complete").unwrap();
        assert!(j.reached("stop-complete"));
        let done = j.close("completed").unwrap();
        assert!(!p.exists());
        assert!(done
            .to_string_lossy()
            .ends_with("mha-helper.app1.journal.1.completed"));
        assert!(Journal::open(&p).unwrap().is_none());
        fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn missing_journal_is_none() {
        assert!(Journal::open(Path::new("/nonexistent/j"))
            .unwrap()
            .is_none());
    }
}
