//! Deferred consumption: a code accepted offline while its issuer's node was unreachable is queued in this node's store and consumed at the issuer when it answers; a double use found then is reported.

use crate::model::{DeferredUse, RequestId, Verdict};
use crate::store::Store;

use super::link::{LinkError, RemoteUse};
use super::verify::Verification;
use super::{Liangma, ServiceError};
use crate::code::Claims;

/// Deferred consumptions replayed per round.
const REPLAY_BATCH: usize = 100;

/// What one replay round did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplayRound {
    /// Consumed at the issuer as accepted.
    pub consumed: usize,
    /// Found used before: double uses, reported.
    pub double_uses: usize,
    /// Answered otherwise (revoked, or failing the issuer's checks), reported.
    pub refused: usize,
    /// Still queued: the issuer's node did not answer.
    pub waiting: usize,
}

impl<S: Store> Liangma<S> {
    /// Queues the consumption and answers VERIFIED_OFFLINE; fails closed (ISSUER_UNREACHABLE)
    /// when the queue is full.
    pub(super) async fn defer(
        &self,
        claims: Claims,
        text: String,
        request_id: RequestId,
    ) -> Result<Verification, ServiceError> {
        let issuer = claims.issuer;
        let deferred = DeferredUse { issuer, code_id: claims.code_id, request_id, text, accepted_at: self.clock.now() };
        if !self.store.defer(&deferred).await? {
            tracing::error!("deferred consumption queue full; failing closed");
            return Ok(Verification::rejected(
                Verdict::IssuerUnreachable,
                Some(format!(
                    "home centre {issuer} unreachable and too many consumptions wait already: the code was NOT consumed; \
                     do not accept it"
                )),
                Some(claims),
            ));
        }
        Ok(Verification::rejected(
            Verdict::VerifiedOffline,
            Some(format!(
                "home centre {issuer} unreachable: accepted on the offline checks under this centre's deferred \
                 consumption rule for {}; the code will be consumed when the home centre answers, and a double use \
                 will be reported",
                claims.purpose.as_str()
            )),
            Some(claims),
        ))
    }

    /// Replays queued deferred consumptions at their issuers' nodes; each answer removes its
    /// entry (double uses and refusals are logged at ERROR: the report to this centre; the
    /// issuer logs and records them too).
    pub async fn replay_deferred(&self) -> Result<ReplayRound, ServiceError> {
        let mut round = ReplayRound::default();
        let Some(link) = &self.link else { return Ok(round) };
        for deferred in self.store.deferred(REPLAY_BATCH).await? {
            let node = self.trust().list().centre(deferred.issuer).and_then(|centre| centre.node.clone());
            let Some(node) = node else {
                round.waiting += 1;
                continue;
            };
            let code_use = RemoteUse {
                text: deferred.text.clone(),
                verifying_centre: self.settings.policy.centre,
                request_id: deferred.request_id.clone(),
                accepted_offline_at: Some(deferred.accepted_at),
            };
            let answer = match link.consume_at_issuer(deferred.issuer, &node, code_use).await {
                Ok(answer) => answer,
                Err(error @ LinkError::Unreachable { .. }) => {
                    tracing::debug!(%error, "deferred consumption still waiting");
                    round.waiting += 1;
                    continue;
                }
                // A refusal (e.g. this node's certificate) will not pass by itself: say so each round.
                Err(error @ LinkError::Refused { .. }) => {
                    tracing::warn!(%error, "deferred consumption refused by the issuer's node; still queued");
                    round.waiting += 1;
                    continue;
                }
            };
            let code_id = deferred.code_id;
            match answer.verdict {
                Verdict::Valid => {
                    round.consumed += 1;
                    tracing::info!(%code_id, issuer = %deferred.issuer, "deferred consumption replayed");
                }
                Verdict::DoubleUse | Verdict::AlreadyUsed => {
                    round.double_uses += 1;
                    let previous = answer.previous_use;
                    tracing::error!(%code_id, issuer = %deferred.issuer,
                        accepted_at = %deferred.accepted_at, used_by = ?previous.map(|used| used.centre.to_string()),
                        used_at = ?previous.map(|used| used.at.to_string()),
                        "DOUBLE USE: a code this centre accepted offline had been used before");
                }
                verdict => {
                    round.refused += 1;
                    tracing::error!(%code_id, issuer = %deferred.issuer, verdict = verdict.as_str(),
                        "a code this centre accepted offline was refused by its issuer on replay");
                }
            }
            self.store.deferred_done(&deferred.request_id).await?;
        }
        Ok(round)
    }
}
