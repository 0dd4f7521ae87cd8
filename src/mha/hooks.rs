//! Whether the hook MHA will run for a switch is mha-helper's, on this same
//! application: `switchover` and `failover` refuse to start MHA otherwise
//! (an online switch without our hook blocks no writes at all; a failover
//! without it fences nothing and moves no VIP), unless the operator passes
//! `--unprotected`.

use std::path::{Path, PathBuf};

use crate::setup::{Setup, DEFAULT_HELPER_CONF};

/// The hook a command needs MHA to call.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Hook {
    Online,
    Failover,
}

impl Hook {
    /// The MHA setting that names it.
    pub fn setting(self) -> &'static str {
        match self {
            Hook::Online => "master_ip_online_change_script",
            Hook::Failover => "master_ip_failover_script",
        }
    }

    /// mha-helper's subcommand for it.
    fn subcommand(self) -> &'static str {
        match self {
            Hook::Online => "master-ip-online-change",
            Hook::Failover => "master-ip-failover",
        }
    }

    /// The packaged historic name that runs that subcommand.
    fn historic(self) -> &'static str {
        match self {
            Hook::Online => "master_ip_online_change",
            Hook::Failover => "master_ip_failover",
        }
    }
}

/// What the switch's command and its hook each read: the application file
/// and mha-helper's own settings file (None: none).
#[derive(Debug, Clone, PartialEq)]
pub struct Files {
    pub app: PathBuf,
    pub helper: Option<PathBuf>,
}

/// Why no server of `setup` may run this switch with MHA calling `hook`
/// (one line, naming the setting and the file), or None when each does.
pub fn refusal(setup: &Setup, hook: Hook) -> Option<String> {
    let own = Files {
        app: setup.mha.app_path.clone(),
        helper: setup.paths.helper.clone().or_else(default_helper),
    };
    let exe = std::env::current_exe().ok();
    setup.mha.servers.iter().find_map(|s| {
        let value = match hook {
            Hook::Online => s.master_ip_online_change_script.as_deref(),
            Hook::Failover => s.master_ip_failover_script.as_deref(),
        };
        let why = problem(hook, value, &own, exe.as_deref())?;
        Some(format!(
            "{} for server {} in {} {why}",
            hook.setting(),
            s.hostname,
            own.app.display()
        ))
    })
}

fn default_helper() -> Option<PathBuf> {
    let p = PathBuf::from(DEFAULT_HELPER_CONF);
    p.is_file().then_some(p)
}

/// Why the hook command `value` is not mha-helper's `hook` reading `own`'s
/// files (None: it is). `exe`: this program, which a hook may name by any
/// path or link.
pub fn problem(hook: Hook, value: Option<&str>, own: &Files, exe: Option<&Path>) -> Option<String> {
    let value = value.map(str::trim).unwrap_or_default();
    if value.is_empty() {
        return Some("is not set: MHA would call no hook".into());
    }
    let Some(words) = shlex::split(value) else {
        return Some(format!("cannot be read as a command: {value}"));
    };
    let args = match runs_helper(hook, &words, exe) {
        Some(args) => args,
        None => {
            return Some(format!(
                "runs {}, not mha-helper's hook (`mha-helper {} --conf=...` or `{} --conf=...`)",
                words[0],
                hook.subcommand(),
                hook.historic()
            ))
        }
    };
    let Some(app) = flag(args, "--conf") else {
        return Some(format!(
            "gives the hook no --conf (it must name {})",
            own.app.display()
        ));
    };
    if !same_file(Path::new(app), &own.app) {
        return Some(format!(
            "gives the hook --conf={app}, not this command's {}",
            own.app.display()
        ));
    }
    // Without --helper-conf the hook reads what MHA_HELPER_CONF (inherited
    // through MHA) or the default names, as this command did.
    let helper = match flag(args, "--helper-conf") {
        Some(h) => Some(PathBuf::from(h)),
        None => std::env::var_os("MHA_HELPER_CONF")
            .map(PathBuf::from)
            .or_else(default_helper),
    };
    let same = match (&helper, &own.helper) {
        (Some(h), Some(o)) => same_file(h, o),
        (None, None) => true,
        _ => false,
    };
    if !same {
        let name = |p: &Option<PathBuf>| match p {
            Some(p) => p.display().to_string(),
            None => "none".into(),
        };
        return Some(format!(
            "gives the hook helper settings {}, not this command's {}",
            name(&helper),
            name(&own.helper)
        ));
    }
    None
}

