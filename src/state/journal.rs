//! The switch journal: an append-only file of JSON lines in the state
//! directory, mode 0600 (it holds grant statements), fsynced after every
//! record that a recovery depends on.
//!
//! Before any step changes a host, the way to undo it is written here, so
//! a crash, a kill -9 or a cut connection at any point leaves enough on disk
//! for `mha-helper recover` to put the cluster back or finish the switch.
//! One journal per MHA application is open at a time; when a switch ends
//! (completed or rolled back) the file is renamed aside with its id.
//!
//! A write that fails half-way (disk full) is cut back to the last whole
//! record, and a torn last line found on open (a crash during a write) is
//! cut off before anything else is appended, so the file always reads back.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};

use super::{create_private, open_private, sync_dir, StateDir};
use crate::step_id::StepId;
use crate::undo::Undo;

/// What a journal records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// An online switch (the online hook's stop and start).
    Online,
    /// A dead-master failover (the failover hook's phases).
    Failover,
    /// The fence of an old master a failover left unfenced.
    Fence,
    /// A failover's changes while another switch's journal was open (kept
    /// in memory only).
    FailoverUnjournaled,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "kebab-case")]
pub enum Entry {
    /// A switch starts.
    Begin {
        id: String,
        kind: Kind,
        orig: String,
        new: String,
        at: String,
        pid: u32,
    },
    /// About to change `host` in `step`; `undo` reverses it. A later intent
    /// of the same step and host replaces an earlier one not yet undone
    /// (the block step corrects its snapshot this way).
    Intent {
        step: String,
        host: String,
        undo: Undo,
    },
    /// The step finished.
    Done { step: String, host: String },
    /// The step's undo ran (or the change was reversed another way).
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

/// Journal writes made by this process, for the `enospc@journal:N` fault.
static WRITES: AtomicUsize = AtomicUsize::new(0);

pub struct Journal {
    path: PathBuf,
    /// None for a journal kept in memory only (see [`Journal::in_memory`]).
    file: Option<File>,
    entries: Vec<Entry>,
    /// Length of the file up to the last whole record.
    len: u64,
}

impl Journal {
    /// Start a new journal; fails if one is already there.
    pub fn create(state: &StateDir, begin: Entry) -> Result<Journal> {
        let path = state.journal();
        let file = create_private(&path).with_context(|| {
            format!(
                "cannot create the journal {} (another switch's journal, or the directory is not writable)",
                path.display()
            )
        })?;
        let mut j = Journal {
            path: path.clone(),
            file: Some(file),
            entries: Vec::new(),
            len: 0,
        };
        if let Err(e) = j.append(begin).and_then(|_| sync_dir(&path)) {
            // Leave no empty or torn journal behind: nothing was changed yet.
            let _ = std::fs::remove_file(&path);
            return Err(e);
        }
        Ok(j)
    }

    /// Open the application's journal if there is one.
    pub fn open(state: &StateDir) -> Result<Option<Journal>> {
        Journal::open_path(&state.journal())
    }

    /// Open a journal file (also a closed one kept aside), reading what it
    /// holds; a torn last line is cut off.
    /// The id of the open journal's switch, read without changing the file
    /// (no repair of a torn record): for a look from outside the lock.
    /// None when there is no open journal or its first record is unreadable.
    pub fn open_id(state: &StateDir) -> Option<String> {
        let file = open_private(&state.journal(), false).ok()??;
        let mut first = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(file), &mut first).ok()?;
        match serde_json::from_str(&first).ok()? {
            Entry::Begin { id, .. } => Some(id),
            _ => None,
        }
    }

