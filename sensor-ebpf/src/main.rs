//! The sensor's kernel programs: one hook family per module, all writing to the shared
//! `EVENTS` ring buffer with layouts from `sensor-common`.
#![no_std]
#![no_main]

mod dns;
mod file;
mod kernel;
mod lsm;
mod maps;
mod module;
mod net;
mod prevent;
mod process;
mod security;
mod syscall;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier rejects any path that could reach this; it exists only for the linker.
    loop {}
}
