//! Off-site loan evaluation: how much a member may borrow under a loan centre's policy, step by step, in integer fen.

pub mod policy;

use serde::Serialize;

use crate::code::{AccountStatus, DepositClaims, Fen, LoanState};
pub use policy::{BasisPoints, LoanPolicy, ONE, PolicyError};

/// Where a figure came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Source {
    /// The live registry status, published by the home centre.
    LiveRegistry,
    /// The signed claims of the code (the registry had no record).
    CodeClaims,
    /// The applicant's request (house price, building age, term).
    Request,
    /// The loan centre's policy.
    Policy,
}

/// A depositor's figures and where they came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Party {
    /// Deposit status used.
    pub deposit: DepositClaims,
    /// Live registry or code claims.
    pub source: Source,
}

/// New or second-hand house.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum House {
    /// Newly built.
    New,
    /// Second-hand, with the building's age in years.
    SecondHand {
        /// Years since completion.
        building_age_years: u32,
    },
}

/// What the counter asks about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoanApplication {
    /// The borrower.
    pub borrower: Party,
    /// The co-borrowing spouse, if they deposit too (two-party depositors).
    pub co_borrower: Option<Party>,
    /// Total price of the house.
    pub house_price: Fen,
    /// New or second-hand.
    pub house: House,
    /// Term asked for, years.
    pub requested_term_years: Option<u32>,
}

/// Why an applicant is not eligible.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Ineligibility {
    /// The account is not in normal status.
    AccountNotNormal,
    /// Fewer months of continuous deposit than the policy requires.
    InsufficientContinuousDeposit,
    /// A provident-fund loan is still being repaid.
    OutstandingLoan,
    /// More loans used than the policy allows.
    TooManyPreviousLoans,
    /// Nothing to lend against: no balance at all.
    NoBalance,
    /// A balance so small that the formula rounds the loan down to nothing.
    BalanceTooLow,
    /// A house price so low that the loan-to-price cap rounds the loan down to nothing.
    PriceTooLow,
    /// A second-hand building too old for any term.
    BuildingTooOld,
}

/// Whose reason it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// The borrower.
    Borrower,
    /// The co-borrower.
    CoBorrower,
    /// The house.
    House,
}

/// Which limit decided the amount.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Cap {
    /// Balance × multiple × coefficient.
    Formula,
    /// The policy's absolute cap.
    AbsoluteCap,
    /// The loan-to-price ratio.
    PriceRatio,
}

/// One reason for ineligibility: whose, and what.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Reason {
    /// Whose reason it is.
    pub party: Role,
    /// The reason.
    pub reason: Ineligibility,
}

/// One line of the breakdown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Step {
    /// What was computed, in words and numbers.
    pub description: String,
    /// The amount it gives; `None` for steps about the term.
    #[serde(rename = "amount_fen")]
    pub amount: Option<Fen>,
}

/// A deposit figure of a party is beyond what any home centre may publish
/// (docs/code-format.md §8): such a code comes from a faulty issuer and is not evaluated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{}: {error}", name_of(party))]
pub struct FigureOutOfRange {
    /// Whose figure.
    pub party: Role,
    /// Which, and its bound.
    pub error: crate::code::OutOfRange,
}

/// A figure the evaluation used, with its source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Figure {
    /// What it is, e.g. `borrower.balance_fen`.
    pub name: String,
    /// Its value as text.
    pub value: String,
    /// Where it came from.
    pub source: Source,
}

/// The answer to "how much can this member borrow here?".
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Evaluation {
    /// The policy applied.
    pub policy: String,
    /// Whether a loan is possible.
    pub eligible: bool,
    /// Why not, if not.
    pub reasons: Vec<Reason>,
    /// Largest loan (0 when not eligible).
    #[serde(rename = "max_amount_fen")]
    pub max_amount: Fen,
    /// Longest term, years (0 when no term is possible).
    pub max_term_years: u32,
    /// Whether the requested term is within `max_term_years`; `None` if none was requested.
    pub requested_term_allowed: Option<bool>,
    /// Which limit decided the amount; `None` when not eligible.
    pub decided_by: Option<Cap>,
    /// The computation, step by step.
    pub steps: Vec<Step>,
    /// Every input figure and its source.
    pub figures: Vec<Figure>,
}

