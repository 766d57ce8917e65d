//! SIGINT and SIGTERM for the daemon's lifetime.

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use anyhow::Result;

/// SIGINT and SIGTERM, caught from the moment they are installed. Until the daemon is
/// ready, a signal ends the process at once: start-up holds nothing that needs an orderly
/// stop (kernel programs and fanotify marks go with the process's descriptors). Once ready,
/// it starts the orderly shutdown.
pub(super) struct Signals {
    ready: Arc<AtomicBool>,
    received: tokio::sync::watch::Receiver<bool>,
}

impl Signals {
    pub(super) fn install() -> Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let ready = Arc::new(AtomicBool::new(false));
        let (tx, received) = tokio::sync::watch::channel(false);
        let during_startup = ready.clone();
        // Its own task on the multi-threaded runtime: start-up may block its own thread.
        tokio::spawn(async move {
            let name = tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
            };
            if !during_startup.load(Ordering::Acquire) {
                eprintln!("sensor: {name} during start-up, exiting");
                std::process::exit(1);
            }
            let _ = tx.send(true);
        });
        Ok(Self { ready, received })
    }

    pub(super) fn ready(&self) {
        self.ready.store(true, Ordering::Release);
    }

    pub(super) async fn wait(mut self) {
        let _ = self.received.wait_for(|got| *got).await;
    }
}
