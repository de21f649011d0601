//! Argument and result types that make wrong values unrepresentable.

/// An ECDSA key slot of a ZYMKEY4.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// Slot 0.
    Zero,
    /// Slot 1.
    One,
    /// Slot 2.
    Two,
}

impl Slot {
    /// All slots.
    pub const ALL: [Slot; 3] = [Slot::Zero, Slot::One, Slot::Two];
    pub(crate) fn raw(self) -> i32 {
        self as i32
    }
}

/// Which lock key (`use_shared_key`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockKey {
    /// The module's one-way key: the data stays with this module (what keybound uses).
    OneWay,
    /// The shared key.
    Shared,
}

impl LockKey {
    pub(crate) fn shared(self) -> bool {
        self == LockKey::Shared
    }
}

/// A perimeter channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PerimeterChannel {
    /// Channel 0.
    Zero,
    /// Channel 1.
    One,
}

/// What a perimeter breach does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PerimeterActions {
    /// Notify the host (wakes `wait_for_perimeter_event`).
    pub notify: bool,
    /// Destroy the module's secret.
    pub self_destruct: bool,
}

impl PerimeterActions {
    pub(crate) fn flags(self) -> u32 {
        u32::from(self.notify) | (u32::from(self.self_destruct) << 1)
    }
}

/// An accelerometer axis selection for tap sensitivity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AxisSelect {
    /// X.
    X,
    /// Y.
    Y,
    /// Z.
    Z,
    /// All three.
    All,
}

/// One accelerometer axis reading.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AxisReading {
    /// Acceleration in g.
    pub g: f64,
    /// Direction of the force that caused a tap: -1, 0 or +1.
    pub tap_direction: i32,
}

/// `zkGetCurrentBindingInfo`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BindingInfo {
    /// The binding is locked (production mode).
    pub locked: bool,
    /// The module is bound to this host.
    pub bound: bool,
}

/// `zkAccelAxisDataType`, as the C API lays it out.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct RawAxis {
    pub(crate) g: f64,
    pub(crate) tap_direction: std::ffi::c_int,
}
