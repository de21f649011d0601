//! The kernel command line: only `root=` and `rootfstype=` are read. `init=`, `rdinit=`, `break`,
//! `single`, `emergency` and `systemd.unit=` are ignored on purpose: the command line sits on the
//! unencrypted boot partition, where anyone with a card reader can edit it.

/// Where root is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RootSpec {
    /// The MBR disk signature (the PARTUUID's first part).
    pub(crate) disk_signature: u32,
    /// The partition number (the PARTUUID's second part).
    pub(crate) partition: u32,
    /// The root file system type (`ext4` unless `rootfstype=` says otherwise).
    pub(crate) fstype: String,
}

/// Why the command line is unusable.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum CmdlineError {
    /// No `root=PARTUUID=…`.
    NoRoot,
    /// `root=` is not an MBR PARTUUID (`SSSSSSSS-PP`).
    BadRoot(String),
}

impl std::fmt::Display for CmdlineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CmdlineError::NoRoot => write!(f, "no root=PARTUUID= on the kernel command line"),
            CmdlineError::BadRoot(v) => write!(f, "root={v} is not an MBR PARTUUID"),
        }
    }
}

/// Parses the command line. The last `root=` wins, as in the kernel.
pub(crate) fn parse(cmdline: &str) -> Result<RootSpec, CmdlineError> {
    let mut root = None;
    let mut fstype = "ext4".to_string();
    for arg in cmdline.split_whitespace() {
        if let Some(value) = arg.strip_prefix("root=") {
            root = Some(value.to_string());
        } else if let Some(value) = arg.strip_prefix("rootfstype=")
            && matches!(value, "ext4" | "ext3" | "ext2")
        {
            fstype = value.to_string();
        }
    }
    let root = root.ok_or(CmdlineError::NoRoot)?;
    let bad = || CmdlineError::BadRoot(root.clone());
    let partuuid = root.strip_prefix("PARTUUID=").ok_or_else(bad)?;
    let (sig, part) = partuuid.split_once('-').ok_or_else(bad)?;
    if sig.len() != 8 || part.is_empty() || part.len() > 2 {
        return Err(bad());
    }
    let disk_signature = u32::from_str_radix(sig, 16).map_err(|_| bad())?;
    let partition = u32::from_str_radix(part, 16).map_err(|_| bad())?;
    if partition == 0 || partition > 4 {
        return Err(bad());
    }
    Ok(RootSpec {
        disk_signature,
        partition,
        fstype,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_partuuid_is_read_and_overrides_are_ignored() {
        let spec = parse("console=ttyAMA0 root=PARTUUID=deadbeef-02 rootwait init=/bin/sh rdinit=/bin/sh break single emergency systemd.unit=rescue.target").unwrap();
        assert_eq!(
            spec,
            RootSpec {
                disk_signature: 0xdead_beef,
                partition: 2,
                fstype: "ext4".into()
            }
        );
    }

    #[test]
    fn bad_roots_are_refused_by_name() {
        assert_eq!(parse("quiet"), Err(CmdlineError::NoRoot));
        for bad in [
            "/dev/sda2",
            "PARTUUID=xyz-02",
            "PARTUUID=deadbeef",
            "PARTUUID=deadbeef-09",
            "UUID=1234",
            "PARTUUID=deadbeef-00",
        ] {
            assert_eq!(
                parse(&format!("root={bad}")),
                Err(CmdlineError::BadRoot(bad.into())),
                "{bad}"
            );
        }
    }

    #[test]
    fn unknown_fstypes_fall_back_to_ext4() {
        assert_eq!(
            parse("root=PARTUUID=00000001-02 rootfstype=vfat")
                .unwrap()
                .fstype,
            "ext4"
        );
    }
}
