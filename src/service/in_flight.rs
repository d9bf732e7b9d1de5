//! One remote consumption in flight per code at a time: concurrent scans of the same code at this node queue here instead of racing to the issuer's node.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::code::CodeId;

/// Per-code turns; an entry lives while someone holds or waits for it.
#[derive(Debug, Default)]
pub(super) struct InFlight {
    turns: Mutex<HashMap<CodeId, Arc<tokio::sync::Mutex<()>>>>,
}

/// Holds the code's turn; dropping it lets the next caller go and forgets idle codes.
pub(super) struct Turn<'a> {
    in_flight: &'a InFlight,
    code_id: CodeId,
    held: tokio::sync::OwnedMutexGuard<()>,
}

impl InFlight {
    /// Waits until no other call of this node is consuming `code_id` remotely.
    pub(super) async fn turn(&self, code_id: CodeId) -> Turn<'_> {
        let turn = {
            let mut turns = self.turns.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            Arc::clone(turns.entry(code_id).or_default())
        };
        let held = turn.lock_owned().await;
        Turn { in_flight: self, code_id, held }
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.turns.lock().unwrap().len()
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        let mut turns = self.in_flight.turns.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        // Two references: the map's and this turn's. More means others wait for the code.
        if Arc::strong_count(tokio::sync::OwnedMutexGuard::mutex(&self.held)) <= 2 {
            turns.remove(&self.code_id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_turn_per_code_and_idle_codes_are_forgotten() {
        let in_flight = InFlight::default();
        let code = CodeId::from_bytes([1; 12]);
        let first = in_flight.turn(code).await;
        let other_code = in_flight.turn(CodeId::from_bytes([2; 12])).await;
        let second = tokio::time::timeout(std::time::Duration::from_millis(50), in_flight.turn(code)).await;
        assert!(second.is_err(), "the same code waits for its turn");
        drop((first, other_code));
        assert_eq!(in_flight.tracked(), 0);
        let _again = in_flight.turn(code).await;
        assert_eq!(in_flight.tracked(), 1);
    }
}
