//! Serving lanes: one single-threaded runtime per CPU serves whole connections, and per-lane resources (Redis connections) are picked by the lane a thread serves.

use std::cell::Cell;

thread_local! {
    /// 0 on every thread that is not a lane's.
    static LANE: Cell<usize> = const { Cell::new(0) };
}

/// The lane this thread serves, 1 to n; 0 for any other thread (the main runtime's workers,
/// tests, tools).
pub fn current() -> usize {
    LANE.with(Cell::get)
}

/// Marks this thread as lane `lane` (1 to n) for the rest of its life.
pub fn enter(lane: usize) {
    LANE.with(|current| current.set(lane));
}

/// Serving lanes for a configured count: 0 means one per CPU.
pub fn resolve(configured: usize) -> usize {
    match configured {
        0 => std::thread::available_parallelism().map_or(1, usize::from),
        lanes => lanes,
    }
}

/// Starts lane `lane` (1 to n): a thread of its own, named for it, running the future `serve`
/// makes on a current-thread runtime. What it ends with goes to `report`; a panic is reported
/// as an error, since a lane that died quietly would leave its share of connections unserved.
pub fn spawn<Serve, Served>(
    lane: usize,
    serve: Serve,
    report: impl FnOnce(std::io::Result<()>) + Send + 'static,
) -> std::io::Result<std::thread::JoinHandle<()>>
where
    Serve: FnOnce() -> Served + Send + 'static,
    Served: std::future::Future<Output = std::io::Result<()>>,
{
    std::thread::Builder::new().name(format!("liangma-lane-{lane}")).spawn(move || {
        enter(lane);
        let run = || tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(serve());
        let served = std::panic::catch_unwind(std::panic::AssertUnwindSafe(run))
            .unwrap_or_else(|_| Err(std::io::Error::other(format!("serving lane {lane} panicked"))));
        report(served);
    })
}
