//! `keybound`: the device CLI: provision, status, reseal, rotate, login tokens.

use clap::{Parser, Subcommand};

mod provision;
mod reseal;
mod rotate;
mod status;
mod token;

/// keybound on the device: seal root to this board's Zymkey, report what protects it, re-seal
/// after a module swap, rotate keys after a recovery, enrol login tokens.
#[derive(Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Report what protects root: keyslots, tokens, binding, cipher, signed boot, and the
    /// protection level in words.
    ///
    /// Reads the LUKS2 header under the running root (or DEV), as root. Without signed boot
    /// the level is "card theft only": a pulled card is useless, but an edited boot partition
    /// changes what runs before root is unlocked. Signed boot is read from the Raspberry Pi
    /// bootloader's report in the device tree (/proc/device-tree/chosen/bootloader/signed).
    Status {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        /// Report on this LUKS2 device or image (e.g. a card on a host) instead of the running
        /// root.
        #[arg(long, value_name = "DEV")]
        device: Option<std::path::PathBuf>,
    },
    /// Plan sealing this board's root: keybound-init carries it out on the next boot.
    ///
    /// Writes a plan (no secret: the vendor's public key, the board profile, the mode, the
    /// perimeter policy) to the boot partition. On the next boot, before root is mounted,
    /// keybound-init checks the filesystem, shrinks it by 32 MiB, encrypts it in place with LUKS2
    /// (with no room it refuses the plan before any write and boots on unsealed; a power cut
    /// resumes on the following boot), enrols this board's Zymkey and the vendor's recovery slot,
    /// arms the perimeter policy, removes the plan and boots the sealed root. An already sealed
    /// root is refused unless --re-enrol is given. --fresh --root-image FILE instead DESTROYS ALL
    /// DATA ON ROOT: root is formatted anew and filled from the vendor's image (copied to the boot
    /// partition and checked by its SHA-256 first), so no plaintext of the system is ever written
    /// to root.
    Provision(provision::Request),
    /// Re-seal the root to a replacement Zymkey with the vendor's recovery secret (stdin).
    ///
    /// The secret comes from `keybound-vendor recovery-secret` at the vendor's desk; type or
    /// pipe it (never echoed). A new sealed keyslot and token are written for this board's
    /// Zymkey, the old sealed keyslot is destroyed, and the new binding is verified. Then run
    /// `keybound rotate`: the secret has been exposed.
    Reseal {
        /// The sealed root's LUKS2 device (e.g. /dev/mmcblk0p2).
        #[arg(long, value_name = "DEV")]
        device: std::path::PathBuf,
    },
    /// After a field recovery: a new volume key, a new recovery secret, the Zymkey re-sealed.
    ///
    /// Re-encrypts root online with a fresh volume key (checksum resilience; the system keeps
    /// running), adds a new recovery keyslot whose secret only the vendor can decrypt (its
    /// token is encrypted to RECIPIENT), destroys the old sealed and recovery keyslots, and
    /// re-seals the Zymkey slot's volume check to the new key. Afterwards an exposed recovery
    /// secret or volume key no longer opens the card. Needs this board's Zymkey.
    Rotate {
        /// The vendor's age X25519 recipient (`age1...`), as given to `keybound provision`.
        #[arg(long, value_name = "AGE1...")]
        recipient: String,
        /// The sealed root's LUKS2 device; default: the device under the running root.
        #[arg(long, value_name = "DEV")]
        device: Option<std::path::PathBuf>,
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
        Command::Status { json, device } => status::run(json, device.as_deref()),
        Command::Provision(request) => provision::run(&request),
        Command::Reseal { device } => reseal::run(&device),
        Command::Rotate { recipient, device } => rotate::run(device.as_deref(), &recipient),
        Command::Token { command } => token::run(command),
    }
}
