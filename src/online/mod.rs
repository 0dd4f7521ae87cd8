//! The online switchover hook (`master_ip_online_change_script`): MHA runs
//! `stop` before it switches and `start` after. See DESIGN Part 1 for the
//! contract and README "Exit codes" for what each outcome returns.

pub mod preflight;
pub mod start;
pub mod stop;

use anyhow::{anyhow, Result};

use crate::cluster::{self, Host, HostSpec};
use crate::exit::{bad_input, Code};
use crate::grants::Selection;
use crate::mha_args::HookArgs;
use crate::report::Report;
use crate::setup::{ConfigPaths, Setup};

/// Options of the hook that are ours, not MHA's.
#[derive(Debug, Clone, Default)]
pub struct HookOptions {
    pub paths: ConfigPaths,
    pub dry_run: bool,
    pub json: bool,
}

/// The two masters of an online switch, as MHA named them.
pub struct Masters {
    pub orig: String,
    pub new: String,
}

impl Masters {
    pub fn from_args(setup: &Setup, args: &HookArgs) -> Result<Masters> {
        let orig = setup.hostname(args.require("orig_master_host").map_err(bad_input)?)?;
        let new = setup.hostname(args.require("new_master_host").map_err(bad_input)?)?;
        if orig == new {
            return Err(bad_input(anyhow!("orig and new master are both {orig}")));
        }
        Ok(Masters { orig, new })
    }

    /// Host specs for both, with the MySQL credentials MHA passed.
    pub fn specs(&self, setup: &Setup, args: &HookArgs) -> Result<Vec<HostSpec>> {
        let mut specs = cluster::specs(&setup.mha, &setup.helper, &[&self.orig, &self.new])
            .map_err(bad_input)?;
        let new = specs.pop().expect("two specs");
        let orig = specs.pop().expect("two specs");
        Ok(vec![
            orig.with_credentials(
                args.get("orig_master_user"),
                args.get("orig_master_password"),
            ),
            new.with_credentials(args.get("new_master_user"), args.get("new_master_password")),
        ])
    }
}

/// Who counts as an application account on `orig`.
pub fn selection(setup: &Setup, orig: &HostSpec) -> Selection {
    Selection {
        admin_user: orig.access.user.clone(),
        repl_user: orig
            .server
            .repl_user
            .clone()
            .or_else(|| setup.mha.default.get("repl_user").cloned()),
        exclude: orig.settings.exclude_accounts.clone(),
        include: orig.settings.include_accounts.clone(),
    }
}

/// Connect to all specs; the first unreachable host is an error.
pub fn connect_all(specs: Vec<HostSpec>) -> Result<Vec<Host>> {
    cluster::connect(specs).into_iter().collect()
}

/// Print the report as the user asked (text is also logged).
pub fn emit(report: &Report, json: bool) {
    let mut report = report.clone();
    report.peak_rss_kb = crate::report::peak_rss_kb();
    let report = &report;
    if json {
        println!("{}", report.to_json());
    } else {
        for line in report.to_text().lines() {
            log::info!("{line}");
        }
    }
}

/// Entry point of `mha-helper master-ip-online-change`.
pub fn hook(opts: &HookOptions, args: &HookArgs) -> Result<Code> {
    log::info!("master-ip-online-change {}", args.redacted());
    for w in &args.stray {
        log::warn!("ignoring argument '{w}' (MHA passes --name=value)");
    }
    let setup = opts.paths.load()?;
    match args.require("command").map_err(bad_input)? {
        "stop" => stop::run(&setup, args, opts),
        "start" => start::run(&setup, args, opts),
        "status" => {
            log::info!(
                "status: configuration {} is valid",
                setup.mha.app_path.display()
            );
            Ok(Code::Ok)
        }
        other => Err(bad_input(anyhow!(
            "unknown --command={other} for master-ip-online-change (MHA sends stop or start)"
        ))),
    }
}
