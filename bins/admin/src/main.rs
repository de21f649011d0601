//! `keybound`: the device CLI. For now it reports what it can see of the board's protection.

use clap::{Parser, Subcommand};

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
        Command::Token { command } => token::run(command),
    }
}
