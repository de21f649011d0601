//! `keybound-vendor`: the vendor's desk tool. Never installed on devices: it holds the vendor's
//! age identity, which decrypts any card's recovery secret.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod boot_cmd;
mod header;
mod identity;
mod recovery;

/// The vendor's desk tool for keybound sealed cards (never install it on a device).
///
/// A sealed card's recovery secret is stored on the card only encrypted to the vendor's age
/// key. With the matching identity this tool decrypts it offline, so a technician can open a
/// pulled card on a bench or re-seal a card to a replacement Zymkey (`keybound reseal` on the
/// device reads the secret from stdin).
#[derive(Parser)]
#[command(name = "keybound-vendor", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create the vendor's age identity (X25519) and print its public recipient.
    ///
    /// The identity file is written with mode 0600 and never overwritten. Keep it offline; give
    /// the printed `age1…` recipient to `keybound provision --vendor-key`.
    Keygen {
        /// Where to write the identity file.
        #[arg(long, short, value_name = "FILE")]
        output: PathBuf,
    },
    /// Decrypt a sealed card's recovery secret and print it in typable form.
    ///
    /// Reads only the LUKS2 header: from partition 2 of a raw card image or card device (found
    /// through the MBR), or from a plain LUKS2 device or image. Checks that the secret opens the
    /// recovery keyslot, then prints it on stdout as 16 groups of 4 hex digits. Nothing is
    /// written to disk except a temporary copy of the (encrypted) header, removed on exit.
    RecoverySecret {
        /// Raw card image, card device (e.g. /dev/sdb), or a LUKS2 volume.
        #[arg(long, value_name = "IMG|DEV")]
        card: PathBuf,
        /// The vendor's age identity file (from `keygen`).
        #[arg(long, value_name = "AGE-IDENTITY-FILE")]
        identity: PathBuf,
    },
    /// Create the vendor's Raspberry Pi secure-boot key (RSA-2048) and print its public key's path.
    ///
    /// The private key (PKCS#8 PEM) is written with mode 0600 and never overwritten; the public
    /// key goes next to it as NAME.pub.pem (its hash is what the Pi's OTP is programmed with).
    KeygenBoot {
        /// Where to write the private key.
        #[arg(long, value_name = "KEY.pem")]
        out: PathBuf,
    },
    /// Build and sign a secure-boot image: DIR's boot files into OUT/boot.img and OUT/boot.sig.
    ///
    /// boot.img is a FAT image holding config.txt, the kernel, initramfs and cmdline files it
    /// names, device trees and overlays; boot.sig is in the rpi-eeprom-digest format (sha256,
    /// ts, rsa2048). Run it at the vendor's desk: devices never sign. With --card, the boot
    /// files are taken from a raw card image's boot partition and boot.img + boot.sig are
    /// written back onto it.
    Sign {
        /// The vendor's boot-signing key (RSA-2048 PEM, from `keygen-boot` or openssl).
        #[arg(long, value_name = "VENDOR-RSA-KEY.pem")]
        key: PathBuf,
        /// The directory holding the boot files (a boot partition's contents).
        #[arg(
            long,
            value_name = "DIR",
            required_unless_present = "card",
            requires = "out"
        )]
        boot_dir: Option<PathBuf>,
        /// Where to write boot.img and boot.sig.
        #[arg(long, value_name = "DIR", requires = "boot_dir")]
        out: Option<PathBuf>,
        /// A raw card image: sign its boot partition's files in place.
        #[arg(long, value_name = "IMG", conflicts_with_all = ["boot_dir", "out"])]
        card: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Keygen { output } => identity::keygen(&output),
        Command::RecoverySecret { card, identity } => recovery::run(&card, &identity),
        Command::KeygenBoot { out } => boot_cmd::keygen(&out),
        Command::Sign {
            key,
            boot_dir,
            out,
            card,
        } => match (boot_dir, out, card) {
            (Some(boot_dir), Some(out), None) => boot_cmd::sign(&key, &boot_dir, &out),
            (None, None, Some(card)) => boot_cmd::sign_card(&key, &card),
            _ => Err(anyhow::anyhow!(
                "give --boot-dir DIR --out DIR, or --card IMG"
            )),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("keybound-vendor: {e:#}");
            ExitCode::FAILURE
        }
    }
}
