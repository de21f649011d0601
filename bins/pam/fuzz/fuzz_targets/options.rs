//! Any module arguments and conf file: no panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pam_keybound::options::Options;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (args, conf) = text.split_once('\0').unwrap_or((&text, ""));
    let args: Vec<&str> = args.split_whitespace().collect();
    let conf = conf.to_owned();
    let _ = Options::parse(&args, |_| Ok(Some(conf.clone())));
});
