//! The only places where untrusted text is turned into SQL or into a remote
//! shell word.
//!
//! Every SQL string literal goes through [`sql_string`], every SQL identifier
//! through [`sql_ident`], every account name through [`sql_account`] and
//! every word of a remote shell command through [`shell_word`]. Scripts that
//! use [`sql_string`] start with a statement that removes
//! `NO_BACKSLASH_ESCAPES` from the session's sql_mode (see
//! `mysql::Script`), so the backslash escapes below mean what they say.

/// A SQL string literal: `'...'` with backslash escapes.
pub fn sql_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '\0' => out.push_str("\\0"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\x1a' => out.push_str("\\Z"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// A SQL identifier: `` `...` `` with backticks doubled. Backticks carry no
/// backslash escapes, so this is safe whatever the sql_mode.
pub fn sql_ident(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('`');
    for c in s.chars() {
        if c == '`' {
            out.push('`');
        }
        out.push(c);
    }
    out.push('`');
    out
}

/// An account name `` `user`@`host` `` as GRANT, REVOKE, ALTER USER and KILL
/// filters expect it.
pub fn sql_account(user: &str, host: &str) -> String {
    format!("{}@{}", sql_ident(user), sql_ident(host))
}

/// One word for a POSIX shell: single-quoted, with `'` written as `'\''`.
pub fn shell_word(s: &str) -> String {
    let safe = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c));
    if safe {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        if c == '\'' {
            out.push_str("'\\''");
        } else {
            out.push(c);
        }
    }
    out.push('\'');
    out
}

/// A value inside a MySQL option file (`password="..."`). Option files
/// understand `\\`, `\"`, `\n`, `\r`, `\t` inside double quotes.
pub fn option_file_value(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sql_string_escapes_quote_backslash_and_controls() {
        assert_eq!(sql_string("plain"), "'plain'");
        assert_eq!(sql_string("o'brien"), "'o\\'brien'");
        assert_eq!(sql_string("back\\slash"), "'back\\\\slash'");
        assert_eq!(sql_string("a\nb\rc\0d\x1a"), "'a\\nb\\rc\\0d\\Z'");
        assert_eq!(sql_string(""), "''");
    }

    #[test]
    fn sql_ident_doubles_backticks_and_keeps_everything_else() {
        assert_eq!(sql_ident("appdb"), "`appdb`");
        assert_eq!(sql_ident("we`ird"), "`we``ird`");
        assert_eq!(sql_ident("o'brien\\"), "`o'brien\\`");
    }

    #[test]
    fn sql_account_quotes_user_and_host_separately() {
        assert_eq!(sql_account("o'brien", "10.%"), "`o'brien`@`10.%`");
        assert_eq!(sql_account("a`b", "%"), "`a``b`@`%`");
    }

    #[test]
    fn shell_word_leaves_safe_words_and_quotes_the_rest() {
        assert_eq!(shell_word("/usr/bin/mysql"), "/usr/bin/mysql");
        assert_eq!(shell_word(""), "''");
        assert_eq!(shell_word("a b"), "'a b'");
        assert_eq!(shell_word("it's"), "'it'\\''s'");
        assert_eq!(shell_word("$HOME;rm -rf /"), "'$HOME;rm -rf /'");
        assert_eq!(shell_word("~/x"), "'~/x'");
    }

    #[test]
    fn option_file_value_escapes_what_the_client_unescapes() {
        assert_eq!(
            option_file_value("a \"b'c\\d$x #y"),
            "\"a \\\"b'c\\\\d$x #y\""
        );
        assert_eq!(option_file_value("tab\tnl\n"), "\"tab\\tnl\\n\"");
    }
}
