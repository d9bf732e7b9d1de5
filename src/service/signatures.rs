//! Signature checks of verifications that arrive together, verified as one ed25519 batch; a lone one is checked at once with `verify_strict`.

use std::collections::HashMap;
use std::sync::{Mutex, RwLock};

use curve25519_dalek::edwards::CompressedEdwardsY;
use ed25519_dalek::{Signature, VerifyingKey};
use tokio::sync::oneshot;

/// Most signatures verified in one batch: past about 64 the saving per signature flattens,
/// and a failed batch costs its size in individual checks.
pub const MAX_BATCH: usize = 64;

struct Pending {
    message: Vec<u8>,
    signature: Signature,
    key: VerifyingKey,
    answer: oneshot::Sender<bool>,
}

/// Collects the signature checks of concurrent verifications. There is no thread or task of its
/// own: each caller queues its check, lets the other ready tasks run once, then verifies
/// whatever is queued (its own check, if nobody took it yet, and those of the calls that
/// queued meanwhile) and hands out the answers. A caller alone verifies at once.
///
/// Each serving lane ([`crate::lanes`]) has a queue of its own: a lane verifies its own calls'
/// checks, so no lane sits idle waiting for a batch another lane took. (Threads outside the
/// lanes share the first queue; lanes beyond [`QUEUES`] share queues, which is as correct.)
///
/// Every answer is `verify_strict`'s, with one exception the spec states (docs/code-format.md,
/// "Batch verification"): a signature its own key holder crafted with a small-order component
/// in R fails `verify_strict` but passes a batch with probability 1/8 or more.
pub struct SignatureBatcher {
    queues: Box<[Mutex<Vec<Pending>>]>,
    /// Batches of two or more verified so far (for tests and the bench).
    batches: std::sync::atomic::AtomicU64,
    /// Whether a key may join a batch: keys with a small-order component never do (honest
    /// keys have none), because the batch equation does not see it.
    batchable: RwLock<HashMap<[u8; 32], bool>>,
}

/// Queues of checks, one per serving lane up to this many.
pub const QUEUES: usize = 64;

impl Default for SignatureBatcher {
    fn default() -> Self {
        Self {
            queues: (0..QUEUES).map(|_| Mutex::default()).collect(),
            batches: Default::default(),
            batchable: Default::default(),
        }
    }
}

impl std::fmt::Debug for SignatureBatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignatureBatcher").finish_non_exhaustive()
    }
}

impl SignatureBatcher {
    /// Whether `signature` by `key` over `message` verifies, as `verify_strict` says (see the
    /// type's note for the one exception).
    pub async fn verify(&self, message: Vec<u8>, signature: Signature, key: VerifyingKey) -> bool {
        if !self.may_batch(&signature, &key) {
            return key.verify_strict(&message, &signature).is_ok();
        }
        let (answer, mut answered) = oneshot::channel();
        let queue = &self.queues[crate::lanes::current() % QUEUES];
        queue.lock().expect("not poisoned").push(Pending { message, signature, key, answer });
        // Lets the calls that are ready to run queue their checks beside this one; with none
        // ready this returns at once, so a lone verification waits for nothing.
        tokio::task::yield_now().await;
        // Verify from the front of the queue until this check is answered or the queue is
        // empty: with more than a batch queued, this check may sit behind checks whose callers
        // have already left, and nobody else may come to take it. Nothing awaits between taking
        // checks and answering them, so a cancelled caller cannot strand the checks it took.
        loop {
            let batch: Vec<Pending> = {
                let mut queue = queue.lock().expect("not poisoned");
                let take = queue.len().min(MAX_BATCH);
                queue.drain(..take).collect()
            };
            if batch.is_empty() {
                break;
            }
            if batch.len() > 1 {
                self.batches.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            verify_all(batch);
            match answered.try_recv() {
                Ok(verified) => return verified,
                Err(oneshot::error::TryRecvError::Empty) => {}
                Err(oneshot::error::TryRecvError::Closed) => return false,
            }
        }
        // Taken by another caller, who is verifying it right now.
        answered.await.unwrap_or(false)
    }

    /// How many batches of two or more signatures were verified.
    pub fn batches_verified(&self) -> u64 {
        self.batches.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Signatures `verify_strict` rejects before its equation (a non-canonical or small-order
    /// R) and keys with a small-order component are checked alone.
    fn may_batch(&self, signature: &Signature, key: &VerifyingKey) -> bool {
        let r = signature.r_bytes();
        if !is_canonical_y(r) || small_order_encodings().contains(r) {
            return false;
        }
        let key_bytes = key.to_bytes();
        if let Some(&batchable) = self.batchable.read().expect("not poisoned").get(&key_bytes) {
            return batchable;
        }
        let batchable = key.to_edwards().is_torsion_free();
        let mut known = self.batchable.write().expect("not poisoned");
        // Keys come from the trust list: a few hundred at most, but a replaced list must not
        // grow this without bound.
        if known.len() >= 4096 {
            known.clear();
        }
        known.insert(key_bytes, batchable);
        batchable
    }
}

/// Answers every check of `batch`: with one batch equation when there are several (each checked
/// alone if it fails, to find the bad ones), with `verify_strict` when alone.
fn verify_all(batch: Vec<Pending>) {
    let together = batch.len() > 1;
    let passed = together && {
        let messages: Vec<&[u8]> = batch.iter().map(|pending| pending.message.as_slice()).collect();
        let signatures: Vec<Signature> = batch.iter().map(|pending| pending.signature).collect();
        let keys: Vec<VerifyingKey> = batch.iter().map(|pending| pending.key).collect();
        ed25519_dalek::verify_batch(&messages, &signatures, &keys).is_ok()
    };
    crate::metrics::signature_batch(batch.len(), together && !passed);
    for pending in batch {
        let verified = passed || pending.key.verify_strict(&pending.message, &pending.signature).is_ok();
        let _ = pending.answer.send(verified);
    }
}

/// Whether the 255-bit y of a point encoding is below p = 2^255 - 19 (the sign bit aside).
fn is_canonical_y(encoding: &[u8; 32]) -> bool {
    let mut y = *encoding;
    y[31] &= 0x7f;
    // y >= p only if every byte but the lowest is at its maximum and the lowest is >= 0xed.
    !(y[31] == 0x7f && y[1..31].iter().all(|&byte| byte == 0xff) && y[0] >= 0xed)
}

/// The encodings of the eight points of small order, and the two with a sign bit set on x = 0
/// (which decode to the same points): what `verify_strict` rejects as R by its order check.
fn small_order_encodings() -> &'static [[u8; 32]] {
    static ENCODINGS: std::sync::OnceLock<Vec<[u8; 32]>> = std::sync::OnceLock::new();
    ENCODINGS.get_or_init(|| {
        let mut encodings: Vec<[u8; 32]> =
            curve25519_dalek::constants::EIGHT_TORSION.iter().map(|point| point.compress().to_bytes()).collect();
        for point in curve25519_dalek::constants::EIGHT_TORSION {
            let mut signed = point.compress().to_bytes();
            signed[31] |= 0x80;
            // Only x = 0 points keep decoding with the sign bit set.
            if CompressedEdwardsY(signed).decompress().is_some_and(|decoded| decoded == point) {
                encodings.push(signed);
            }
        }
        encodings
    })
}
