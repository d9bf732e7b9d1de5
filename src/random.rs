//! Random bytes from the operating system's source, fetched a few hundred at a time per thread: a system call per code id, digits or grant was 2 – 3% of an issuance's or verification's CPU.

use std::cell::RefCell;

use zeroize::Zeroize;

/// Bytes fetched per system call; requests larger than a quarter of it go to the source directly.
const FETCHED: usize = 256;

struct Pool {
    bytes: [u8; FETCHED],
    /// Bytes handed out (and cleared) since the last fetch.
    used: usize,
}

thread_local! {
    static POOL: RefCell<Pool> = const { RefCell::new(Pool { bytes: [0; FETCHED], used: FETCHED }) };
}

/// Fills `out` from the operating system's random source (`getrandom`). Each byte is handed
/// out once and cleared from the pool as it is, so what the pool holds was never seen.
pub fn fill(out: &mut [u8]) -> Result<(), getrandom::Error> {
    if out.len() > FETCHED / 4 {
        return getrandom::fill(out);
    }
    POOL.with_borrow_mut(|pool| {
        if FETCHED - pool.used < out.len() {
            getrandom::fill(&mut pool.bytes)?;
            pool.used = 0;
        }
        let taken = &mut pool.bytes[pool.used..pool.used + out.len()];
        out.copy_from_slice(taken);
        taken.zeroize();
        pool.used += out.len();
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_never_repeat_across_refills_and_large_requests_bypass_the_pool() {
        let mut seen = std::collections::HashSet::new();
        // 12-byte draws run through many refills (each 256-byte fetch serves 21 of them).
        for _ in 0..2_000 {
            let mut id = [0u8; 12];
            fill(&mut id).unwrap();
            assert!(seen.insert(id), "a repeated draw");
        }
        let mut large = [0u8; 1024];
        fill(&mut large).unwrap();
        assert!(large.iter().filter(|byte| **byte == 0).count() < 32, "a large request is filled");
    }

    #[test]
    fn bytes_handed_out_are_cleared_from_the_pool() {
        let mut drawn = [0u8; 16];
        fill(&mut drawn).unwrap();
        POOL.with_borrow(|pool| {
            assert!(pool.used >= drawn.len());
            assert!(pool.bytes[..pool.used].iter().all(|byte| *byte == 0));
        });
    }
}
