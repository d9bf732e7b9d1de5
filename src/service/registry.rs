//! The registry: home centres publish their members' deposit statuses (bounded, versioned); a verifier looks up the live status it was granted.

use crate::code::{CentreCode, DepositClaims};
use crate::model::{Granted, IdNumber, PublishOutcome, PublishRejection, RegistryRecord, Subject};
use crate::store::Store;

use super::verification_id::parse_verification_id;
use super::{LOOKUP_GRANT_SECONDS, Liangma, ServiceError};

/// A publication, validated.
#[derive(Debug, Clone)]
pub struct PublishCommand {
    /// The home centre publishing (one this deployment issues for).
    pub centre: CentreCode,
    /// Its members' statuses.
    pub members: Vec<MemberStatus>,
}

/// One member status to publish, validated.
#[derive(Debug, Clone)]
pub struct MemberStatus {
    /// The member (hashed, never stored).
    pub id_number: IdNumber,
    /// The name (stored masked only).
    pub name: String,
    /// The status; `registry_version` orders publications.
    pub status: DepositClaims,
}

/// Longest member name accepted at publish, in characters (the longest names in use, of
/// minority nationalities with separating dots, are around 30).
pub const MAX_NAME_CHARS: usize = 64;

fn check_name(name: &str) -> Result<(), String> {
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(format!("at most {MAX_NAME_CHARS} characters"));
    }
    if name.chars().any(char::is_control) {
        return Err("no control characters".into());
    }
    Ok(())
}

/// Masks a name for a counter screen: first character, then one `*` per other character.
pub fn mask_name(name: &str) -> String {
    let mut chars = name.trim().chars();
    match chars.next() {
        Some(first) => std::iter::once(first).chain(chars.map(|_| '*')).collect(),
        None => String::new(),
    }
}

impl<S: Store> Liangma<S> {
    /// Publishes a batch of member statuses for `centre`. Every record is checked before any is
    /// stored; records the store refuses (see [`PublishRejection`]) are reported by index.
    pub async fn publish(&self, command: PublishCommand) -> Result<PublishOutcome, ServiceError> {
        let PublishCommand { centre, members } = command;
        let issuer = self.issuer(centre)?;
        if members.len() > self.settings.max_publish_batch {
            let most = self.settings.max_publish_batch;
            return Err(ServiceError::invalid(
                "records",
                format!("a batch holds at most {most} records, not {}", members.len()),
            ));
        }
        let now = self.clock.now();
        let mut records = Vec::with_capacity(members.len());
        for (index, member) in members.into_iter().enumerate() {
            let invalid = |field: &str, problem: &dyn std::fmt::Display| {
                ServiceError::invalid(format!("records[{index}].{field}"), problem)
            };
            if member.status.registry_version == 0 {
                return Err(invalid("status.registry_version", &"must be at least 1"));
            }
            member.status.check_bounds().map_err(|error| invalid("status", &error))?;
            check_name(&member.name).map_err(|problem| invalid("name", &problem))?;
            let subject = Subject { centre, reference: issuer.subject_ref(&member.id_number) };
            let record = RegistryRecord {
                status: member.status,
                masked_name: mask_name(&member.name),
                masked_id_number: member.id_number.masked(),
                published_at: now,
            };
            records.push((subject, record));
        }
        let outcome = self.store.publish(&records, self.settings.max_version_step).await?;
        for (index, rejection) in &outcome.rejected {
            if *rejection == PublishRejection::StoredRecordUnreadable {
                tracing::error!(%centre, index, "stored registry record unreadable: publish refused it; repair with `liangma registry forget`");
            }
        }
        Ok(outcome)
    }

    /// The live status of the member whose code the holder of `verification_id` verified.
    pub async fn lookup(&self, verification_id: &str) -> Result<Option<RegistryRecord>, ServiceError> {
        Ok(self.granted(verification_id).await?.live)
    }

    /// What a VALID verification made available to its caller for a while.
    pub(super) async fn granted(&self, verification_id: &str) -> Result<Granted, ServiceError> {
        let named = parse_verification_id(verification_id).ok_or(ServiceError::NotGranted)?;
        // A code of a centre issued elsewhere was consumed at its issuer's node: this node
        // kept that node's answer.
        let granted = if self.link.is_some() && !self.issues_for(named.subject.centre) {
            let cached = self.store.remote_granted(named.subject, named.code_id, &named.grant).await?;
            crate::metrics::remote_cache(cached.is_some());
            cached
        } else {
            self.store.lookup_granted(named.subject, named.code_id, &named.grant).await?
        };
        let granted = granted.ok_or(ServiceError::NotGranted)?;
        // Another instance's clock may run a little behind: only the end of the grant matters.
        if self.clock.now().unix() - granted.verified_at.unix() >= LOOKUP_GRANT_SECONDS as i64 {
            return Err(ServiceError::NotGranted);
        }
        Ok(granted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_masked_after_the_first_character() {
        assert_eq!(mask_name("张三"), "张*");
        assert_eq!(mask_name("欧阳娜娜"), "欧***");
        assert_eq!(mask_name(""), "");
    }
}
