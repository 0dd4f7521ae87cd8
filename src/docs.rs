//! The files a package installs beside the binary, made from the clap
//! definition so they cannot drift from `--help`: a man page for the command
//! and one per subcommand (`mha-helper-check.1`, ...), and completions for
//! bash, zsh and fish. `mha-helper generate-docs DIR` writes them;
//! `scripts/package` calls it. None of them is kept in the source tree.

mod sections;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap_complete::Shell;

const BIN: &str = "mha-helper";

/// The historic command names the packages install (`scripts/<name>`), and
/// the subcommand each runs: their man page is that subcommand's.
pub const HISTORIC: [(&str, &str); 4] = [
    ("master_ip_failover", "master-ip-failover"),
    ("master_ip_online_change", "master-ip-online-change"),
    ("mysql_failover", "failover"),
    ("mysql_online_failover", "switchover"),
];

/// The command without its hidden subcommands: clap_complete would offer
/// them (clap_mangen already leaves them out).
fn visible(cmd: clap::Command, version: &'static str) -> clap::Command {
    let subs: Vec<clap::Command> = cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set())
        .cloned()
        .collect();
    let mut top = clap::Command::new(BIN).version(version).subcommands(subs);
    if let Some(a) = cmd.get_about() {
        top = top.about(a.clone());
    }
    top.args(cmd.get_arguments().cloned())
}

/// Write `DIR/man/*.1` and `DIR/completions/{mha-helper.bash,_mha-helper,
/// mha-helper.fish}` for the command line `cli` (the clap definition of
/// `mha-helper`, of `version`); return the files written, sorted.
pub fn generate(dir: &Path, cli: clap::Command, version: &'static str) -> Result<Vec<PathBuf>> {
    let man = dir.join("man");
    let completions = dir.join("completions");
    for d in [&man, &completions] {
        std::fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
    }
    clap_mangen::generate_to(cli.clone(), &man)
        .with_context(|| format!("cannot write the man pages into {}", man.display()))?;
    let subs = cli.get_subcommands().filter(|s| !s.is_hide_set());
    for sub in std::iter::once("").chain(subs.map(|s| s.get_name())) {
        let name = match sub {
            "" => format!("{BIN}.1"),
            s => format!("{BIN}-{s}.1"),
        };
        let page = man.join(name);
        let mut text = std::fs::read_to_string(&page)
            .with_context(|| format!("cannot read {}", page.display()))?;
        text.push_str(&sections::render(sub));
        std::fs::write(&page, text).with_context(|| format!("cannot write {}", page.display()))?;
    }
    for (name, sub) in HISTORIC {
        let page = man.join(format!("{name}.1"));
        std::fs::write(&page, format!(".so man1/{BIN}-{sub}.1\n"))
            .with_context(|| format!("cannot write {}", page.display()))?;
    }
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        clap_complete::generate_to(shell, &mut visible(cli.clone(), version), BIN, &completions)
            .with_context(|| {
                format!(
                    "cannot write the {shell} completion into {}",
                    completions.display()
                )
            })?;
    }
    let mut files = Vec::new();
    for d in [&man, &completions] {
        for e in std::fs::read_dir(d)? {
            files.push(e?.path());
        }
    }
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_man_page_per_visible_subcommand_and_three_completions() {
        let d = std::env::temp_dir().join(format!("mha-helper-docs-{}", std::process::id()));
        let cli = <crate::cli::Cli as clap::CommandFactory>::command();
        let files = generate(&d, cli, crate::cli::VERSION).unwrap();
        let names: Vec<String> = files
            .iter()
            .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        for want in [
            "mha-helper.1",
            "mha-helper-check.1",
            "mha-helper-switchover.1",
            "mha-helper-master-ip-online-change.1",
            "mha-helper-recover.1",
            "master_ip_failover.1",
            "mysql_online_failover.1",
            "mha-helper.bash",
            "_mha-helper",
            "mha-helper.fish",
        ] {
            assert!(names.iter().any(|n| n == want), "{want} missing: {names:?}");
        }
        // Internal subcommands get no page.
        assert!(
            !names
                .iter()
                .any(|n| n.contains("keeper") || n.contains("generate")),
            "{names:?}"
        );
        let page = std::fs::read_to_string(d.join("man/mha-helper-check.1")).unwrap();
        assert!(page.contains("Preflight a cluster"), "{page}");
        assert!(
            page.contains(".SH \"EXIT STATUS\"") && page.contains("\\-\\-notify"),
            "{page}"
        );
        // A historic name's page is its subcommand's, and that page exists.
        for (name, sub) in HISTORIC {
            let link = std::fs::read_to_string(d.join(format!("man/{name}.1"))).unwrap();
            let target = link.trim().strip_prefix(".so man1/").unwrap();
            assert_eq!(target, format!("mha-helper-{sub}.1"));
            assert!(names.iter().any(|n| n == target), "{target}: {names:?}");
        }
        for c in ["mha-helper.bash", "_mha-helper", "mha-helper.fish"] {
            let text = std::fs::read_to_string(d.join("completions").join(c)).unwrap();
            assert!(text.contains("switchover"), "{c}: {text}");
            assert!(
                !text.contains("keeper") && !text.contains("generate-docs"),
                "{c}: {text}"
            );
        }
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn each_historic_script_runs_the_subcommand_its_man_page_names() {
        for (name, sub) in HISTORIC {
            let path = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("scripts")
                .join(name);
            let text = std::fs::read_to_string(&path).unwrap();
            let exec = text.lines().find(|l| l.starts_with("exec ")).unwrap();
            assert!(
                exec.starts_with(&format!("exec \"${{MHA_HELPER_BIN:-mha-helper}}\" {sub} ")),
                "{name}: {exec}"
            );
        }
    }
}
