//! The SD mux driver: switches the board's card between the board (DUT) and the controller
//! (host). On the host side the card is a block device, read and written with the `card`
//! crate's helpers (MBR layout, FAT boot partition) exactly as the QEMU target's card files are.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use card::{CardLayout, boot_fs};

use crate::RigError;
use crate::gpio::SharedGpio;
use crate::rigfile::SdMuxResource;
use crate::switch::SwitchDriver;

/// Which side has the card.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MuxSide {
    /// The board under test.
    Dut,
    /// The rig controller (the card is a block device there).
    Host,
}

/// A USB-SD-Mux (or GPIO-switched mux) and the block device the card shows up as.
#[derive(Debug)]
pub struct SdMux {
    device: PathBuf,
    switch: SwitchDriver,
    side: MuxSide,
    settle: Duration,
}

impl SdMux {
    /// The mux of a rig file, switched to the board at once (a known start).
    pub fn new(resource: &SdMuxResource, gpio: &SharedGpio) -> Result<Self, RigError> {
        let mut mux = Self {
            device: resource.device.clone(),
            switch: SwitchDriver::new(&resource.switch, gpio),
            side: MuxSide::Host,
            settle: resource.settle(),
        };
        mux.to_dut()?;
        Ok(mux)
    }

    /// Gives the card to the controller and waits until its block device opens. The caller
    /// makes sure the board is off: a Pi losing its card while running corrupts it.
    pub fn to_host(&mut self) -> Result<(), RigError> {
        self.switch.set(true, "host", "dut")?;
        self.side = MuxSide::Host;
        let deadline = Instant::now() + self.settle;
        loop {
            match File::open(&self.device) {
                Ok(_) => return Ok(()),
                Err(e) if Instant::now() > deadline => {
                    return Err(RigError::Io {
                        what: "the SD mux switched to the host, but opening",
                        path: self.device.clone(),
                        source: e,
                    });
                }
                Err(_) => std::thread::sleep(Duration::from_millis(200)),
            }
        }
    }

    /// Gives the card back to the board.
    pub fn to_dut(&mut self) -> Result<(), RigError> {
        self.switch.set(false, "host", "dut")?;
        self.side = MuxSide::Dut;
        Ok(())
    }

    /// Which side has the card.
    pub fn side(&self) -> MuxSide {
        self.side
    }

    /// The card, while the controller has it.
    pub fn card(&self) -> Result<MuxedCard, RigError> {
        if self.side != MuxSide::Host {
            return Err(RigError::State {
                board: self.device.display().to_string(),
                reason: "the card is on the board's side of the SD mux".into(),
            });
        }
        Ok(MuxedCard {
            device: self.device.clone(),
        })
    }
}

/// The card on the controller's side of the mux: boot-partition files as a card reader sees
/// them. Only valid while the mux is on the host side ([`crate::RigBoard::with_card`] hands it
/// out for that long).
#[derive(Debug, Clone)]
pub struct MuxedCard {
    device: PathBuf,
}

impl MuxedCard {
    /// The block device.
    pub fn device(&self) -> &Path {
        &self.device
    }

    fn open(&self, write: bool) -> Result<File, RigError> {
        OpenOptions::new()
            .read(true)
            .write(write)
            .open(&self.device)
            .map_err(RigError::io("opening the card", &self.device))
    }

    fn card_err(&self) -> impl FnOnce(card::CardError) -> RigError + '_ {
        move |source| RigError::Card {
            device: self.device.clone(),
            source,
        }
    }

    /// The card's partition table.
    pub fn layout(&self) -> Result<CardLayout, RigError> {
        let mut file = self.open(false)?;
        CardLayout::read_mbr(&mut file, &self.device).map_err(self.card_err())
    }

    fn boot_volume(&self, write: bool) -> Result<(File, fscommon::StreamSlice<File>), RigError> {
        let layout = self.layout()?;
        let file = self.open(write)?;
        let handle = file
            .try_clone()
            .map_err(RigError::io("opening the card", &self.device))?;
        let slice = fscommon::StreamSlice::new(
            file,
            layout.boot.offset,
            layout.boot.offset + layout.boot.size,
        )
        .map_err(RigError::io(
            "seeking to the boot partition of",
            &self.device,
        ))?;
        Ok((handle, slice))
    }

    /// Reads one file from the boot partition.
    pub fn read_boot_file(&self, name: &str) -> Result<Vec<u8>, RigError> {
        let (_, mut volume) = self.boot_volume(true)?;
        boot_fs::read(&mut volume, name).map_err(self.card_err())
    }

    /// Lists the boot partition's files.
    pub fn list_boot_files(&self) -> Result<Vec<String>, RigError> {
        let (_, mut volume) = self.boot_volume(true)?;
        boot_fs::list(&mut volume).map_err(self.card_err())
    }

    /// Replaces (or creates) one file on the boot partition and flushes it to the card.
    pub fn write_boot_file(&self, name: &str, bytes: &[u8]) -> Result<(), RigError> {
        let (handle, mut volume) = self.boot_volume(true)?;
        boot_fs::write(&mut volume, name, bytes).map_err(self.card_err())?;
        handle
            .sync_all()
            .map_err(RigError::io("flushing the card", &self.device))
    }
}
