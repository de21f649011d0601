//! The token-port driver: powers a USB hub port (or a GPIO-switched port) holding a FIDO2 key,
//! which is how a rig plugs and unplugs a real key.

use crate::RigError;
use crate::gpio::SharedGpio;
use crate::rigfile::TokenPortResource;
use crate::switch::SwitchDriver;

/// One switchable port with a key in it.
#[derive(Debug)]
pub struct TokenPort {
    name: String,
    switch: SwitchDriver,
    powered: bool,
    enrolled: bool,
}

impl TokenPort {
    /// The port `name` of the rig file (not switched until asked).
    pub fn new(name: &str, resource: &TokenPortResource, gpio: &SharedGpio) -> Self {
        Self {
            name: name.to_string(),
            switch: SwitchDriver::new(&resource.switch, gpio),
            powered: false,
            enrolled: resource.enrolled,
        }
    }

    /// Powers the port (`on`) or cuts it (`off`): the key appears to or leaves the board.
    pub fn set(&mut self, on: bool) -> Result<(), RigError> {
        self.switch.set(on, "on", "off")?;
        self.powered = on;
        Ok(())
    }

    /// The key's name in the rig file.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the port was last switched on.
    pub fn is_powered(&self) -> bool {
        self.powered
    }

    /// Whether the rig file says the key is enrolled on the board's card.
    pub fn enrolled(&self) -> bool {
        self.enrolled
    }
}
