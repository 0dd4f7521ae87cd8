//! Why MHA failed, in one line: the first error MHA logged, without its
//! timestamp, source location and Perl's "at FILE line N."; and what MHA
//! needs that is missing, checked before it runs.

use anyhow::{anyhow, Result};

use crate::exit::bad_input;
use crate::setup::Setup;

/// The first `[error]` line of MHA's output that says something, as a
/// sentence (MHA's last words, `Got ERROR:  at .../masterha_master_switch
/// line 57.`, say nothing).
pub fn first_error(lines: &[String]) -> Option<String> {
    lines.iter().find_map(|l| error_text(l))
}

fn error_text(line: &str) -> Option<String> {
    let after = &line[line.find("[error]")? + "[error]".len()..];
    // `[/usr/share/perl5/MHA/ManagerUtil.pm, ln178] Got ERROR: ...`
    let text = match after.strip_prefix('[') {
        Some(rest) => rest.split_once("] ").map_or(rest, |(_, t)| t),
        None => after,
    };
    let text = text.trim().trim_start_matches("Got ERROR:").trim();
    let text = match text.rfind("at /") {
        Some(i) if text[i..].contains(" line ") => &text[..i],
        _ => text,
    };
    Some(text.trim().trim_end_matches('.').to_string()).filter(|t| !t.is_empty())
}

/// Refuse (bad input) when MHA could not do its work: it writes its status
/// and per-host logs into manager_workdir and creates none of it.
pub fn check_needs(setup: &Setup) -> Result<()> {
    let Some(s) = setup.mha.servers.first() else {
        return Ok(());
    };
    let dir = std::path::Path::new(&s.manager_workdir);
    if !dir.is_dir() {
        return Err(bad_input(anyhow!(
            "manager_workdir {} in {} does not exist: MHA writes its status files there and \
             would fail part way; create it (mkdir -p {})",
            dir.display(),
            setup.mha.app_path.display(),
            dir.display()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &str) -> Vec<String> {
        text.lines().map(String::from).collect()
    }

    #[test]
    fn the_first_error_is_read_without_timestamp_source_or_perl_location() {
        let out = lines(
            "Fri Dec  4 15:17:24 2026 - [info] * Phase 1: Configuration Check Phase..\n\
             Fri Dec  4 15:17:24 2026 - [error][/usr/share/perl5/MHA/ManagerUtil.pm, ln178] Got ERROR: No such file or directory:/w/app1.master_status.health at /usr/share/perl5/MHA/MasterFailover.pm line 147.\n\
             Fri Dec  4 15:17:24 2026 - [error][/usr/share/perl5/MHA/ManagerUtil.pm, ln178] Got Error on finalize_on_error",
        );
        assert_eq!(
            first_error(&out).as_deref(),
            Some("No such file or directory:/w/app1.master_status.health")
        );
        let rotate = lines(
            "x - [error][/usr/share/perl5/MHA/MasterRotate.pm, ln613] Switching master to db2(198.18.1.12:3306) done, but switching slaves partially failed.",
        );
        assert_eq!(
            first_error(&rotate).as_deref(),
            Some("Switching master to db2(198.18.1.12:3306) done, but switching slaves partially failed")
        );
        assert_eq!(first_error(&lines("a - [info] ok\nb - [warning] w")), None);
        let last_words = lines(
            "x - [error][/usr/share/perl5/MHA/ManagerUtil.pm, ln178] Got ERROR:  at /usr/bin/masterha_master_switch line 57.",
        );
        assert_eq!(first_error(&last_words), None);
    }
}
