//! Reading the `mysql --batch` output of a script back into named result
//! sets.
//!
//! Every query of a [`super::Script`] is preceded by a marker query, so the
//! output splits cleanly even when a query returns nothing (batch mode then
//! prints no header at all). Values are unescaped as batch mode escapes them
//! (`\t`, `\n`, `\\`, `\0`); a bare `NULL` is read as SQL NULL, so queries
//! whose strings could be the word NULL select `x IS NULL` beside them.

use std::collections::HashMap;

use anyhow::{bail, Result};

pub const MARKER_COLUMN: &str = "mha-helper-marker";
pub const MARKER_PREFIX: &str = "mha-helper:";

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ResultSet {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Option<String>>>,
}

impl ResultSet {
    pub fn col(&self, name: &str) -> Option<usize> {
        self.columns
            .iter()
            .position(|c| c.eq_ignore_ascii_case(name))
    }

    /// The value of `name` in row `row` (None for NULL, a missing row or a
    /// missing column).
    pub fn get(&self, row: usize, name: &str) -> Option<&str> {
        let c = self.col(name)?;
        self.rows.get(row)?.get(c)?.as_deref()
    }

    /// Rows as maps from column name to value, for readable callers.
    pub fn records(&self) -> impl Iterator<Item = Record<'_>> {
        self.rows.iter().map(move |r| Record { set: self, row: r })
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }
}

pub struct Record<'a> {
    set: &'a ResultSet,
    row: &'a [Option<String>],
}

impl<'a> Record<'a> {
    pub fn get(&self, name: &str) -> Option<&'a str> {
        let c = self.set.col(name)?;
        self.row.get(c)?.as_deref()
    }
    pub fn text(&self, name: &str) -> String {
        self.get(name).unwrap_or_default().to_string()
    }
    pub fn num(&self, name: &str) -> i64 {
        self.get(name).and_then(|v| v.parse().ok()).unwrap_or(0)
    }
    pub fn flag(&self, name: &str) -> bool {
        matches!(
            self.get(name),
            Some("1") | Some("ON") | Some("Yes") | Some("on")
        )
    }
}

/// Split batch output into the named result sets.
pub fn parse(stdout: &str) -> Result<HashMap<String, ResultSet>> {
    let mut sets = HashMap::new();
    let mut current: Option<(String, ResultSet, bool)> = None;
    let mut lines = stdout.lines().peekable();
    while let Some(line) = lines.next() {
        if line == MARKER_COLUMN {
            if let Some(name) = lines.peek().and_then(|l| l.strip_prefix(MARKER_PREFIX)) {
                let name = name.to_string();
                lines.next();
                if let Some((n, set, _)) = current.take() {
                    sets.insert(n, set);
                }
                current = Some((name, ResultSet::default(), false));
                continue;
            }
        }
        match current.as_mut() {
            Some((_, set, header_seen)) => {
                let fields = line.split('\t').map(unescape);
                if !*header_seen {
                    set.columns = fields.map(|f| f.unwrap_or_else(|| "NULL".into())).collect();
                    *header_seen = true;
                } else {
                    set.rows.push(fields.collect());
                }
            }
            None => bail!("unexpected output before the first result marker: {line:?}"),
        }
    }
    if let Some((n, set, _)) = current.take() {
        sets.insert(n, set);
    }
    Ok(sets)
}

fn unescape(field: &str) -> Option<String> {
    if field == "NULL" {
        return None;
    }
    if !field.contains('\\') {
        return Some(field.to_string());
    }
    let mut out = String::with_capacity(field.len());
    let mut chars = field.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('0') => out.push('\0'),
            Some('\\') => out.push('\\'),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_result_sets_by_marker_including_empty_ones() {
        let out = "mha-helper-marker\nmha-helper:a\nx\ty\n1\tNULL\n2\tb\n\
                   mha-helper-marker\nmha-helper:empty\n\
                   mha-helper-marker\nmha-helper:c\nGrants for u@%\nGRANT USAGE ON *.* TO `u`@`%`\n";
        let sets = parse(out).unwrap();
        assert_eq!(sets["a"].columns, vec!["x", "y"]);
        assert_eq!(
            sets["a"].rows,
            vec![
                vec![Some("1".into()), None],
                vec![Some("2".into()), Some("b".into())]
            ]
        );
        assert!(sets["empty"].is_empty());
        assert!(sets["empty"].columns.is_empty());
        assert_eq!(
            sets["c"].get(0, "Grants for u@%"),
            Some("GRANT USAGE ON *.* TO `u`@`%`")
        );
    }

    #[test]
    fn batch_escapes_are_undone() {
        let sets = parse("mha-helper-marker\nmha-helper:q\nv\na\\tb\\nc\\\\d\\0\n").unwrap();
        assert_eq!(sets["q"].get(0, "v"), Some("a\tb\nc\\d\0"));
    }

    #[test]
    fn output_before_any_marker_is_an_error() {
        assert!(parse("stray\n").is_err());
    }

    #[test]
    fn records_give_typed_access_by_column_name() {
        let sets = parse("mha-helper-marker\nmha-helper:q\nid\tflag\tname\n7\tON\tx\n").unwrap();
        let r = sets["q"].records().next().unwrap();
        assert_eq!(r.num("ID"), 7);
        assert!(r.flag("flag"));
        assert_eq!(r.text("name"), "x");
        assert_eq!(r.text("missing"), "");
    }
}
