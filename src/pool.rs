//! A fixed set of threads running one function on queued inputs.
//!
//! gzip compresses and inflates members on it: each caller keeps the
//! receivers of what it submitted, in order, and so gets results in the
//! order it asked.

use std::io;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};

/// Threads running `work` on inputs; each input's result comes back on a
/// receiver of its own.
pub(crate) struct Pool<I, O> {
    jobs: Option<SyncSender<(I, SyncSender<O>)>>,
    workers: Vec<JoinHandle<()>>,
    /// Where no thread could be started (a process limit, `ulimit -u`
    /// or a cgroup's `pids.max`): the work, done in `submit`.
    inline: Option<Arc<Work<I, O>>>,
}

type Work<I, O> = dyn Fn(I) -> O + Send + Sync;

impl<I: Send + 'static, O: Send + 'static> Pool<I, O> {
    /// `n` threads; up to `n` inputs wait for one before `submit` blocks.
    pub fn new(n: usize, work: impl Fn(I) -> O + Send + Sync + 'static) -> Pool<I, O> {
        let (jobs, rx) = sync_channel::<(I, SyncSender<O>)>(n);
        let rx = Arc::new(Mutex::new(rx));
        let work: Arc<Work<I, O>> = Arc::new(work);
        // As many threads as can be had, up to `n`: a thread that cannot
        // be started is no reason to fail, still less to panic.
        let workers: Vec<_> = (0..n)
            .map_while(|_| {
                let rx = Arc::clone(&rx);
                let work = Arc::clone(&work);
                thread::Builder::new()
                    .spawn(move || loop {
                        let job = rx.lock().map(|r| r.recv());
                        let Ok(Ok((input, reply))) = job else { return };
                        let _ = reply.send(work(input));
                    })
                    .ok()
            })
            .collect();
        let inline = workers.is_empty().then_some(work);
        Pool {
            jobs: Some(jobs),
            workers,
            inline,
        }
    }

    /// Queue `input`; the receiver gets its result.
    ///
    /// # Errors
    /// The threads are gone (one panicked).
    pub(crate) fn submit(&self, input: I) -> io::Result<Receiver<O>> {
        let (reply, rx) = sync_channel(1);
        if let Some(work) = &self.inline {
            reply.send(work(input)).map_err(|_| stopped())?;
            return Ok(rx);
        }
        self.jobs
            .as_ref()
            .expect("open until dropped")
            .send((input, reply))
            .map_err(|_| stopped())?;
        Ok(rx)
    }
}

/// Stops taking inputs, lets the threads finish what they hold, joins them.
impl<I, O> Drop for Pool<I, O> {
    fn drop(&mut self) {
        self.jobs.take();
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

/// A pool whose threads are gone, or a result that never came: carried
/// inside an `io::Error` (the readers and writers built on the pool speak
/// `io`), and found again by its type, not by its text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct WorkerStopped;

impl std::fmt::Display for WorkerStopped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a worker thread stopped")
    }
}

impl std::error::Error for WorkerStopped {}

/// The `io::Error` carrying [`WorkerStopped`].
pub(crate) fn stopped() -> io::Error {
    io::Error::other(WorkerStopped)
}