    pub fn open_path(path: &Path) -> Result<Option<Journal>> {
        let Some(mut file) = open_private(path, true)? else {
            return Ok(None);
        };
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)
            .with_context(|| format!("cannot read journal {}", path.display()))?;
        let whole = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        if whole < bytes.len() {
            log::warn!(
                "journal {}: cutting off a torn last record ({} bytes, a write that did not finish)",
                path.display(),
                bytes.len() - whole
            );
            file.set_len(whole as u64)
                .and_then(|_| file.sync_data())
                .with_context(|| format!("cannot repair journal {}", path.display()))?;
        }
        let text = String::from_utf8_lossy(&bytes[..whole]);
        let mut entries = Vec::new();
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let e: Entry = serde_json::from_str(line).map_err(|e| {
                anyhow!(
                    "journal {} line {}: {e}; it is not a journal mha-helper wrote whole — \
                     move it aside and check the cluster by hand",
                    path.display(),
                    i + 1
                )
            })?;
            entries.push(e);
        }
        if !matches!(entries.first(), Some(Entry::Begin { .. })) {
            bail!(
                "journal {} does not start with a beginning record; move it aside and check the cluster by hand",
                path.display()
            );
        }
        Ok(Some(Journal {
            path: path.to_path_buf(),
            file: Some(file),
            entries,
            len: whole as u64,
        }))
    }

    /// A journal that keeps its records in memory only: for changes made
    /// while another switch's journal is open (a failover must go on).
    pub fn in_memory(begin: Entry) -> Journal {
        Journal {
            path: PathBuf::from("(not journaled)"),
            file: None,
            entries: vec![begin],
            len: 0,
        }
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
        let Some(file) = self.file.as_mut() else {
            self.entries.push(entry);
            return Ok(());
        };
        let n = WRITES.fetch_add(1, Ordering::SeqCst) + 1;
        let result = crate::fault::io_point("journal", n)
            .and_then(|_| file.write_all(line.as_bytes()))
            .and_then(|_| if durable { file.sync_data() } else { Ok(()) });
        if let Err(e) = result {
            // Cut a half-written record off, so the next write starts clean.
            let _ = file.set_len(self.len);
            return Err(e).with_context(|| {
                format!(
                    "cannot write journal {} (disk full? read-only?)",
                    self.path.display()
                )
            });
        }
        self.len += line.len() as u64;
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

    /// Record that a step's change was reversed.
    pub fn undone(&mut self, step: &str, host: &str) -> Result<()> {
        self.append_lazy(Entry::Undone {
            step: step.to_string(),
            host: host.to_string(),
        })
    }

    /// Record the outcome and move the file aside as `<name>.<id>.<outcome>`.
    /// The rename needs no free space, so a full disk still closes the
    /// journal when only the outcome record cannot be written.
    pub fn close(mut self, state: &StateDir, outcome: &str) -> Result<PathBuf> {
        if self.file.is_none() {
            return Ok(self.path);
        }
        if let Err(e) = self.append(Entry::End {
            outcome: outcome.to_string(),
        }) {
            log::warn!("{e:#}; closing the journal without its outcome record");
        }
        let id = self.id().unwrap_or("unknown").to_string();
        let done = state.closed_journal(&id, outcome);
        std::fs::rename(&self.path, &done)
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

    fn begin(&self) -> Option<&Entry> {
        self.entries.first()
    }

    pub fn id(&self) -> Option<&str> {
        match self.begin()? {
            Entry::Begin { id, .. } => Some(id),
            _ => None,
        }
    }

    pub fn kind(&self) -> Option<Kind> {
        match self.begin()? {
            Entry::Begin { kind, .. } => Some(*kind),
            _ => None,
        }
    }

    /// (orig, new) masters of the switch. A failover begun before MHA
    /// named the new master (its stopssh phase) learns it later, as the
    /// note [`note::NEW_MASTER`].
    pub fn masters(&self) -> Option<(&str, &str)> {
        match self.begin()? {
            Entry::Begin { orig, new, .. } if new.is_empty() => Some((
                orig,
                self.note_value(note::NEW_MASTER)
                    .and_then(|v| v.as_str())
                    .unwrap_or(""),
            )),
            Entry::Begin { orig, new, .. } => Some((orig, new)),
            _ => None,
        }
    }

    /// The process that began the switch, and when.
    pub fn begun_by(&self) -> Option<(u32, &str)> {
        match self.begin()? {
            Entry::Begin { pid, at, .. } => Some((*pid, at)),
            _ => None,
        }
    }

    pub fn reached(&self, phase: &str) -> bool {
        self.entries
            .iter()
            .any(|e| matches!(e, Entry::Phase { phase: p } if p == phase))
    }

    /// The first value noted under `key` (`note_value` gives the last).
    pub fn first_note_value(&self, key: &str) -> Option<&serde_json::Value> {
        self.entries.iter().find_map(|e| match e {
            Entry::Note { key: k, value } if k == key => Some(value),
            _ => None,
        })
    }

    pub fn note_value(&self, key: &str) -> Option<&serde_json::Value> {
        self.entries.iter().rev().find_map(|e| match e {
            Entry::Note { key: k, value } if k == key => Some(value),
            _ => None,
        })
    }

    /// Whether `step` on `host` finished.
    pub fn done(&self, step: StepId, host: &str) -> bool {
        self.entries.iter().any(
            |e| matches!(e, Entry::Done { step: s, host: h } if s == step.as_str() && h == host),
        )
    }

    /// Undos recorded and not yet run, in the order they were recorded (a
    /// revised intent takes the place of the one it replaces).
    pub fn pending_undos(&self) -> Vec<(String, Undo)> {
        let mut out: Vec<(String, String, Undo)> = Vec::new();
        for e in &self.entries {
            match e {
                Entry::Intent { step, host, undo } => {
                    match out.iter().position(|(s, h, _)| s == step && h == host) {
                        Some(i) => out[i].2 = undo.clone(),
                        None => out.push((step.clone(), host.clone(), undo.clone())),
                    }
                }
                Entry::Undone { step, host } => {
                    if let Some(i) = out.iter().rposition(|(s, h, _)| s == step && h == host) {
                        out.remove(i);
                    }
                }
                _ => {}
            }
        }
        out.into_iter().map(|(s, _, u)| (s, u)).collect()
    }

    /// The latest undo recorded for a step, whether or not it ran.
    pub fn undo_of(&self, step: StepId) -> Option<&Undo> {
        self.entries.iter().rev().find_map(|e| match e {
            Entry::Intent { step: s, undo, .. } if s == step.as_str() => Some(undo),
            _ => None,
        })
    }
}

/// A switch id: UTC time plus pid, sortable and unique enough per manager.
/// Environment variable through which `mha-helper switchover` and
/// `failover` hand the switch's id to the hooks MHA runs (so that their
/// journal is that switch's).
pub const SWITCH_ID_VAR: &str = "MHA_HELPER_SWITCH_ID";

/// The id of the switch a hook works on: the one an operator's command
/// handed to MHA, else a new one.
pub fn switch_id() -> String {
    std::env::var(SWITCH_ID_VAR).unwrap_or_else(|_| new_id())
}

/// The names of the journal's notes: what one step or phase leaves for
/// another (and for the report), named in one place.
pub mod note {
    /// When the block's first statement reached the old master (unix ms):
    /// the start of the write outage.
    pub const BLOCK_STARTED_MS: &str = "block_started_ms";
    /// Each host's server kind as stop read it.
    pub const SERVERS: &str = "servers";
    /// Whether the old master is to replicate from the new one after the
    /// switch (MHA's `--orig_master_is_new_slave`).
    pub const ORIG_FOLLOWS_NEW: &str = "orig-follows-new";
    /// The switch's session keeper.
    pub const KEEPER: &str = "keeper";
    /// A failover's new master, once MHA has chosen it.
    pub const NEW_MASTER: &str = "new-master";
    /// The phases' reports, for the summary and the notifications.
    pub const STOP_REPORT: &str = "stop-report";
    pub const START_REPORT: &str = "start-report";
    pub const FENCE_REPORT: &str = "fence-report";

    /// Where `host`'s binary log stood when this switch made it writable.
    pub fn binlog_at_writable(host: &str) -> String {
        format!("binlog-at-writable:{host}")
    }

    /// Where `host`'s binary log stood while it was still read-only, just
    /// before this switch opened it (written before the opening, so it is
    /// there even when the process died before it wrote the position at
    /// the opening).
    pub fn binlog_before_writable(host: &str) -> String {
        format!("binlog-before-writable:{host}")
    }

    /// The notes that say where `host`'s binary log stood when this switch
    /// opened it, best first: at the opening, else just before it.
    pub fn binlog_opened(host: &str) -> [String; 2] {
        [binlog_at_writable(host), binlog_before_writable(host)]
    }
}

pub fn new_id() -> String {
    let t = crate::logger::utc_now();
    let compact: String = t.chars().filter(|c| c.is_ascii_digit()).collect();
    format!("{}-{}", &compact[..14], std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::tests::temp_dir;
    use std::fs::{self, OpenOptions};
    use std::os::unix::fs::PermissionsExt;

    fn begin() -> Entry {
        Entry::Begin {
            id: "1".into(),
            kind: Kind::Online,
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

    fn intent(step: &str, host: &str) -> Entry {
        Entry::Intent {
            step: step.into(),
            host: host.into(),
            undo: ro(host),
        }
    }

    fn state(name: &str) -> (PathBuf, StateDir) {
        let d = temp_dir(name);
        let s = StateDir::open(&d, "app1").unwrap();
        (d, s)
    }

    #[test]
    fn journal_is_private_and_survives_reopen() {
        let (d, s) = state("reopen");
        let mut j = Journal::create(&s, begin()).unwrap();
        j.append(intent("a", "db2")).unwrap();
        j.append(intent("b", "db1")).unwrap();
        j.undone("b", "db1").unwrap();
        drop(j);
        assert_eq!(
            fs::metadata(s.journal()).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let j = Journal::open(&s).unwrap().unwrap();
        assert_eq!(j.masters(), Some(("db1", "db2")));
        let pending = j.pending_undos();
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].0, "a");
        fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn second_create_is_refused() {
        let (d, s) = state("twice");
        let _j = Journal::create(&s, begin()).unwrap();
        assert!(Journal::create(&s, begin()).is_err());
        fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn torn_last_line_is_cut_off_and_the_next_record_reads_back() {
        let (d, s) = state("torn");
        drop(Journal::create(&s, begin()).unwrap());
        let mut f = OpenOptions::new().append(true).open(s.journal()).unwrap();
        f.write_all(b"{\"t\":\"phase\",\"pha").unwrap();
        drop(f);
        let mut j = Journal::open(&s).unwrap().unwrap();
        assert_eq!(j.entries().len(), 1);
        j.phase("stop-begun").unwrap();
        drop(j);
        let j = Journal::open(&s).unwrap().unwrap();
        assert_eq!(j.entries().len(), 2);
        assert!(j.reached("stop-begun"));
        fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn a_bad_record_in_the_middle_is_an_error() {
        let (d, s) = state("middle");
        drop(Journal::create(&s, begin()).unwrap());
        let mut f = OpenOptions::new().append(true).open(s.journal()).unwrap();
        f.write_all(b"{\"t\":\"pha\n{\"t\":\"phase\",\"phase\":\"x\"}\n")
            .unwrap();
        drop(f);
        let e = Journal::open(&s).err().unwrap().to_string();
        assert!(e.contains("line 2"), "{e}");
        fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn planted_journals_are_refused_links_and_foreign_modes() {
        let (d, s) = state("planted");
        let fake = d.join("fake");
        fs::write(&fake, "{\"t\":\"begin\"}\n").unwrap();
        fs::set_permissions(&fake, fs::Permissions::from_mode(0o600)).unwrap();
        std::os::unix::fs::symlink(&fake, s.journal()).unwrap();
        let e = Journal::open(&s).err().unwrap().to_string();
        assert!(e.contains("symbolic link"), "{e}");
        fs::remove_file(s.journal()).unwrap();
        fs::write(s.journal(), "").unwrap();
        fs::set_permissions(s.journal(), fs::Permissions::from_mode(0o666)).unwrap();
        let e = Journal::open(&s).err().unwrap().to_string();
        assert!(e.contains("mode 666"), "{e}");
        fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn a_revised_intent_replaces_the_pending_one() {
        let (d, s) = state("revise");
        let mut j = Journal::create(&s, begin()).unwrap();
        j.append(intent("a", "db2")).unwrap();
        j.append(Entry::Intent {
            step: "a".into(),
            host: "db2".into(),
            undo: Undo::Vip {
                host: "db2".into(),
                add: true,
            },
        })
        .unwrap();
        let p = j.pending_undos();
        assert_eq!(p.len(), 1);
        assert!(matches!(p[0].1, Undo::Vip { .. }));
        fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn close_moves_the_file_aside() {
        let (d, s) = state("close");
        let mut j = Journal::create(&s, begin()).unwrap();
        j.phase("stop-complete").unwrap();
        assert!(j.reached("stop-complete"));
        let done = j.close(&s, "completed").unwrap();
        assert!(!s.journal().exists());
        assert!(done
            .to_string_lossy()
            .ends_with("mha-helper.app1.journal.1.completed"));
        assert!(Journal::open(&s).unwrap().is_none());
        assert!(Journal::open_path(&done).unwrap().is_some());
        fs::remove_dir_all(d).unwrap();
    }
}
