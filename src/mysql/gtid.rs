//! MySQL GTID sets (`uuid:1-5:7,uuid2[:tag]:1-3`), as `gtid_executed`
//! prints them: enough arithmetic to tell whether one host has every
//! transaction of another, and which ones it lacks.

use std::collections::BTreeMap;
use std::fmt;

/// Transactions by source: (uuid, tag) -> sorted, disjoint, inclusive
/// intervals. A tag is empty for untagged GTIDs (MySQL 8.3+ adds tags).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GtidSet {
    sources: BTreeMap<(String, String), Vec<(u64, u64)>>,
}

impl GtidSet {
    /// Parse a set; blanks and line breaks are ignored. An error names the
    /// part that is not a GTID set.
    pub fn parse(text: &str) -> Result<GtidSet, String> {
        let text: String = text.chars().filter(|c| !c.is_whitespace()).collect();
        let mut set = GtidSet::default();
        for part in text.split(',').filter(|p| !p.is_empty()) {
            let mut fields = part.split(':');
            let uuid = fields.next().unwrap_or_default().to_ascii_lowercase();
            if uuid.len() != 36 || !uuid.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
                return Err(format!("'{part}' does not start with a server uuid"));
            }
            let mut tag = String::new();
            for f in fields {
                if f.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
                    tag = f.to_ascii_lowercase();
                    continue;
                }
                let (a, b) = match f.split_once('-') {
                    Some((a, b)) => (a, b),
                    None => (f, f),
                };
                let (a, b) = match (a.parse::<u64>(), b.parse::<u64>()) {
                    (Ok(a), Ok(b)) if a >= 1 && a <= b => (a, b),
                    _ => return Err(format!("'{f}' in '{part}' is not an interval")),
                };
                set.add((uuid.clone(), tag.clone()), a, b);
            }
        }
        Ok(set)
    }

    fn add(&mut self, key: (String, String), a: u64, b: u64) {
        let v = self.sources.entry(key).or_default();
        v.push((a, b));
        v.sort_unstable();
        let mut merged: Vec<(u64, u64)> = Vec::with_capacity(v.len());
        for &(a, b) in v.iter() {
            match merged.last_mut() {
                Some(last) if a <= last.1.saturating_add(1) => last.1 = last.1.max(b),
                _ => merged.push((a, b)),
            }
        }
        *v = merged;
    }

    pub fn is_empty(&self) -> bool {
        self.sources.is_empty()
    }

    /// The transactions of `self` that `other` lacks.
    pub fn minus(&self, other: &GtidSet) -> GtidSet {
        let mut out = GtidSet::default();
        for (key, ivs) in &self.sources {
            let theirs = other.sources.get(key).map(Vec::as_slice).unwrap_or(&[]);
            for &(a, b) in ivs {
                let mut start = a;
                for &(c, d) in theirs {
                    if d < start || c > b {
                        continue;
                    }
                    if c > start {
                        out.add(key.clone(), start, c - 1);
                    }
                    start = d.saturating_add(1);
                    if start > b {
                        break;
                    }
                }
                if start <= b {
                    out.add(key.clone(), start, b);
                }
            }
        }
        out
    }

    /// The set without the transactions of server `uuid`.
    pub fn without_source(&self, uuid: &str) -> GtidSet {
        let uuid = uuid.to_ascii_lowercase();
        GtidSet {
            sources: self
                .sources
                .iter()
                .filter(|((u, _), _)| *u != uuid)
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        }
    }

    /// Every transaction of `self` is in `other`.
    pub fn is_subset_of(&self, other: &GtidSet) -> bool {
        self.minus(other).is_empty()
    }

    /// How many transactions the set holds.
    pub fn count(&self) -> u64 {
        self.sources
            .values()
            .flatten()
            .map(|(a, b)| b - a + 1)
            .sum()
    }
}

impl fmt::Display for GtidSet {
    /// The form MySQL prints (one line), tags after their uuid.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first_uuid = true;
        let mut last_uuid: Option<&str> = None;
        for ((uuid, tag), ivs) in &self.sources {
            if last_uuid != Some(uuid.as_str()) {
                if !first_uuid {
                    f.write_str(",")?;
                }
                f.write_str(uuid)?;
                first_uuid = false;
                last_uuid = Some(uuid);
            }
            if !tag.is_empty() {
                write!(f, ":{tag}")?;
            }
            for (a, b) in ivs {
                if a == b {
                    write!(f, ":{a}")?;
                } else {
                    write!(f, ":{a}-{b}")?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "888848d4-edea-11f1-9835-ce4d833885b0";
    const B: &str = "9b5e0c1a-edea-11f1-9835-ce4d833885b0";

    fn set(s: &str) -> GtidSet {
        GtidSet::parse(s).unwrap()
    }

    #[test]
    fn sets_parse_as_mysql_prints_them_and_print_back() {
        let s = set(&format!("{A}:1-24:26,\n{B}:1-3"));
        assert_eq!(s.to_string(), format!("{A}:1-24:26,{B}:1-3"));
        assert_eq!(s.count(), 28);
        assert!(set("").is_empty());
        // adjacent and overlapping intervals merge
        assert_eq!(
            set(&format!("{A}:5-9:1-4:8-12")).to_string(),
            format!("{A}:1-12")
        );
    }

    #[test]
    fn tagged_gtids_of_mysql_8_4_are_their_own_sources() {
        let s = set(&format!("{A}:1-5:fence:1-2"));
        assert_eq!(s.count(), 7);
        assert_eq!(s.to_string(), format!("{A}:1-5:fence:1-2"));
        assert!(!set(&format!("{A}:fence:1")).is_subset_of(&set(&format!("{A}:1-5"))));
    }

    #[test]
    fn what_one_host_lacks_is_named() {
        let old = set(&format!("{A}:1-30,{B}:1-3"));
        let new = set(&format!("{A}:1-24:27,{B}:1-3"));
        assert!(!old.is_subset_of(&new));
        assert_eq!(old.minus(&new).to_string(), format!("{A}:25-26:28-30"));
        assert!(new.is_subset_of(&old));
        assert_eq!(old.minus(&old), GtidSet::default());
    }

    #[test]
    fn errant_transactions_are_those_of_other_sources_than_the_master() {
        // db2 read after db1 committed A:31: not errant, db1 is A
        let old = set(&format!("{A}:1-30"));
        let new = set(&format!("{A}:1-31,{B}:1"));
        let errant = new.minus(&old).without_source(A);
        assert_eq!(errant.to_string(), format!("{B}:1"));
    }

    #[test]
    fn garbage_is_refused_with_the_part_named() {
        assert!(GtidSet::parse("db1:1-5").unwrap_err().contains("db1:1-5"));
        assert!(GtidSet::parse(&format!("{A}:5-1"))
            .unwrap_err()
            .contains("5-1"));
        assert!(GtidSet::parse(&format!("{A}:0")).is_err());
    }
}
