//! The online switchover hook (`master_ip_online_change_script`): MHA runs
//! `stop` before it switches and `start` after. See DESIGN Part 1 for the
//! contract and README "Exit codes" for what each outcome returns.

pub mod phase;
pub mod preflight;
pub mod start;
pub mod stop;

use anyhow::{anyhow, Result};

use crate::exit::{bad_input, Code};
use crate::mha_args::{HookArgs, OnlineArgs};

pub use phase::{closed_by_operator, keeper_of, phase_lock, HookOptions, Masters, HOOKS_DONE};

/// Entry point of `mha-helper master-ip-online-change`.
pub fn hook(opts: &HookOptions, args: &HookArgs) -> Result<Code> {
    log::info!("master-ip-online-change {}", args.redacted());
    for w in &args.stray {
        log::warn!("ignoring argument '{w}' (MHA passes --name=value)");
    }
    let setup = opts.paths.load()?;
    let typed = || OnlineArgs::from(args).map_err(bad_input);
    match args.require("command").map_err(bad_input)? {
        "stop" => stop::run(&setup, &typed()?, opts),
        "start" => start::run(&setup, &typed()?, opts),
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