/// The JSON (kebab or screaming-snake case) name of one of this module's enum values, so
/// that text output, JSON and gRPC use the same words.
pub fn name_of<T: Serialize>(value: &T) -> String {
    serde_json::to_value(value).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
}

/// `amount × ratio / 10000`, rounded down, without overflow.
fn apply_ratio(amount: Fen, ratio: BasisPoints) -> Fen {
    Fen(u64::try_from(u128::from(amount.0) * u128::from(ratio) / u128::from(ONE)).unwrap_or(u64::MAX))
}

fn party_checks(policy: &LoanPolicy, role: Role, party: &Party, reasons: &mut Vec<Reason>) {
    let deposit = &party.deposit;
    if deposit.account_status != AccountStatus::Normal {
        reasons.push(Reason { party: role, reason: Ineligibility::AccountNotNormal });
    }
    if deposit.continuous_months < policy.min_continuous_months {
        reasons.push(Reason { party: role, reason: Ineligibility::InsufficientContinuousDeposit });
    }
    if policy.outstanding_loan_blocks && deposit.loan_state == LoanState::Outstanding {
        reasons.push(Reason { party: role, reason: Ineligibility::OutstandingLoan });
    }
    if policy.max_previous_loans.is_some_and(|max| deposit.loans_used > max) {
        reasons.push(Reason { party: role, reason: Ineligibility::TooManyPreviousLoans });
    }
}

fn party_figures(role: &str, party: &Party, figures: &mut Vec<Figure>) {
    let deposit = &party.deposit;
    for (name, value) in [
        ("account_status", deposit.account_status.to_string()),
        ("balance", format!("{} yuan", deposit.balance)),
        ("continuous_months", deposit.continuous_months.to_string()),
        ("loan_state", deposit.loan_state.to_string()),
        ("loans_used", deposit.loans_used.to_string()),
        ("registry_version", deposit.registry_version.to_string()),
    ] {
        figures.push(Figure { name: format!("{role}.{name}"), value, source: party.source });
    }
}

/// `balance × multiple × coefficient` for one depositor.
fn party_formula(policy: &LoanPolicy, role: &str, party: &Party, steps: &mut Vec<Step>) -> Fen {
    let deposit = &party.deposit;
    let Some(step) = policy.coefficient(deposit.continuous_months) else {
        steps.push(Step {
            description: format!(
                "{role}: {} months of continuous deposit have no coefficient",
                deposit.continuous_months
            ),
            amount: Some(Fen(0)),
        });
        return Fen(0);
    };
    // Within the published bounds (checked by `evaluate`) no product overflows.
    let amount = apply_ratio(Fen(deposit.balance.0.saturating_mul(u64::from(policy.multiple))), step.coefficient);
    steps.push(Step {
        description: format!(
            "{role}: balance {} × multiple {} × time coefficient {} ({} months, coefficient from {} months)",
            deposit.balance,
            policy.multiple,
            policy::format_basis_points(step.coefficient),
            deposit.continuous_months,
            step.from_months
        ),
        amount: Some(amount),
    });
    amount
}

