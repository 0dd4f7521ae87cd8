//! mha-helper binary: parse the command line, run it, map the result to the
//! documented exit codes (see `exit.rs`). Everything else is in the library.

use clap::Parser;
use mha_helper::{cli, exit, logger, scrub};

fn main() {
    // Copy the arguments, then at once hide MHA's passwords in our argv.
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    scrub::scrub_own_argv(scrub::SECRET_PREFIXES);
    let cli = cli::Cli::parse_from(args);
    logger::init(cli.verbose, cli.quiet);
    let code = match cli::run(cli) {
        Ok(code) => code,
        Err(e) => {
            log::error!("{}", exit::message(&e));
            exit::code_for(&e)
        }
    };
    std::process::exit(code as i32);
}
