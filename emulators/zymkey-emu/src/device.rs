//! The ZYMKEY4 device model: one [`Emulator`] per module, shared by the guest wire server and
//! the control socket. Every guest operation goes through [`Emulator::execute`]; persistent
//! changes are written to the state directory before the answer leaves.

use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use daemon_kit::StateDir;
use p256::ecdsa::Signature;
use p256::ecdsa::signature::hazmat::{PrehashSigner, PrehashVerifier};
use zeroize::Zeroizing;
use zk_app_utils::codes::*;
use zk_app_utils::wire::{self, AxisReading, Op, Reply};

use crate::binding::{self, Fingerprint, Host, Mode, Verdict};
use crate::blob::{self, BlobError};
use crate::faults::{Faults, Plan};
use crate::keys::{KeyKind, ModuleKeys, ModuleSecret};
use crate::state::{Persisted, STATE_FILE};
use crate::trace::BusTrace;

/// `ZK_PERIMETER_EVENT_ACTION_NOTIFY`.
pub const ACTION_NOTIFY: u32 = 1;
/// `ZK_PERIMETER_EVENT_ACTION_SELF_DESTRUCT`.
pub const ACTION_SELF_DESTRUCT: u32 = 2;
/// Longest wait a guest may ask for.
pub const MAX_WAIT: Duration = Duration::from_secs(600);

/// Errors opening or saving the state.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The state directory failed.
    #[error(transparent)]
    Dir(#[from] daemon_kit::StateDirError),
    /// The state file is not valid.
    #[error("state file is invalid: {0}")]
    Invalid(String),
}

/// The LED, as the host software set it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum Led {
    /// Off.
    Off,
    /// On.
    On,
    /// Flashing.
    Flash {
        /// On time.
        on_ms: u32,
        /// Off time.
        off_ms: u32,
        /// Cycles (0 = forever).
        count: u32,
    },
    /// Binding failed: rapid blinks, then off (what a ZYMKEY4 shows).
    BindingFailed,
}

/// The mutable part of the module, behind the emulator's lock.
pub struct Device {
    store: Option<StateDir>,
    /// Persistent state.
    pub(crate) p: Persisted,
    keys: Option<ModuleKeys>,
    /// The host the harness reported.
    pub(crate) attached: Option<Host>,
    /// Armed faults.
    pub(crate) faults: Faults,
    /// Bus trace.
    pub(crate) trace: BusTrace,
    /// LED.
    pub(crate) led: Led,
    pending_tap: bool,
    tap_dir: [i32; 3],
    pending_perimeter: bool,
}

