//! Loading `libzk_app_utils.so` at run time: Zymbit's on a Pi, the drop-in one in a guest.
//! Either way these are the same bytes of production code.

use std::ffi::{c_char, c_int, c_void};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::types::RawAxis;

/// The library's file name, found through the dynamic loader's search path.
pub const LIBRARY_NAME: &str = "libzk_app_utils.so";

type Ctx = *mut c_void;

macro_rules! api {
    ($( $field:ident : $sym:literal => fn($($arg:ty),*) ),* $(,)?) => {
        /// The library's functions; `None` for one this library version lacks.
        pub(crate) struct Api {
            $( pub(crate) $field: Option<unsafe extern "C" fn($($arg),*) -> c_int>, )*
        }

        impl Api {
            fn load(lib: &libloading::Library) -> Self {
                Self {
                    $( $field: {
                        // SAFETY: the symbol, if present, has the signature of Zymbit's
                        // zk_app_utils.h declaration, copied here; the library outlives the
                        // pointer (both live in `Library`).
                        unsafe {
                            lib.get::<unsafe extern "C" fn($($arg),*) -> c_int>(
                                concat!($sym, "\0").as_bytes(),
                            )
                            .ok()
                            .map(|s| *s)
                        }
                    }, )*
                }
            }
        }
    };
}

api! {
    open: "zkOpen" => fn(*mut Ctx),
    close: "zkClose" => fn(Ctx),
    get_rand_bytes: "zkGetRandBytes" => fn(Ctx, *mut *mut u8, c_int),
    create_rand_data_file: "zkCreateRandDataFile" => fn(Ctx, *const c_char, c_int),
    lock_f2f: "zkLockDataF2F" => fn(Ctx, *const c_char, *const c_char, bool),
    lock_b2f: "zkLockDataB2F" => fn(Ctx, *const u8, c_int, *const c_char, bool),
    lock_f2b: "zkLockDataF2B" => fn(Ctx, *const c_char, *mut *mut u8, *mut c_int, bool),
    lock_b2b: "zkLockDataB2B" => fn(Ctx, *const u8, c_int, *mut *mut u8, *mut c_int, bool),
    unlock_f2f: "zkUnlockDataF2F" => fn(Ctx, *const c_char, *const c_char, bool),
    unlock_b2f: "zkUnlockDataB2F" => fn(Ctx, *const u8, c_int, *const c_char, bool),
    unlock_f2b: "zkUnlockDataF2B" => fn(Ctx, *const c_char, *mut *mut u8, *mut c_int, bool),
    unlock_b2b: "zkUnlockDataB2B" => fn(Ctx, *const u8, c_int, *mut *mut u8, *mut c_int, bool),
    gen_sig: "zkGenECDSASigFromDigest" => fn(Ctx, *const u8, c_int, *mut *mut u8, *mut c_int),
    verify_sig: "zkVerifyECDSASigFromDigest" => fn(Ctx, *const u8, c_int, *const u8, c_int),
    export_pubkey: "zkExportPubKey" => fn(Ctx, *mut *mut u8, *mut c_int, c_int, bool),
    set_perimeter_action: "zkSetPerimeterEventAction" => fn(Ctx, c_int, u32),
    get_perimeter_info: "zkGetPerimeterDetectInfo" => fn(Ctx, *mut *mut u32, *mut c_int),
    clear_perimeter: "zkClearPerimeterDetectEvents" => fn(Ctx),
    wait_perimeter: "zkWaitForPerimeterEvent" => fn(Ctx, u32),
    set_tap_sensitivity: "zkSetTapSensitivity" => fn(Ctx, c_int, f32),
    wait_tap: "zkWaitForTap" => fn(Ctx, u32),
    get_accel: "zkGetAccelerometerData" => fn(Ctx, *mut RawAxis, *mut RawAxis, *mut RawAxis),
    get_time: "zkGetTime" => fn(Ctx, *mut u32, bool),
    led_on: "zkLEDOn" => fn(Ctx),
    led_off: "zkLEDOff" => fn(Ctx),
    led_flash: "zkLEDFlash" => fn(Ctx, u32, u32, u32),
    set_i2c_addr: "zkSetI2CAddr" => fn(Ctx, c_int),
    lock_binding: "zkLockBinding" => fn(Ctx),
    binding_info: "zkGetCurrentBindingInfo" => fn(Ctx, *mut bool, *mut bool),
    model: "zkGetModelNumberString" => fn(Ctx, *mut *mut c_char),
    firmware: "zkGetFirmwareVersionString" => fn(Ctx, *mut *mut c_char),
    serial: "zkGetSerialNumberString" => fn(Ctx, *mut *mut c_char),
}

/// A loaded `libzk_app_utils.so`.
#[derive(Clone)]
pub struct Library {
    pub(crate) api: Arc<Api>,
    // Keeps the code the function pointers point into mapped.
    _lib: Arc<libloading::Library>,
}

impl std::fmt::Debug for Library {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Library(libzk_app_utils)")
    }
}

impl Library {
    /// Loads [`LIBRARY_NAME`] through the dynamic loader's search path (where Zymbit's
    /// packages, and our guest image, install it).
    pub fn load() -> Result<Self> {
        Self::open(Path::new(LIBRARY_NAME))
    }

    /// Loads the library from an explicit path.
    pub fn load_from(path: impl AsRef<Path>) -> Result<Self> {
        Self::open(path.as_ref())
    }

    fn open(path: &Path) -> Result<Self> {
        // SAFETY: loading a shared library runs its initialisers; libzk_app_utils (Zymbit's or
        // ours) has none with preconditions we could violate.
        let lib =
            unsafe { libloading::Library::new(path) }.map_err(|e| Error::LibraryNotInstalled {
                name: PathBuf::from(path),
                reason: e.to_string(),
            })?;
        let api = Api::load(&lib);
        if api.open.is_none() || api.close.is_none() {
            return Err(Error::MissingFunction("zkOpen/zkClose"));
        }
        Ok(Self {
            api: Arc::new(api),
            _lib: Arc::new(lib),
        })
    }
}
