//! A named background thread fed through a channel, started on first use: work that must not
//! hold up the caller (syncs, unmounts) and needs no answer.

use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::OnceLock;

pub(crate) struct Worker<T> {
    name: &'static str,
    run: fn(Receiver<T>),
    queue: OnceLock<Option<Sender<T>>>,
}

impl<T: Send + 'static> Worker<T> {
    /// A worker whose thread, once started, runs `run` over everything sent.
    pub(crate) const fn new(name: &'static str, run: fn(Receiver<T>)) -> Self {
        Worker {
            name,
            run,
            queue: OnceLock::new(),
        }
    }

    /// Queues `item`, or gives it back when the thread could not be started (or has ended):
    /// the caller then does the work itself.
    pub(crate) fn send(&self, item: T) -> Result<(), T> {
        let queue = self.queue.get_or_init(|| {
            let (tx, rx) = channel();
            let run = self.run;
            match std::thread::Builder::new()
                .name(self.name.into())
                .spawn(move || run(rx))
            {
                Ok(_) => Some(tx),
                Err(e) => {
                    tracing::warn!("cannot start the {} thread: {e}", self.name);
                    None
                }
            }
        });
        match queue {
            Some(tx) => tx.send(item).map_err(|e| e.0),
            None => Err(item),
        }
    }
}
