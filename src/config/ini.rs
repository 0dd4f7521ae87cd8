//! Line-oriented INI reader that follows Config::Tiny 2.28 (`read_string`), the parser MHA 0.58 uses
//! for its configuration files.
//!
//! It exists because general INI crates read these files differently from MHA (backslash escapes,
//! indented comment lines glued onto the next key, `# ...` treated as a comment after a value) and
//! cannot report the line of a key for later semantic errors. MHA's file must mean here exactly what it
//! means to MHA, so the rules below are Config::Tiny's, one by one:
//!
//! - Lines are split on `\r\r\n`, `\r\n`, `\r` or `\n`; line numbers count those lines from 1.
//! - A line that is blank, or whose first non-blank character is `#` or `;`, is skipped.
//! - Otherwise the first "blank `;` blank, followed by at least one character" and everything after it
//!   is removed (the only inline comment). `;` without blanks around it and `#` are kept.
//! - `[ name ]` (blanks around the name trimmed) opens a section; a section named twice is one section.
//! - `key = value` (key up to the first `=`, both trimmed) sets a key; the last of repeated keys wins.
//!   Keys before any section go to the root section [`ROOT`] (`_`), as in Config::Tiny.
//! - Anything else is a syntax error. Nothing is unescaped and no quotes are removed here.
//!
//! "Blank" is Perl's `\s` on bytes: space, tab, `\n`, vertical tab, form feed, `\r`.

use std::fmt;
use std::path::Path;

use anyhow::{anyhow, Context, Result};

/// Name of the section that receives keys appearing before any `[section]` header (Config::Tiny's).
pub const ROOT: &str = "_";

/// A parsed file: its sections in order of first appearance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ini {
    /// The file name used in error messages (the path as given).
    pub origin: String,
    pub sections: Vec<Section>,
}

/// One section; a header repeated later in the file adds to the first one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    pub name: String,
    /// Line of the first header naming this section (0 for [`ROOT`], which has no header).
    pub line: usize,
    /// Keys in order of first appearance; a repeated key keeps its place but takes the last value.
    pub entries: Vec<Entry>,
}

/// One `key = value` line, trimmed, nothing unescaped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub key: String,
    pub value: String,
    /// Line of the occurrence that won (the last one).
    pub line: usize,
}

/// A place in a file, displayed as `FILE:LINE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loc {
    pub origin: String,
    pub line: usize,
}

impl fmt::Display for Loc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.origin, self.line)
    }
}

/// An error of the one-line form `FILE:LINE: fault`.
pub fn error_at(origin: &str, line: usize, fault: impl fmt::Display) -> anyhow::Error {
    anyhow!("{origin}:{line}: {fault}")
}

impl Ini {
    /// Reads and parses a file; the path as given names it in messages.
    pub fn read_file(path: &Path) -> Result<Ini> {
        let origin = path.display().to_string();
        let bytes = std::fs::read(path).with_context(|| format!("{origin}: cannot read"))?;
        Ini::parse_bytes(&origin, &bytes)
    }

    /// Parses text already in memory.
    pub fn parse_str(origin: &str, text: &str) -> Result<Ini> {
        Ini::parse_bytes(origin, text.as_bytes())
    }

    /// Parses raw bytes (Config::Tiny reads files as bytes; only lines that are not comments must be
    /// UTF-8 here, because keys and values become Rust strings).
    pub fn parse_bytes(origin: &str, bytes: &[u8]) -> Result<Ini> {
        let mut ini = Ini {
            origin: origin.to_string(),
            sections: Vec::new(),
        };
        let mut current = ROOT.to_string();
        for (index, raw) in split_lines(bytes).into_iter().enumerate() {
            let number = index + 1;
            match classify(raw) {
                Line::Skip => {}
                Line::Header(name) => {
                    let name = utf8(origin, number, name)?;
                    ini.section_mut(&name, number);
                    current = name;
                }
                Line::Pair(key, value) => {
                    let key = utf8(origin, number, key)?;
                    let value = utf8(origin, number, value)?;
                    let section = ini.section_mut(&current, 0);
                    match section.entries.iter_mut().find(|e| e.key == key) {
                        Some(entry) => {
                            entry.value = value;
                            entry.line = number;
                        }
                        None => section.entries.push(Entry {
                            key,
                            value,
                            line: number,
                        }),
                    }
                }
                Line::Bad => {
                    return Err(error_at(
                        origin,
                        number,
                        format_args!("syntax error: '{}'", visible(raw)),
                    ))
                }
            }
        }
        Ok(ini)
    }

