//! Off-site loan evaluation: every party checked before any code is consumed, codes consumed under the request id, the loan centre's policy applied to live or claimed figures.

use crate::code::Purpose;
use crate::loan::{Evaluation, House, LoanApplication, Party, Source, evaluate};
use crate::model::{Granted, RequestId, Subject, Verdict};
use crate::store::Store;

use super::verify::{AuthenticCode, Checked, CodeInput, Deferral, subject_of};
use super::{Liangma, ServiceError};

/// A depositor in a loan evaluation.
#[derive(Debug, Clone)]
pub enum PartyInput {
    /// A code to verify (and consume) now.
    Code(CodeInput),
    /// The verification id of a VALID verification by the same caller, less than 10 minutes ago.
    Verified(String),
}

/// A loan party after the checks that consume nothing.
struct CheckedParty {
    subject: Subject,
    figures: PartyFigures,
}

enum PartyFigures {
    /// Verified before: what its grant holds.
    Granted(Granted),
    /// An authentic, acceptable code still to be consumed.
    ToConsume(AuthenticCode),
}

/// A loan evaluation and the verification ids of the codes it consumed.
#[derive(Debug, Clone)]
pub struct LoanOutcome {
    /// The evaluation.
    pub evaluation: Evaluation,
    /// Verification ids of codes verified by this evaluation, for later lookups.
    pub verification_ids: Vec<String>,
}

/// A loan evaluation request, validated.
#[derive(Debug, Clone)]
pub struct LoanCommand {
    /// The caller's request id: codes are consumed under it, so a retry does not use them twice.
    pub request_id: Option<RequestId>,
    /// The borrower.
    pub borrower: PartyInput,
    /// The co-borrowing spouse, if they deposit too.
    pub co_borrower: Option<PartyInput>,
    /// Total price of the house.
    pub house_price: crate::code::Fen,
    /// New or second-hand.
    pub house: House,
    /// Term asked for.
    pub requested_term_years: Option<u32>,
}

impl<S: Store> Liangma<S> {
    /// Evaluates the off-site loan under this deployment's policy. Figures come from the live
    /// registry where the home centre published the member, else from the verified claims.
    /// Every party is checked (offline checks, grants, not the same member twice) before any
    /// code is consumed; codes are consumed under the request id, so a retry uses them again.
    pub async fn evaluate_loan(&self, command: LoanCommand) -> Result<LoanOutcome, ServiceError> {
        if command.house_price.0 == 0 {
            return Err(ServiceError::invalid("house_price_fen", "must be positive"));
        }
        if command.requested_term_years == Some(0) {
            return Err(ServiceError::invalid("requested_term_years", "at least 1 year"));
        }
        let borrower = self.check_party("borrower", command.borrower).await?;
        let co_borrower = match command.co_borrower {
            Some(input) => Some(self.check_party("co_borrower", input).await?),
            None => None,
        };
        if co_borrower.as_ref().is_some_and(|co_borrower| co_borrower.subject == borrower.subject) {
            return Err(ServiceError::SameMemberTwice);
        }
        let mut verification_ids = Vec::new();
        let request = command.request_id.as_ref();
        let borrower = self.settle_party("borrower", borrower, request, &mut verification_ids).await?;
        let co_borrower = match co_borrower {
            Some(checked) => Some(self.settle_party("co_borrower", checked, request, &mut verification_ids).await?),
            None => None,
        };
        let application = LoanApplication {
            borrower,
            co_borrower,
            house_price: command.house_price,
            house: command.house,
            requested_term_years: command.requested_term_years,
        };
        let evaluation = evaluate(&self.settings.loan_policy, &application).map_err(ServiceError::FigureOutOfRange)?;
        Ok(LoanOutcome { evaluation, verification_ids })
    }

    /// A loan party checked without consuming anything.
    async fn check_party(&self, party: &'static str, input: PartyInput) -> Result<CheckedParty, ServiceError> {
        match input {
            PartyInput::Verified(id) => {
                let granted = self.granted(&id).await?;
                Ok(CheckedParty { subject: granted.subject, figures: PartyFigures::Granted(granted) })
            }
            PartyInput::Code(code) => match self.check_offline(code, Some(Purpose::OffsiteLoan)).await? {
                Checked::Authentic(code) => {
                    Ok(CheckedParty { subject: subject_of(&code.claims), figures: PartyFigures::ToConsume(code) })
                }
                Checked::Rejected(verification) => {
                    Err(ServiceError::PartyNotValid { party, verdict: verification.verdict, others_consumed: false })
                }
            },
        }
    }

    /// Consumes a checked party's code (if it came as a code) and gives its figures.
    async fn settle_party(
        &self,
        party: &'static str,
        checked: CheckedParty,
        request_id: Option<&RequestId>,
        verification_ids: &mut Vec<String>,
    ) -> Result<Party, ServiceError> {
        let (claims, live) = match checked.figures {
            PartyFigures::Granted(granted) => (granted.claims, granted.live),
            PartyFigures::ToConsume(code) => {
                let claims = code.claims.deposit;
                let verification = self.consume(code, request_id.map(|id| id.part(party)), Deferral::Never).await?;
                let (Verdict::Valid, Some(id)) = (verification.verdict, verification.verification_id) else {
                    let others_consumed = !verification_ids.is_empty();
                    return Err(ServiceError::PartyNotValid { party, verdict: verification.verdict, others_consumed });
                };
                verification_ids.push(id);
                (claims, verification.live)
            }
        };
        Ok(match live {
            Some(record) => Party { deposit: record.status, source: Source::LiveRegistry },
            None => Party { deposit: claims, source: Source::CodeClaims },
        })
    }
}