/// Seconds since the epoch, as the module's clock reads.
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Device {
    fn new(store: Option<StateDir>, p: Persisted) -> Self {
        let keys = p.secret.as_ref().map(ModuleKeys::derive);
        Self {
            store,
            p,
            keys,
            attached: None,
            faults: Faults::default(),
            trace: BusTrace::default(),
            led: Led::Off,
            pending_tap: false,
            tap_dir: [0; 3],
            pending_perimeter: false,
        }
    }

    /// Writes the persistent state (atomically) if there is a state directory.
    pub(crate) fn save(&self) -> Result<(), StateError> {
        if let Some(dir) = &self.store {
            dir.write_atomic(STATE_FILE, &self.p.to_json())?;
        }
        Ok(())
    }

    fn save_or_code(&self) -> Result<(), i32> {
        self.save().map_err(|e| {
            tracing::error!("saving state: {e}");
            ZK_ERR_GENERAL
        })
    }

    /// Replaces the persistent state (restore, factory reset) and saves it.
    pub(crate) fn replace(&mut self, p: Persisted) -> Result<(), StateError> {
        self.keys = p.secret.as_ref().map(ModuleKeys::derive);
        self.p = p;
        self.save()
    }

    /// The fingerprint the host software measures now: none off a board; on one, a spoof
    /// fault's forged ids win over the true ones.
    pub(crate) fn measured(&self) -> Option<Fingerprint> {
        let real = self.attached.as_ref()?;
        let host = self.faults.spoof.as_ref().unwrap_or(real);
        Some(Fingerprint::measure(host, &self.p.serial))
    }

    /// Runs the binding check, storing a developer-mode rebind.
    pub(crate) fn check_binding(&mut self) -> Result<(), i32> {
        match binding::check(self.p.mode, self.p.bound, self.measured()) {
            Verdict::NotAttached => Err(ZK_ERR_NOT_ATTACHED),
            Verdict::Foreign => {
                self.led = Led::BindingFailed;
                Err(ZK_ERR_BINDING)
            }
            Verdict::Allowed { rebind: None } => Ok(()),
            Verdict::Allowed { rebind } => {
                self.p.bound = rebind;
                self.save_or_code()
            }
        }
    }

    /// Whether the module self-destructed.
    pub fn destroyed(&self) -> bool {
        self.p.secret.is_none()
    }

    /// Wipes the secret for good.
    pub(crate) fn self_destruct(&mut self) -> Result<(), StateError> {
        self.p.secret = None;
        self.keys = None;
        self.p.destroyed_at = Some(now_secs());
        tracing::warn!("module {} self-destructed", self.p.serial);
        self.save()
    }

    fn keys(&self) -> Result<&ModuleKeys, i32> {
        self.keys.as_ref().ok_or(ZK_ERR_DESTROYED)
    }

    /// A perimeter breach on `channel` (control socket).
    pub(crate) fn breach(&mut self, channel: usize) -> Result<bool, String> {
        let ch = self
            .p
            .perimeter
            .get_mut(channel)
            .ok_or_else(|| format!("no perimeter channel {channel} (0 or 1)"))?;
        if ch.first_breach == 0 {
            ch.first_breach = now_secs() as u32;
        }
        let actions = ch.actions;
        if actions & ACTION_NOTIFY != 0 {
            self.pending_perimeter = true;
        }
        if actions & ACTION_SELF_DESTRUCT != 0 && !self.destroyed() {
            self.self_destruct().map_err(|e| e.to_string())?;
            return Ok(true);
        }
        self.save().map_err(|e| e.to_string())?;
        Ok(false)
    }

    /// A tap along `axis` (0 = x, 1 = y, 2 = z); ignored if that axis's sensitivity is 0.
    pub(crate) fn tap(&mut self, axis: usize) -> bool {
        if self.p.tap_sensitivity.get(axis).copied().unwrap_or(0.0) <= 0.0 {
            return false;
        }
        self.tap_dir = [0; 3];
        self.tap_dir[axis] = 1;
        self.pending_tap = true;
        true
    }

    /// The backup battery is removed: with a self-destruct armed, the module destroys itself.
    pub(crate) fn remove_battery(&mut self) -> Result<bool, String> {
        self.p.battery_present = false;
        let armed = self
            .p
            .perimeter
            .iter()
            .any(|c| c.actions & ACTION_SELF_DESTRUCT != 0);
        if armed && !self.destroyed() {
            self.self_destruct().map_err(|e| e.to_string())?;
            return Ok(true);
        }
        self.save().map_err(|e| e.to_string())?;
        Ok(false)
    }

    fn security(&mut self) -> Result<(), i32> {
        if self.destroyed() {
            return Err(ZK_ERR_DESTROYED);
        }
        self.check_binding()
    }

    fn slot(&self, slot: i32) -> Result<&p256::ecdsa::SigningKey, i32> {
        if !(0..wire::ECDSA_SLOTS).contains(&slot) {
            return Err(ZK_ERR_INVALID);
        }
        self.keys()?.slot(slot as usize).ok_or(ZK_ERR_INVALID)
    }

    /// Executes one operation that does not wait (waits are in [`Emulator::execute`]).
    fn run(&mut self, op: Op) -> Result<Reply, i32> {
        if self.attached.is_none() {
            return Err(ZK_ERR_NOT_ATTACHED);
        }
        match op {
            Op::GetRandom { len } => {
                self.security()?;
                if len == 0 || len as usize > wire::MAX_RANDOM_CHUNK {
                    return Err(ZK_ERR_INVALID);
                }
                let mut out = Zeroizing::new(vec![0u8; len as usize]);
                getrandom::fill(&mut out).map_err(|_| ZK_ERR_GENERAL)?;
                Ok(Reply::Bytes(out))
            }
            Op::Lock { shared, data } => {
                self.security()?;
                if data.is_empty() || data.len() > wire::MAX_LOCK_PLAINTEXT {
                    return Err(ZK_ERR_INVALID);
                }
                let blob = blob::lock(self.keys()?, KeyKind::from_shared(shared), &data);
                Ok(Reply::Bytes(Zeroizing::new(blob)))
            }
            Op::Unlock { shared, blob } => {
                self.security()?;
                blob::unlock(self.keys()?, KeyKind::from_shared(shared), &blob)
                    .map(Reply::Bytes)
                    .map_err(blob_code)
            }
            Op::Sign { slot, digest } => {
                self.security()?;
                let sig: Signature = self
                    .slot(slot)?
                    .sign_prehash(&digest)
                    .map_err(|_| ZK_ERR_GENERAL)?;
                Ok(Reply::Bytes(Zeroizing::new(sig.to_bytes().to_vec())))
            }
            Op::Verify { slot, digest, sig } => {
                self.security()?;
                let key = self.slot(slot)?.verifying_key();
                let ok = Signature::from_slice(&sig)
                    .map(|s| key.verify_prehash(&digest, &s).is_ok())
                    .unwrap_or(false);
                Ok(Reply::Verified(ok))
            }
            Op::ExportPubKey { slot, foreign } => {
                if foreign {
                    return Err(ZK_ERR_UNSUPPORTED);
                }
                self.security()?;
                let point = self.slot(slot)?.verifying_key().to_encoded_point(false);
                Ok(Reply::Bytes(Zeroizing::new(point.as_bytes()[1..].to_vec())))
            }
            Op::SetPerimeterAction { channel, flags } => {
                self.security()?;
                if !(0..2).contains(&channel)
                    || flags & !(ACTION_NOTIFY | ACTION_SELF_DESTRUCT) != 0
                {
                    return Err(ZK_ERR_INVALID);
                }
                self.p.perimeter[channel as usize].actions = flags;
                self.save_or_code()?;
                Ok(Reply::Done)
            }
            Op::GetPerimeterInfo => Ok(Reply::Timestamps(
                self.p.perimeter.iter().map(|c| c.first_breach).collect(),
            )),
            Op::ClearPerimeter => {
                self.security()?;
                for c in &mut self.p.perimeter {
                    c.first_breach = 0;
                }
                self.pending_perimeter = false;
                self.save_or_code()?;
                Ok(Reply::Done)
            }
            Op::SetTapSensitivity { axis, pct_bits } => {
                let pct = f32::from_bits(pct_bits);
                if !(0.0..=100.0).contains(&pct) {
                    return Err(ZK_ERR_INVALID);
                }
                match axis {
                    0..=2 => self.p.tap_sensitivity[axis as usize] = pct,
                    3 => self.p.tap_sensitivity = [pct; 3],
                    _ => return Err(ZK_ERR_INVALID),
                }
                self.save_or_code()?;
                Ok(Reply::Done)
            }
            Op::GetAccel => {
                let g = [0.0, 0.0, 1.0];
                let mut axes = [AxisReading {
                    g: 0.0,
                    tap_direction: 0,
                }; 3];
                for (i, a) in axes.iter_mut().enumerate() {
                    *a = AxisReading {
                        g: g[i],
                        tap_direction: self.tap_dir[i],
                    };
                }
                self.tap_dir = [0; 3];
                Ok(Reply::Accel(axes))
            }
            Op::GetTime { .. } => Ok(Reply::Time(now_secs() as u32)),
            Op::LedOff => {
                self.led = Led::Off;
                Ok(Reply::Done)
            }
            Op::LedOn => {
                self.led = Led::On;
                Ok(Reply::Done)
            }
            Op::LedFlash {
                on_ms,
                off_ms,
                count,
            } => {
                self.led = Led::Flash {
                    on_ms,
                    off_ms,
                    count,
                };
                Ok(Reply::Done)
            }
            Op::SetI2cAddr { addr } => {
                if !(0x30..=0x37).contains(&addr) && !(0x60..=0x67).contains(&addr) {
                    return Err(ZK_ERR_INVALID);
                }
                self.p.i2c_addr = addr as u8;
                self.save_or_code()?;
                Ok(Reply::Done)
            }
            Op::LockBinding => Err(ZK_ERR_UNSUPPORTED),
            Op::GetBindingInfo => {
                let locked = self.p.mode == Mode::Production;
                let bound = match self.check_binding() {
                    Ok(()) => true,
                    Err(ZK_ERR_BINDING) => false,
                    Err(e) => return Err(e),
                };
                Ok(Reply::Binding { locked, bound })
            }
            Op::GetModel => Ok(Reply::Text(self.p.model.clone())),
            Op::GetFirmware => Ok(Reply::Text(self.p.firmware.clone())),
            Op::GetSerial => Ok(Reply::Text(self.p.serial.clone())),
            Op::WaitPerimeter { .. } | Op::WaitTap { .. } => Err(ZK_ERR_GENERAL),
        }
    }
}