/// Evaluates an application under `policy`.
pub fn evaluate(policy: &LoanPolicy, application: &LoanApplication) -> Result<Evaluation, FigureOutOfRange> {
    let parties = std::iter::once((Role::Borrower, &application.borrower))
        .chain(application.co_borrower.as_ref().map(|co_borrower| (Role::CoBorrower, co_borrower)));
    for (party, figures) in parties {
        figures.deposit.check_bounds().map_err(|error| FigureOutOfRange { party, error })?;
    }
    let mut reasons = Vec::new();
    let mut steps = Vec::new();
    let mut figures = Vec::new();

    party_checks(policy, Role::Borrower, &application.borrower, &mut reasons);
    party_figures("borrower", &application.borrower, &mut figures);
    let mut formula = party_formula(policy, "borrower", &application.borrower, &mut steps);
    if let Some(co_borrower) = &application.co_borrower {
        party_checks(policy, Role::CoBorrower, co_borrower, &mut reasons);
        party_figures("co_borrower", co_borrower, &mut figures);
        let co_formula = party_formula(policy, "co-borrower", co_borrower, &mut steps);
        formula = Fen(formula.0.checked_add(co_formula.0).expect("two bounded formula amounts fit u64"));
        steps.push(Step { description: "formula, both depositors together".into(), amount: Some(formula) });
    }
    figures.push(Figure {
        name: "house_price".into(),
        value: format!("{} yuan", application.house_price),
        source: Source::Request,
    });
    for (name, value) in [
        ("policy.multiple", policy.multiple.to_string()),
        ("policy.absolute_cap", format!("{} yuan", policy.absolute_cap)),
        ("policy.single_party_price_ratio", format!("{}%", policy.single_party_ratio / 100)),
        ("policy.two_party_price_ratio", format!("{}%", policy.two_party_ratio / 100)),
        ("policy.min_continuous_months", policy.min_continuous_months.to_string()),
    ] {
        figures.push(Figure { name: name.into(), value, source: Source::Policy });
    }

    let (ratio, ratio_name) = if application.co_borrower.is_some() {
        (policy.two_party_ratio, "two-party")
    } else {
        (policy.single_party_ratio, "single-party")
    };
    let price_cap = apply_ratio(application.house_price, ratio);
    steps.push(Step {
        description: format!("absolute cap of policy {}", policy.name),
        amount: Some(policy.absolute_cap),
    });
    steps.push(Step {
        description: format!(
            "{ratio_name} loan-to-price cap {}% × house price {}",
            ratio / 100,
            application.house_price
        ),
        amount: Some(price_cap),
    });
    let (mut amount, decided_by) =
        [(formula, Cap::Formula), (policy.absolute_cap, Cap::AbsoluteCap), (price_cap, Cap::PriceRatio)]
            .into_iter()
            .min_by_key(|(amount, _)| *amount)
            .expect("three candidates");
    let unit = policy.rounding.unit_fen();
    amount = Fen(amount.0 / unit * unit);
    steps.push(Step {
        description: format!("lowest of the three, rounded down to {}", policy.rounding),
        amount: Some(amount),
    });
    let no_balance = application.borrower.deposit.balance.0 == 0
        && application.co_borrower.is_none_or(|co_borrower| co_borrower.deposit.balance.0 == 0);

    let max_term_years = match application.house {
        House::New => policy.max_term_years,
        House::SecondHand { building_age_years } => {
            figures.push(Figure {
                name: "building_age_years".into(),
                value: building_age_years.to_string(),
                source: Source::Request,
            });
            let remaining = policy.second_hand_total_years.saturating_sub(building_age_years);
            steps.push(Step {
                description: format!(
                    "second-hand term: {} years minus building age {} = {} years (policy maximum {})",
                    policy.second_hand_total_years, building_age_years, remaining, policy.max_term_years
                ),
                amount: None,
            });
            if remaining == 0 {
                reasons.push(Reason { party: Role::House, reason: Ineligibility::BuildingTooOld });
            }
            remaining.min(policy.max_term_years)
        }
    };
    let requested_term_allowed = application.requested_term_years.map(|requested| {
        figures.push(Figure {
            name: "requested_term_years".into(),
            value: requested.to_string(),
            source: Source::Request,
        });
        let allowed = (1..=max_term_years).contains(&requested);
        if !allowed {
            steps.push(Step {
                description: format!("requested term {requested} years exceeds the maximum {max_term_years} years"),
                amount: None,
            });
        }
        allowed
    });
    // Nothing to lend against: no balance, or a loan that rounds down to nothing (say why).
    if no_balance {
        reasons.push(Reason { party: Role::Borrower, reason: Ineligibility::NoBalance });
    } else if amount.0 == 0 && reasons.is_empty() {
        let reason = match decided_by {
            Cap::PriceRatio => Reason { party: Role::House, reason: Ineligibility::PriceTooLow },
            Cap::Formula | Cap::AbsoluteCap => Reason { party: Role::Borrower, reason: Ineligibility::BalanceTooLow },
        };
        reasons.push(reason);
    }
    let eligible = reasons.is_empty();
    Ok(Evaluation {
        policy: policy.name.clone(),
        eligible,
        reasons,
        max_amount: if eligible { amount } else { Fen(0) },
        max_term_years: if eligible { max_term_years } else { 0 },
        requested_term_allowed,
        decided_by: eligible.then_some(decided_by),
        steps,
        figures,
    })
}
