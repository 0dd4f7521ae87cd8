//! Command-line interface: every subcommand and flag, defined once, with
//! its help text. Parsing only checks what was typed; nothing here opens a
//! connection. `run` hands each subcommand to its module.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::exit::Code;
use crate::mha_args::HookArgs;
use crate::notify::alert;
use crate::online::HookOptions;
use crate::setup::ConfigPaths;

/// The version `--version` prints: Cargo.toml's, and the commit built from
/// (build.rs; "unknown" outside a git checkout).
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("MHA_HELPER_COMMIT"),
    ")"
);

#[derive(Debug, Parser)]
#[command(
    name = "mha-helper",
    version = VERSION,
    about = "Safe MySQL/MariaDB master switches around MHA, over SSH",
    long_about = "Safe MySQL/MariaDB master switches around MHA (mha4mysql 0.58), over SSH.\n\n\
        The MHA hooks (master-ip-online-change, master-ip-failover) block application writes, \
        keep a journal and roll back on failure; shutdown and report are MHA's shutdown_script \
        and report_script (fencing a dead master, notifications); the operator commands (switchover, failover) \
        drive masterha_master_switch; check inspects a cluster; recover finishes or undoes an \
        interrupted switch.\n\n\
        Exit codes: 0 done; 1 failed, nothing left changed; 2 bad input; 3 failed and the \
        cluster is not back: run recover; 10 (hooks) done with a warning, MHA proceeds."
)]
pub struct Cli {
    /// More detail in the log (-v debug, -vv trace).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Only warnings and errors in the log.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum Format {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, Args)]
pub struct ConfArgs {
    /// The MHA application configuration (as given to masterha_manager --conf).
    #[arg(long, env = "MHA_CONF", value_name = "APP.cnf")]
    pub conf: Option<PathBuf>,
    /// mha-helper's own settings (optional; default /etc/mha-helper/helper.cnf if it exists).
    #[arg(long, env = "MHA_HELPER_CONF", value_name = "FILE")]
    pub helper_conf: Option<PathBuf>,
    /// MHA's global configuration (default /etc/masterha_default.cnf if it exists).
    #[arg(long, env = "MHA_GLOBAL_CONF", value_name = "FILE")]
    pub global_conf: Option<PathBuf>,
}

impl ConfArgs {
    pub fn paths(&self) -> ConfigPaths {
        ConfigPaths {
            conf: self.conf.clone(),
            global: self.global_conf.clone(),
            helper: self.helper_conf.clone(),
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct HookFlags {
    #[command(flatten)]
    pub conf: ConfArgs,
    /// Print the plan, per host, with every SQL statement; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Output format of the final report.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Put in the report every statement each step sent, host by host (secrets hidden),
    /// to compare with what --dry-run listed.
    #[arg(long)]
    pub show_sent: bool,
    /// The arguments MHA appends (--command=..., --orig_master_host=..., ...).
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "MHA_ARGS"
    )]
    pub mha_args: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Preflight a cluster: SSH, host keys, mysql client, credentials, privileges, roles,
    /// replication, and whether application grants match on every candidate master.
    ///
    /// Besides reading, it ends a session keeper orphaned by a switch that is over, fences
    /// an old master a past failover left unfenced once that answers, and records the
    /// master's application grants (grants.json in the state directory), saying so when it
    /// does.
    Check {
        #[command(flatten)]
        conf: ConfArgs,
        #[arg(long, value_enum, default_value_t = crate::check::Output::Text)]
        format: crate::check::Output,
        /// Send the problems found to the notification sinks (notify_* in helper.cnf), e.g. from cron.
        #[arg(long)]
        notify: bool,
    },
    /// MHA hook for master_ip_online_change_script (online switchover: stop, start).
    MasterIpOnlineChange(HookFlags),
    /// MHA hook for master_ip_failover_script (dead master: status, stop, stopssh, start).
    MasterIpFailover(HookFlags),
    /// MHA's shutdown_script: stop a dead master's server over SSH for good (exit 10), else
    /// run power_off_command (exit 0); neither: exit 1, and MHA stops the failover.
    #[command(
        mut_arg("dry_run", |a| a.help("Say how the server would be stopped; stop nothing")),
        mut_arg("show_sent", |a| a.hide(true))
    )]
    Shutdown(HookFlags),
    /// MHA's report_script: send MHA's report, with what the journal says of the switch, to
    /// every notification sink (mail, webhook, command; notify_* in helper.cnf).
    #[command(
        mut_arg("dry_run", |a| a.help("Print the event that would be sent; send nothing")),
        mut_arg("show_sent", |a| a.hide(true))
    )]
    Report(HookFlags),
    /// Online switchover: run masterha_master_switch --master_state=alive with the hooks.
    Switchover {
        #[command(flatten)]
        conf: ConfArgs,
        /// The new master (default: MHA chooses among candidates).
        #[arg(long, value_name = "HOST")]
        new_master: Option<String>,
        /// Leave the old master out of the new topology (default: it replicates from the new master).
        #[arg(long)]
        no_orig_as_slave: bool,
        /// Switch even though MHA's master_ip_online_change_script is not mha-helper's hook on this
        /// --conf (then nothing blocks writes on the old master).
        #[arg(long)]
        unprotected: bool,
        /// Run MHA's --check_only, then list the hook's plan for the masters MHA chose (stop and
        /// start, every statement); switch nothing.
        #[arg(long)]
        dry_run: bool,
        /// Do not ask before switching (on a terminal it shows the switch and asks).
        #[arg(long, short = 'y')]
        yes: bool,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Dead-master failover: run masterha_master_switch --master_state=dead for HOST.
    Failover {
        #[command(flatten)]
        conf: ConfArgs,
        /// The master that is dead.
        #[arg(long, value_name = "HOST")]
        dead_master: String,
        /// The new master (default: MHA chooses the most recent candidate).
        #[arg(long, value_name = "HOST")]
        new_master: Option<String>,
        /// Fail over even though MHA's master_ip_failover_script is not mha-helper's hook on this
        /// --conf (then mha-helper neither fences nor opens anything).
        #[arg(long)]
        unprotected: bool,
        /// Name the new master (the one given, or the one MHA's rules pick from the replicas now)
        /// and list the hook's plan: fencing the dead master, opening the new one; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Do not ask before failing over (on a terminal it shows the failover and asks).
        #[arg(long, short = 'y')]
        yes: bool,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Internal: the session keeper the online hook starts (see ssh/keeper.rs).
    #[command(hide = true)]
    Keeper {
        #[command(flatten)]
        conf: ConfArgs,
        #[arg(long)]
        hosts: String,
        #[arg(long)]
        socket: PathBuf,
        #[arg(long, default_value_t = 600)]
        idle_secs: u64,
        #[arg(long)]
        switch: String,
        /// The application lock's descriptor, handed over by stop.
        #[arg(long)]
        lock_fd: Option<i32>,
        /// The read end of the tether to the stop that started it.
        #[arg(long)]
        tether_fd: Option<i32>,
    },
    /// The cluster now: the master as the hosts say, every host's role, an open switch, a
    /// pending fence and the last switch; exit 0 when settled with nothing left to do, else 1.
    /// Reads only.
    Status {
        #[command(flatten)]
        conf: ConfArgs,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Past switches from the kept journals, newest first: when, kind, old -> new master,
    /// outcome, write-block window, sessions killed, accounts blocked. Reads only.
    History {
        #[command(flatten)]
        conf: ConfArgs,
        /// Show at most N switches.
        #[arg(long, value_name = "N", default_value_t = 20)]
        limit: usize,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Finish or undo an interrupted switch, deciding from what the hosts say now.
    Recover {
        #[command(flatten)]
        conf: ConfArgs,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
        /// Go on although MHA (or the process that began the switch) still seems to run.
        #[arg(long)]
        force: bool,
        /// Close the journal without touching any host (after settling the cluster by hand).
        #[arg(long)]
        abandon: bool,
    },
    /// Fence an old master a failover could not fence (read_only, VIP off, sessions killed),
    /// as soon as it answers.
    Fence {
        #[command(flatten)]
        conf: ConfArgs,
        /// Keep trying until it answers (the background fencer the failover hook starts).
        #[arg(long)]
        wait: bool,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Internal: write the man pages and shell completions into DIR (scripts/package).
    #[command(hide = true)]
    GenerateDocs { dir: PathBuf },
}

fn hook_options(f: &HookFlags) -> (HookOptions, HookArgs) {
    // Our own flags must come before MHA's; accept them after MHA's too.
    let mut opts = HookOptions {
        paths: f.conf.paths(),
        dry_run: f.dry_run,
        json: f.format == Format::Json,
        show_sent: f.show_sent,
        capture: None,
    };
    let mut rest = Vec::new();
    for a in &f.mha_args {
        if let Some(v) = a.strip_prefix("--conf=") {
            opts.paths.conf = Some(v.into());
        } else if let Some(v) = a.strip_prefix("--helper-conf=") {
            opts.paths.helper = Some(v.into());
        } else if let Some(v) = a.strip_prefix("--global-conf=") {
            opts.paths.global = Some(v.into());
        } else if a == "--dry-run" {
            opts.dry_run = true;
        } else if a == "--show-sent" {
            opts.show_sent = true;
        } else if let Some(v) = a.strip_prefix("--format=") {
            opts.json = v == "json";
        } else {
            rest.push(a.clone());
        }
    }
    (opts, HookArgs::parse(&rest))
}

pub fn run(cli: Cli) -> Result<Code> {
    let json = cli.command.json_name();
    let result = dispatch(cli.command);
    if let Some(command) = json {
        crate::output::finish(command, &result);
    }
    result
}

impl Command {
    /// The command's name when it was asked for JSON (`--format json`).
    fn json_name(&self) -> Option<&'static str> {
        use crate::check::Output;
        // A hook's own flags may come after MHA's arguments too.
        let hook = |f: &HookFlags| hook_options(f).0.json;
        match self {
            Command::Check { format, .. } => (*format == Output::Json).then_some("check"),
            Command::MasterIpOnlineChange(f) => hook(f).then_some("master-ip-online-change"),
            Command::MasterIpFailover(f) => hook(f).then_some("master-ip-failover"),
            Command::Shutdown(f) => hook(f).then_some("shutdown"),
            Command::Report(f) => hook(f).then_some("report"),
            Command::Switchover { format, .. } => (*format == Format::Json).then_some("switchover"),
            Command::Failover { format, .. } => (*format == Format::Json).then_some("failover"),
            Command::Status { format, .. } => (*format == Format::Json).then_some("status"),
            Command::History { format, .. } => (*format == Format::Json).then_some("history"),
            Command::Recover { format, .. } => (*format == Format::Json).then_some("recover"),
            Command::Fence { format, .. } => (*format == Format::Json).then_some("fence"),
            Command::Keeper { .. } | Command::GenerateDocs { .. } => None,
        }
    }
}

fn dispatch(command: Command) -> Result<Code> {
    match command {
        Command::Check {
            conf,
            format,
            notify,
        } => crate::check::run(&conf.paths(), format, notify),
        Command::MasterIpOnlineChange(f) => hook(
            "master-ip-online-change",
            &f,
            crate::online::hook,
            Alert::Always,
        ),
        Command::MasterIpFailover(f) => hook(
            "master-ip-failover",
            &f,
            crate::failover::hook,
            Alert::Always,
        ),
        // 10 is its success ("SSH reachable, mysqld shut down").
        Command::Shutdown(f) => hook("shutdown", &f, crate::shutdown::hook, Alert::OnError),
        Command::Report(f) => hook(
            "report",
            &f,
            crate::notify::report_script::run,
            Alert::Never,
        ),
        Command::Switchover {
            conf,
            new_master,
            no_orig_as_slave,
            unprotected,
            dry_run,
            yes,
            format,
        } => crate::mha::switchover(
            &conf.paths(),
            crate::mha::SwitchoverArgs {
                new_master: new_master.as_deref(),
                orig_as_slave: !no_orig_as_slave,
                unprotected,
                dry_run,
                yes,
            },
            format == Format::Json,
        ),
        Command::Failover {
            conf,
            dead_master,
            new_master,
            unprotected,
            dry_run,
            yes,
            format,
        } => crate::mha::failover(
            &conf.paths(),
            &dead_master,
            new_master.as_deref(),
            (unprotected, yes, dry_run),
            format == Format::Json,
        ),
        Command::Keeper {
            conf,
            hosts,
            socket,
            idle_secs,
            switch,
            lock_fd,
            tether_fd,
        } => keeper(
            &conf.paths(),
            &hosts,
            &socket,
            idle_secs,
            &switch,
            (lock_fd, tether_fd),
        ),
        Command::Status { conf, format } => {
            crate::status::status(&conf.paths(), format == Format::Json)
        }
        Command::History {
            conf,
            limit,
            format,
        } => crate::status::history(&conf.paths(), limit, format == Format::Json),
        Command::Recover {
            conf,
            format,
            force,
            abandon,
        } => recover(&conf, format, force, abandon),
        Command::Fence { conf, wait, format } => {
            crate::fence::run(&conf.paths(), wait, format == Format::Json)
        }
        Command::GenerateDocs { dir } => generate_docs(&dir),
    }
}

/// `mha-helper recover`.
fn recover(conf: &ConfArgs, format: Format, force: bool, abandon: bool) -> Result<Code> {
    let json = format == Format::Json;
    crate::recover::run(
        &conf.paths(),
        crate::recover::Options {
            json,
            force,
            abandon,
        },
    )
}

/// Man pages and completions into `dir`, each file's path printed.
fn generate_docs(dir: &std::path::Path) -> Result<Code> {
    let cli = <Cli as clap::CommandFactory>::command();
    for f in crate::docs::generate(dir, cli, VERSION)? {
        println!("{}", f.display());
    }
    Ok(Code::Ok)
}

/// When a hook alerts the notification sinks about how it ended.
#[derive(PartialEq)]
enum Alert {
    /// Whenever it did not simply succeed (see `alert::after_hook`).
    Always,
    /// Only when it failed.
    OnError,
    /// Never: it is the notification.
    Never,
}

type HookFn = fn(&HookOptions, &HookArgs) -> Result<Code>;

/// A hook MHA runs: its options and MHA's arguments read, then `run`, then
/// the alert if one is due.
fn hook(name: &str, flags: &HookFlags, run: HookFn, alert: Alert) -> Result<Code> {
    let (opts, args) = hook_options(flags);
    let r = run(&opts, &args);
    if alert == Alert::Always || (alert == Alert::OnError && r.is_err()) {
        alert::after_hook(name, &opts.paths, opts.dry_run, &args, &r);
    }
    r
}

/// The session keeper: adopt the lock stop handed over, open a session
/// to every host, serve until start says bye or nobody asks for `idle`.
fn keeper(
    paths: &ConfigPaths,
    hosts: &str,
    socket: &std::path::Path,
    idle_secs: u64,
    switch: &str,
    (lock_fd, tether_fd): (Option<i32>, Option<i32>),
) -> Result<Code> {
    // SAFETY: stop passes the tether's read end at this number (see
    // ssh::keeper::spawn); nothing else in this process uses it. Taken
    // first, so that an early error still closes it.
    let tether = tether_fd
        .map(|fd| unsafe { <std::fs::File as std::os::unix::io::FromRawFd>::from_raw_fd(fd) });
    let setup = paths.load()?;
    let state = setup.state()?;
    // SAFETY: stop passes its lock descriptor at this number (see
    // ssh::keeper::spawn); nothing else in this process uses it.
    let lock = lock_fd
        .map(|fd| unsafe { crate::state::lock::AppLock::adopt(fd, &state, switch) })
        .transpose()?;
    let names: Vec<&str> = hosts.split(',').filter(|h| !h.is_empty()).collect();
    if names.is_empty() {
        return Err(crate::exit::bad_input(anyhow::anyhow!("keeper: no hosts")));
    }
    let targets: Vec<crate::ssh::Target> =
        setup.specs(&names)?.into_iter().map(|s| s.target).collect();
    crate::ssh::keeper::serve(
        &targets,
        socket,
        std::time::Duration::from_secs(idle_secs),
        switch,
        lock,
        tether,
    )?;
    Ok(Code::Ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(args).unwrap()
    }

    #[test]
    fn hook_takes_our_flags_then_every_mha_argument() {
        let cli = parse(&[
            "mha-helper",
            "master-ip-online-change",
            "--conf=/etc/mha/app1.cnf",
            "--command=stop",
            "--orig_master_host=db1",
            "--ssh_options=-o StrictHostKeyChecking=no -i /k",
            "--orig_master_is_new_slave",
            "--new_master_password=pa\\$s",
        ]);
        let Command::MasterIpOnlineChange(f) = cli.command else {
            panic!("wrong subcommand")
        };
        let (opts, args) = hook_options(&f);
        assert_eq!(
            opts.paths.conf.as_deref(),
            Some(std::path::Path::new("/etc/mha/app1.cnf"))
        );
        assert_eq!(args.get("command"), Some("stop"));
        assert_eq!(
            args.get("ssh_options"),
            Some("-o StrictHostKeyChecking=no -i /k")
        );
        assert!(args.flag("orig_master_is_new_slave"));
        assert_eq!(args.get("new_master_password"), Some("pa$s"));
    }

    #[test]
    fn hook_accepts_our_flags_after_mha_arguments_too() {
        let cli = parse(&[
            "mha-helper",
            "master-ip-failover",
            "--command=status",
            "--conf=/x.cnf",
            "--dry-run",
        ]);
        let Command::MasterIpFailover(f) = cli.command else {
            panic!("wrong subcommand")
        };
        let (opts, args) = hook_options(&f);
        assert_eq!(
            opts.paths.conf.as_deref(),
            Some(std::path::Path::new("/x.cnf"))
        );
        assert!(opts.dry_run);
        assert_eq!(args.get("command"), Some("status"));
    }

    #[test]
    fn failover_requires_the_dead_master() {
        assert!(Cli::try_parse_from(["mha-helper", "failover", "--conf", "x"]).is_err());
        let cli = parse(&[
            "mha-helper",
            "failover",
            "--conf",
            "x",
            "--dead-master",
            "db1",
        ]);
        assert!(
            matches!(cli.command, Command::Failover { ref dead_master, .. } if dead_master == "db1")
        );
    }

    #[test]
    fn check_format_json_is_parsed() {
        let cli = parse(&[
            "mha-helper",
            "-v",
            "check",
            "--conf",
            "a.cnf",
            "--format",
            "json",
        ]);
        assert_eq!(cli.verbose, 1);
        assert!(matches!(
            cli.command,
            Command::Check {
                format: crate::check::Output::Json,
                ..
            }
        ));
        let cli = parse(&["mha-helper", "check", "--format", "prometheus"]);
        assert!(matches!(
            cli.command,
            Command::Check {
                format: crate::check::Output::Prometheus,
                ..
            }
        ));
    }

    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