    /// The section with this exact name.
    pub fn section(&self, name: &str) -> Option<&Section> {
        self.sections.iter().find(|s| s.name == name)
    }

    /// Where a line of this file is.
    pub fn loc(&self, line: usize) -> Loc {
        Loc {
            origin: self.origin.clone(),
            line,
        }
    }

    fn section_mut(&mut self, name: &str, line: usize) -> &mut Section {
        let pos = match self.sections.iter().position(|s| s.name == name) {
            Some(pos) => pos,
            None => {
                self.sections.push(Section {
                    name: name.to_string(),
                    line,
                    entries: Vec::new(),
                });
                self.sections.len() - 1
            }
        };
        &mut self.sections[pos]
    }
}

impl Section {
    /// The entry for this exact key.
    pub fn get(&self, key: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.key == key)
    }

    /// The line to blame for the section as a whole: its header, or its first key for [`ROOT`].
    pub fn first_line(&self) -> usize {
        if self.line > 0 {
            self.line
        } else {
            self.entries.first().map_or(0, |e| e.line)
        }
    }
}

/// Perl's `\s` for byte strings.
pub(crate) fn is_blank(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// Removes Perl `\s` from both ends.
pub(crate) fn trim_blank(s: &[u8]) -> &[u8] {
    let start = s.iter().position(|&b| !is_blank(b)).unwrap_or(s.len());
    let end = s
        .iter()
        .rposition(|&b| !is_blank(b))
        .map_or(start, |p| p + 1);
    &s[start..end]
}

/// Config::Tiny's line split: `\r{1,2}\n`, a lone `\r` or a lone `\n` ends a line. Like Perl's
/// `split`, trailing empty lines are dropped (they could only be skipped anyway).
fn split_lines(bytes: &[u8]) -> Vec<&[u8]> {
    let mut lines = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        let len = match bytes[i] {
            b'\n' => 1,
            b'\r' if bytes.get(i + 1) == Some(&b'\n') => 2,
            b'\r' if bytes.get(i + 1) == Some(&b'\r') && bytes.get(i + 2) == Some(&b'\n') => 3,
            b'\r' => 1,
            _ => 0,
        };
        if len == 0 {
            i += 1;
        } else {
            lines.push(&bytes[start..i]);
            i += len;
            start = i;
        }
    }
    lines.push(&bytes[start..]);
    while lines.last().is_some_and(|l| l.is_empty()) {
        lines.pop();
    }
    lines
}

enum Line<'a> {
    Skip,
    Header(&'a [u8]),
    Pair(&'a [u8], &'a [u8]),
    Bad,
}

fn classify(raw: &[u8]) -> Line<'_> {
    // Whole-line comments and blank lines.
    match raw.iter().find(|&&b| !is_blank(b)) {
        None | Some(b'#') | Some(b';') => return Line::Skip,
        Some(_) => {}
    }
    let line = strip_inline_comment(raw);

    // `[ name ]`: the name keeps at least one character, even when it is all blanks.
    let t = trim_blank(line);
    if t.len() >= 3 && t[0] == b'[' && t[t.len() - 1] == b']' {
        let inner = &t[1..t.len() - 1];
        let name = trim_blank(inner);
        return Line::Header(if name.is_empty() {
            &inner[inner.len() - 1..]
        } else {
            name
        });
    }

    // `key = value`: the key runs to the first `=` and must not be empty before trimming.
    if let Some(eq) = line.iter().position(|&b| b == b'=') {
        let key_part = &line[..eq];
        if !key_part.is_empty() {
            let key = trim_blank(key_part);
            let key = if key.is_empty() {
                &key_part[key_part.len() - 1..]
            } else {
                key
            };
            return Line::Pair(key, trim_blank(&line[eq + 1..]));
        }
    }
    Line::Bad
}