/// The hook's arguments when `words` run mha-helper's `hook`.
fn runs_helper<'a>(hook: Hook, words: &'a [String], exe: Option<&Path>) -> Option<&'a [String]> {
    let program = words.first()?;
    let name = Path::new(program).file_name()?.to_str()?;
    if name == hook.historic() {
        return Some(&words[1..]);
    }
    let is_helper = name == "mha-helper" || exe.is_some_and(|e| same_file(Path::new(program), e));
    (is_helper && words.get(1).map(String::as_str) == Some(hook.subcommand())).then(|| &words[2..])
}

/// The value of `--name=V` or `--name V` among `args` (the last one wins,
/// as for clap).
fn flag<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    let mut found = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == name {
            found = it.next().map(String::as_str);
        } else if let Some(v) = a.strip_prefix(name).and_then(|r| r.strip_prefix('=')) {
            found = Some(v);
        }
    }
    found
}

/// Whether two paths name one file (by what they resolve to; as written
/// when either cannot be resolved).
fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TempDir;

    fn own(dir: &Path) -> Files {
        Files {
            app: dir.join("app1.cnf"),
            helper: Some(dir.join("helper.cnf")),
        }
    }

    fn dir() -> TempDir {
        let d = TempDir::new();
        d.write("app1.cnf", "");
        d.write("helper.cnf", "");
        d
    }

    #[test]
    fn mha_helper_or_its_historic_name_with_the_same_files_is_the_hook() {
        let d = dir();
        let p = d.path().display();
        for value in [
            format!("/usr/bin/mha-helper master-ip-online-change --conf={p}/app1.cnf --helper-conf={p}/helper.cnf"),
            format!("mha-helper master-ip-online-change --conf '{p}/app1.cnf' --helper-conf {p}/./helper.cnf"),
            format!("/usr/bin/master_ip_online_change --conf={p}/app1.cnf --helper-conf={p}/helper.cnf"),
        ] {
            assert_eq!(problem(Hook::Online, Some(&value), &own(d.path()), None), None, "{value}");
        }
    }

    #[test]
    fn a_missing_foreign_or_misdirected_hook_is_named() {
        let d = dir();
        let p = d.path().display();
        let o = own(d.path());
        let why = |hook, v: &str| problem(hook, Some(v), &o, None).unwrap_or_default();
        assert!(why(Hook::Online, "  ").contains("is not set"));
        assert!(problem(Hook::Online, None, &o, None)
            .unwrap()
            .contains("is not set"));
        assert!(why(
            Hook::Online,
            "/usr/local/bin/master_ip_online_change.pl --x"
        )
        .contains("runs /usr/local/bin/master_ip_online_change.pl, not mha-helper's hook"));
        // the failover hook where the online one belongs
        assert!(why(
            Hook::Online,
            &format!("mha-helper master-ip-failover --conf={p}/app1.cnf")
        )
        .contains("not mha-helper's hook"));
        assert!(why(Hook::Online, "mha-helper master-ip-online-change").contains("no --conf"));
        assert!(why(
            Hook::Failover,
            "master_ip_failover --conf=/etc/mha/other.cnf"
        )
        .contains("--conf=/etc/mha/other.cnf, not this command's"));
        assert!(why(
            Hook::Online,
            "mha-helper master-ip-online-change --conf='unclosed"
        )
        .contains("cannot be read as a command"));
        let other_helper = format!(
            "mha-helper master-ip-online-change --conf={p}/app1.cnf --helper-conf=/etc/x.cnf"
        );
        assert!(why(Hook::Online, &other_helper)
            .contains("helper settings /etc/x.cnf, not this command's"));
    }

    #[test]
    fn this_program_under_another_name_is_the_hook() {
        let d = dir();
        let p = d.path().display();
        let exe = d.write("renamed-binary", "");
        let v = format!(
            "{} master-ip-failover --conf={p}/app1.cnf --helper-conf={p}/helper.cnf",
            exe.display()
        );
        assert_eq!(
            problem(Hook::Failover, Some(&v), &own(d.path()), Some(&exe)),
            None
        );
        assert!(problem(Hook::Failover, Some(&v), &own(d.path()), None).is_some());
    }

    #[test]
    fn the_last_flag_wins_in_either_spelling() {
        let args: Vec<String> = ["--conf", "/a", "--conf=/b", "--x"]
            .map(String::from)
            .to_vec();
        assert_eq!(flag(&args, "--conf"), Some("/b"));
        assert_eq!(flag(&args, "--con"), None);
        assert_eq!(flag(&args[..2], "--conf"), Some("/a"));
    }
}
