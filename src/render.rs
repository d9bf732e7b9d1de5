//! QR rendering on threads of their own that the kernel schedules after the serving lanes.
//!
//! A QR image takes about 0.1 ms of CPU: on the serving lanes it would delay every verification
//! queued behind it, and at the same priority as the workers it still competes with them for the
//! cores under load. A member waiting for a code on a phone does not notice a few milliseconds; a
//! counter waiting for a verdict should not wait for someone else's image.

use std::panic::{AssertUnwindSafe, catch_unwind};

/// Nice value of the renderer threads (0 is the workers'; 19 the lowest): under contention a
/// renderer gets about a tenth of a core's share next to a busy worker, yet never starves.
pub const RENDER_NICE: i32 = 10;

type Job = Box<dyn FnOnce() + Send>;

/// A fixed set of renderer threads fed by one queue; they end when the renderer is dropped.
#[derive(Debug, Clone)]
pub struct Renderer {
    jobs: crossbeam_channel::Sender<Job>,
}

/// The renderer is gone or the work panicked; the caller answers INTERNAL.
#[derive(Debug, thiserror::Error)]
#[error("the QR renderer failed")]
pub struct RenderFailed;

impl Renderer {
    /// Starts `threads` renderer threads (at least one).
    pub fn start(threads: usize) -> std::io::Result<Self> {
        let (jobs, queue) = crossbeam_channel::unbounded::<Job>();
        for index in 0..threads.max(1) {
            let queue = queue.clone();
            std::thread::Builder::new().name(format!("liangma-qr-{index}")).spawn(move || {
                lower_this_threads_priority();
                for job in queue {
                    job();
                }
            })?;
        }
        Ok(Self { jobs })
    }

    /// Runs `work` on a renderer thread and waits for its result without blocking the caller's
    /// worker.
    pub async fn run<T: Send + 'static>(&self, work: impl FnOnce() -> T + Send + 'static) -> Result<T, RenderFailed> {
        let (reply, result) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            // A panic ends this job, not the thread: the caller sees RenderFailed.
            if let Ok(value) = catch_unwind(AssertUnwindSafe(work)) {
                let _ = reply.send(value);
            }
        });
        self.jobs.send(job).map_err(|_| RenderFailed)?;
        result.await.map_err(|_| RenderFailed)
    }
}

fn lower_this_threads_priority() {
    // On Linux, setpriority with a thread id changes that one thread.
    let thread = rustix::thread::gettid();
    if let Err(error) = rustix::process::setpriority_process(Some(thread), RENDER_NICE) {
        // A process already niced below RENDER_NICE may not raise its threads back: keep its level.
        tracing::debug!(%error, "QR renderer thread keeps the process's priority");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn renders_below_the_workers_priority_and_survives_a_panic() {
        let renderer = Renderer::start(1).unwrap();
        let nice = || rustix::process::getpriority_process(Some(rustix::thread::gettid())).unwrap();
        let worker_nice = nice();
        let renderer_nice = renderer.run(nice).await.unwrap();
        assert!(renderer_nice >= RENDER_NICE.max(worker_nice), "renderer at {renderer_nice}, worker at {worker_nice}");
        assert!(renderer.run(|| panic!("bad symbol")).await.is_err());
        assert_eq!(renderer.run(|| 7).await.unwrap(), 7, "the one thread still renders after a panic");
    }
}