/// The return code of a blob rejection.
pub fn blob_code(e: BlobError) -> i32 {
    match e {
        BlobError::ForeignModule => ZK_ERR_BLOB_FOREIGN,
        BlobError::Modified => ZK_ERR_BLOB_MODIFIED,
        BlobError::Truncated => ZK_ERR_BLOB_TRUNCATED,
        BlobError::UnsupportedVersion(_) => ZK_ERR_BLOB_VERSION,
        BlobError::WrongKey => ZK_ERR_BLOB_KEY,
    }
}

/// One emulated module: the device behind a lock, and a condition variable for waits.
pub struct Emulator {
    dev: Mutex<Device>,
    events: Condvar,
}

impl Emulator {
    /// Opens the module whose state lives in `dir`, creating a factory-fresh one if empty.
    pub fn open(dir: StateDir) -> Result<Self, StateError> {
        let p = match dir.read(STATE_FILE)? {
            Some(bytes) => {
                let bytes = Zeroizing::new(bytes);
                Persisted::from_json(&bytes).map_err(StateError::Invalid)?
            }
            None => Persisted::fresh(),
        };
        let dev = Device::new(Some(dir), p);
        dev.save()?;
        Ok(Self::from_device(dev))
    }

    /// A module with no state directory (unit tests, benches); `secret` fixes its secret.
    pub fn in_memory(secret: Option<[u8; 32]>) -> Self {
        let mut p = Persisted::fresh();
        if let Some(s) = secret {
            p.secret = Some(ModuleSecret::from_bytes(s));
        }
        Self::from_device(Device::new(None, p))
    }

