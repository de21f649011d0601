//! `keybound`: the device CLI. For now it reports what it can see of the board's protection.

use clap::{Parser, Subcommand};

mod reseal;
mod status;
mod token;

/// keybound on the device: provision the sealed root, report status, enrol tokens.
#[derive(Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Report the board's protection: how root is mounted and what protects it.
    Status {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Re-seal the root to a replacement Zymkey with the vendor's recovery secret (stdin).
    ///
    /// The secret comes from `keybound-vendor recovery-secret` at the vendor's desk; type or
    /// pipe it (never echoed). A new sealed keyslot and token are written for this board's
    /// Zymkey, the old sealed keyslot is destroyed, and the new binding is verified.
    Reseal {
        /// The sealed root's LUKS2 device (e.g. /dev/mmcblk0p2).
        #[arg(long, value_name = "DEV")]
        device: std::path::PathBuf,
    },
    /// Enrol, list and remove FIDO2 login tokens (the authfile pam_keybound reads).
    Token {
        #[command(subcommand)]
        command: token::TokenCommand,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Status { json } => status::run(json),
        Command::Reseal { device } => reseal::run(&device),
        Command::Token { command } => token::run(command),
    }
}