/// Removes the leftmost "blank `;` blank, then one or more characters" up to the end of the line.
fn strip_inline_comment(line: &[u8]) -> &[u8] {
    let n = line.len();
    for i in 0..n.saturating_sub(3) {
        if is_blank(line[i]) && line[i + 1] == b';' && is_blank(line[i + 2]) {
            return &line[..i];
        }
    }
    line
}

/// The line as text, with control characters and byte order marks made visible.
fn visible(raw: &[u8]) -> String {
    String::from_utf8_lossy(raw)
        .chars()
        .map(|c| {
            if c.is_control() || c == '\u{feff}' {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

fn utf8(origin: &str, line: usize, bytes: &[u8]) -> Result<String> {
    String::from_utf8(bytes.to_vec()).map_err(|_| {
        error_at(
            origin,
            line,
            "not valid UTF-8 (only comment lines may be other bytes)",
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Ini {
        Ini::parse_str("t.cnf", text).unwrap()
    }

    fn err(text: &str) -> String {
        Ini::parse_str("t.cnf", text).unwrap_err().to_string()
    }

    fn get<'a>(ini: &'a Ini, section: &str, key: &str) -> &'a str {
        &ini.section(section).unwrap().get(key).unwrap().value
    }

    #[test]
    fn sections_keep_file_order_and_key_lines() {
        let ini = parse("[b]\nx=1\n\n[a]\ny = 2\n");
        let names: Vec<_> = ini.sections.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["b", "a"]);
        assert_eq!(ini.section("a").unwrap().line, 4);
        assert_eq!(ini.section("a").unwrap().get("y").unwrap().line, 5);
    }

    #[test]
    fn crlf_cr_and_crcrlf_all_end_lines() {
        let ini = parse("[s]\r\na=1\rb=2\r\r\nc=3\n\rd=4");
        let s = ini.section("s").unwrap();
        assert_eq!(s.get("a").unwrap().line, 2);
        assert_eq!(s.get("b").unwrap().line, 3);
        assert_eq!(s.get("c").unwrap().line, 4);
        // "\n\r" is two line ends: an empty line 5, then d on line 6.
        assert_eq!(s.get("d").unwrap().line, 6);
        assert_eq!(s.get("a").unwrap().value, "1");
    }

    #[test]
    fn section_name_spacing_is_trimmed() {
        let ini = parse("  [ server1 ]  \nhostname=h\n[server default]\n");
        assert_eq!(get(&ini, "server1", "hostname"), "h");
        assert!(ini.section("server default").is_some());
    }

    #[test]
    fn section_of_blanks_keeps_one_blank_and_empty_brackets_are_an_error() {
        assert!(parse("[   ]\n").section(" ").is_some());
        assert_eq!(err("[]\n"), "t.cnf:1: syntax error: '[]'");
    }

    #[test]
    fn repeated_section_header_merges_into_first() {
        let ini = parse("[s]\na=1\n[t]\n[s]\nb=2\n");
        assert_eq!(ini.sections.len(), 2);
        assert_eq!(get(&ini, "s", "b"), "2");
        assert_eq!(ini.section("s").unwrap().line, 1);
    }

    #[test]
    fn key_before_any_section_goes_to_root() {
        let ini = parse("a = 1\n[s]\n");
        assert_eq!(get(&ini, ROOT, "a"), "1");
        assert_eq!(ini.section(ROOT).unwrap().first_line(), 1);
    }

    #[test]
    fn repeated_key_last_wins_with_its_line() {
        let ini = parse("[s]\npassword=one\nuser=u\npassword=two\n");
        let e = ini.section("s").unwrap().get("password").unwrap();
        assert_eq!((e.value.as_str(), e.line), ("two", 4));
        // The key keeps its first place.
        assert_eq!(ini.section("s").unwrap().entries[0].key, "password");
    }

    #[test]
    fn space_semicolon_space_starts_inline_comment() {
        let ini = parse("[s]\na = x ; comment\nb = x\t;\tc ; d\n[t] ; trailing\n");
        assert_eq!(get(&ini, "s", "a"), "x");
        assert_eq!(get(&ini, "s", "b"), "x");
        assert!(ini.section("t").is_some());
    }

    #[test]
    fn semicolon_without_spaces_is_part_of_value() {
        let ini = parse("[s]\na = x;y\nb = x ;y\nc = x; y\n");
        assert_eq!(get(&ini, "s", "a"), "x;y");
        assert_eq!(get(&ini, "s", "b"), "x ;y");
        assert_eq!(get(&ini, "s", "c"), "x; y");
    }

    #[test]
    fn space_semicolon_space_at_end_of_line_is_kept() {
        // Config::Tiny needs at least one character after " ; "; trailing blanks are then trimmed.
        let ini = parse("[s]\na = x ; \n");
        assert_eq!(get(&ini, "s", "a"), "x ;");
    }

    #[test]
    fn hash_after_value_is_part_of_value() {
        let ini = parse("[s]\npassword = se#cret # not a comment\n");
        assert_eq!(get(&ini, "s", "password"), "se#cret # not a comment");
    }

    #[test]
    fn indented_comment_line_is_a_comment() {
        let ini = parse("[s]\n   # note\n\t; other\nuser = u\n");
        let s = ini.section("s").unwrap();
        assert_eq!(s.entries.len(), 1);
        assert_eq!(s.get("user").unwrap().line, 4);
    }

    #[test]
    fn backslash_in_value_is_kept_literally() {
        let ini = parse("[s]\npassword = a\\nb\\\\c\\;\n");
        assert_eq!(get(&ini, "s", "password"), "a\\nb\\\\c\\;");
    }

    #[test]
    fn quotes_are_not_touched_by_the_reader() {
        let ini = parse("[s]\na = \"x y\"\nb = 'q\n");
        assert_eq!(get(&ini, "s", "a"), "\"x y\"");
        assert_eq!(get(&ini, "s", "b"), "'q");
    }

    #[test]
    fn key_is_cut_at_first_equals_and_value_keeps_the_rest() {
        let ini = parse("[s]\n  a b  =  c = d  \nempty =\n");
        assert_eq!(get(&ini, "s", "a b"), "c = d");
        assert_eq!(get(&ini, "s", "empty"), "");
    }

    #[test]
    fn line_without_equals_is_syntax_error_with_line_number() {
        assert_eq!(
            err("[s]\n\nhostname db1\n"),
            "t.cnf:3: syntax error: 'hostname db1'"
        );
    }

    #[test]
    fn line_starting_with_equals_is_syntax_error() {
        assert_eq!(err("[s]\n=x\n"), "t.cnf:2: syntax error: '=x'");
    }

    #[test]
    fn blank_key_is_one_blank_character() {
        let ini = parse("[s]\n   = x\n");
        assert_eq!(get(&ini, "s", " "), "x");
    }

    #[test]
    fn byte_order_mark_is_a_syntax_error_like_config_tiny() {
        let e = err("\u{feff}[server default]\n");
        assert_eq!(e, "t.cnf:1: syntax error: '\\u{feff}[server default]'");
    }

    #[test]
    fn non_utf8_comment_is_fine_but_non_utf8_value_is_an_error() {
        let ini = Ini::parse_bytes("t.cnf", b"# caf\xe9\n[s]\na=1\n").unwrap();
        assert_eq!(get(&ini, "s", "a"), "1");
        let e = Ini::parse_bytes("t.cnf", b"[s]\na=caf\xe9\n").unwrap_err();
        assert!(e.to_string().starts_with("t.cnf:2: not valid UTF-8"), "{e}");
    }

    #[test]
    fn empty_file_has_no_sections() {
        assert!(parse("").sections.is_empty());
        assert!(parse("\n\n# only comments\n").sections.is_empty());
    }

    #[test]
    fn header_with_inline_comment_and_brackets_inside() {
        let ini = parse("[a]] ; x\n");
        assert!(ini.section("a]").is_some());
    }
}