    fn from_device(dev: Device) -> Self {
        Self {
            dev: Mutex::new(dev),
            events: Condvar::new(),
        }
    }

    /// The device, locked.
    pub fn device(&self) -> MutexGuard<'_, Device> {
        self.dev.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Wakes waiters after an event.
    pub(crate) fn notify(&self) {
        self.events.notify_all();
    }

    /// Consumes the armed faults for one guest call.
    pub fn plan(&self) -> Plan {
        self.device().faults.plan()
    }

    /// Executes one guest operation (faults are the caller's business: see [`Self::plan`]).
    pub fn execute(&self, op: Op) -> Result<Reply, i32> {
        match op {
            Op::WaitTap { timeout_ms } => {
                self.wait(timeout_ms, |d| std::mem::take(&mut d.pending_tap))
            }
            Op::WaitPerimeter { timeout_ms } => {
                self.wait(timeout_ms, |d| std::mem::take(&mut d.pending_perimeter))
            }
            Op::GetTime { precise: true } => {
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default();
                std::thread::sleep(Duration::from_nanos(
                    1_000_000_000 - u64::from(now.subsec_nanos()),
                ));
                self.device().run(Op::GetTime { precise: false })
            }
            op => self.device().run(op),
        }
    }

    fn wait(
        &self,
        timeout_ms: u32,
        mut take: impl FnMut(&mut Device) -> bool,
    ) -> Result<Reply, i32> {
        let timeout = Duration::from_millis(timeout_ms.into()).min(MAX_WAIT);
        let deadline = Instant::now() + timeout;
        let mut dev = self.device();
        if dev.attached.is_none() {
            return Err(ZK_ERR_NOT_ATTACHED);
        }
        loop {
            if take(&mut dev) {
                return Ok(Reply::Done);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ZK_ERR_TIMEDOUT);
            }
            dev = self
                .events
                .wait_timeout(dev, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attached(secret: u8) -> Emulator {
        let emu = Emulator::in_memory(Some([secret; 32]));
        emu.device().attached = Some(Host {
            board: "b".into(),
            card: "c".into(),
        });
        emu
    }

    #[test]
    fn detached_module_answers_nothing() {
        let emu = Emulator::in_memory(None);
        assert_eq!(emu.execute(Op::GetModel), Err(ZK_ERR_NOT_ATTACHED));
    }

    #[test]
    fn ecdsa_slots_sign_verify_and_export() {
        let emu = attached(1);
        let digest = [3u8; 32];
        for slot in 0..3 {
            let Reply::Bytes(sig) = emu.execute(Op::Sign { slot, digest }).unwrap() else {
                panic!()
            };
            assert_eq!(sig.len(), 64);
            let verify = |slot, sig: &[u8]| {
                emu.execute(Op::Verify {
                    slot,
                    digest,
                    sig: sig.to_vec(),
                })
            };
            assert_eq!(verify(slot, &sig), Ok(Reply::Verified(true)));
            assert_eq!(verify((slot + 1) % 3, &sig), Ok(Reply::Verified(false)));
            let Reply::Bytes(pk) = emu
                .execute(Op::ExportPubKey {
                    slot,
                    foreign: false,
                })
                .unwrap()
            else {
                panic!()
            };
            assert_eq!(pk.len(), 64);
        }
        assert_eq!(
            emu.execute(Op::Sign { slot: 3, digest }),
            Err(ZK_ERR_INVALID)
        );
    }

    #[test]
    fn tap_wakes_a_waiter_and_timeouts_report_etimedout() {
        let emu = std::sync::Arc::new(attached(1));
        assert_eq!(
            emu.execute(Op::WaitTap { timeout_ms: 10 }),
            Err(ZK_ERR_TIMEDOUT)
        );
        let e2 = emu.clone();
        let waiter = std::thread::spawn(move || e2.execute(Op::WaitTap { timeout_ms: 20_000 }));
        std::thread::sleep(Duration::from_millis(50));
        assert!(emu.device().tap(2));
        emu.notify();
        assert_eq!(waiter.join().unwrap(), Ok(Reply::Done));
        let Ok(Reply::Accel(axes)) = emu.execute(Op::GetAccel) else {
            panic!()
        };
        assert_eq!(axes[2].tap_direction, 1);
    }

    #[test]
    fn perimeter_self_destruct_wipes_every_secret_service() {
        let emu = attached(1);
        emu.execute(Op::SetPerimeterAction {
            channel: 1,
            flags: ACTION_NOTIFY | ACTION_SELF_DESTRUCT,
        })
        .unwrap();
        assert_eq!(emu.device().breach(1), Ok(true));
        assert_eq!(
            emu.execute(Op::WaitPerimeter { timeout_ms: 0 }),
            Ok(Reply::Done)
        );
        let Ok(Reply::Timestamps(ts)) = emu.execute(Op::GetPerimeterInfo) else {
            panic!()
        };
        assert!(ts[0] == 0 && ts[1] > 0, "{ts:?}");
        assert_eq!(
            emu.execute(Op::Lock {
                shared: false,
                data: Zeroizing::new(vec![1])
            }),
            Err(ZK_ERR_DESTROYED)
        );
        assert_eq!(emu.execute(Op::GetRandom { len: 4 }), Err(ZK_ERR_DESTROYED));
    }

    #[test]
    fn i2c_addresses_outside_the_ranges_are_refused() {
        let emu = attached(1);
        for (addr, ok) in [
            (0x30, true),
            (0x37, true),
            (0x38, false),
            (0x60, true),
            (0x68, false),
        ] {
            assert_eq!(
                emu.execute(Op::SetI2cAddr { addr }).is_ok(),
                ok,
                "{addr:#x}"
            );
        }
    }
}
