//! keybound-init: PID 1 of the initramfs. Boots root or powers off; there is no third way out.

mod boot;
mod cmdline;
mod console;
mod disks;
mod modules;
mod provision;
mod switch;
mod unlock;

fn main() {
    // A panic is a failure like any other: one line, power off. Never a shell.
    std::panic::set_hook(Box::new(|info| {
        let reason = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "internal error".into());
        console::fail(&format!("internal error: {reason}"));
    }));
    match boot::run() {
        Ok(never) => match never {},
        Err(reason) => console::fail(&reason.to_string()),
    }
}
