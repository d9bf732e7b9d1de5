//! `liangma loan`: evaluate off-site loans offline under one or more policies, and check policy files.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context, bail};

use super::{EXIT_INVALID, EXIT_VALID, LoanCommand};
use crate::code::{Fen, Purpose};
use crate::loan::{Evaluation, House, LoanApplication, LoanPolicy, Party, Source, evaluate, name_of, policy};
use crate::trust::TrustList;
use crate::verify::{VerifierPolicy, verify_offline};

/// `700000` or `700000.5` yuan -> fen, exactly.
fn parse_yuan(text: &str) -> anyhow::Result<Fen> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    let digits = whole.bytes().chain(fraction.bytes()).all(|b| b.is_ascii_digit());
    if whole.is_empty() || fraction.len() > 2 || !digits {
        bail!("`{text}` is not an amount in yuan with at most 2 decimals");
    }
    let whole: u64 = whole.parse().context("amount too large")?;
    let fraction: u64 = if fraction.is_empty() { 0 } else { format!("{fraction:0<2}").parse()? };
    whole.checked_mul(100).and_then(|fen| fen.checked_add(fraction)).map(Fen).context("amount too large")
}

pub(super) fn run(command: LoanCommand) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    match command {
        LoanCommand::Check { policy } => {
            let policy = LoanPolicy::load(&policy)?;
            writeln!(out, "{} ({}), centre {}: valid", policy.name, policy.description, policy.centre)?;
            writeln!(
                out,
                "  multiple {}, cap {} yuan, price ratio {}% / {}% (single / two-party), at least {} months",
                policy.multiple,
                policy.absolute_cap,
                policy.single_party_ratio / 100,
                policy.two_party_ratio / 100,
                policy.min_continuous_months
            )?;
            for step in &policy.time_coefficient {
                writeln!(
                    out,
                    "  from {:>3} months: coefficient {}",
                    step.from_months,
                    policy::format_basis_points(step.coefficient)
                )?;
            }
            writeln!(
                out,
                "  term at most {} years; second-hand {} years minus building age; rounded down to {}",
                policy.max_term_years, policy.second_hand_total_years, policy.rounding
            )?;
            Ok(ExitCode::from(EXIT_VALID))
        }
        LoanCommand::Evaluate(args) => {
            let policies: Vec<LoanPolicy> = if args.policies.is_empty() {
                vec![LoanPolicy::load("jiaozuo-2024")?]
            } else {
                args.policies.iter().map(|name| LoanPolicy::load(name)).collect::<Result<_, _>>()?
            };
            let trust = TrustList::load(&args.trust)?;
            let verifier =
                VerifierPolicy { purposes: vec![Purpose::OffsiteLoan], ..VerifierPolicy::any_purpose(args.centre) };
            let now = args.time.clock().now();
            let verified = |role: &str, text: &str| -> anyhow::Result<Party> {
                let claims = verify_offline(text, &trust, &verifier, now)
                    .map_err(|rejection| anyhow::anyhow!("{role}'s code is not valid: {rejection}"))?;
                Ok(Party { deposit: claims.deposit, source: Source::CodeClaims })
            };
            let application = LoanApplication {
                borrower: verified("borrower", &args.code)?,
                co_borrower: args.co_borrower.as_deref().map(|code| verified("co-borrower", code)).transpose()?,
                house_price: parse_yuan(&args.house_price_yuan)?,
                house: match args.building_age {
                    Some(building_age_years) => House::SecondHand { building_age_years },
                    None => House::New,
                },
                requested_term_years: args.term,
            };
            let evaluations: Vec<Evaluation> = policies.iter().map(|policy| evaluate(policy, &application)).collect();
            if args.json {
                serde_json::to_writer_pretty(&mut out, &evaluations)?;
                writeln!(out)?;
            } else {
                print_side_by_side(&mut out, &evaluations)?;
            }
            let any_eligible = evaluations.iter().any(|evaluation| evaluation.eligible);
            Ok(ExitCode::from(if any_eligible { EXIT_VALID } else { EXIT_INVALID }))
        }
    }
}

fn print_side_by_side(out: &mut impl Write, evaluations: &[Evaluation]) -> std::io::Result<()> {
    let row = |out: &mut dyn Write, label: &str, cells: Vec<String>| -> std::io::Result<()> {
        write!(out, "{label:<22}")?;
        for cell in cells {
            write!(out, "{cell:<24}")?;
        }
        writeln!(out)
    };
    row(out, "policy", evaluations.iter().map(|e| e.policy.clone()).collect())?;
    row(out, "eligible", evaluations.iter().map(|e| if e.eligible { "yes".into() } else { "no".into() }).collect())?;
    row(out, "max amount (yuan)", evaluations.iter().map(|e| e.max_amount.to_string()).collect())?;
    row(out, "max term (years)", evaluations.iter().map(|e| e.max_term_years.to_string()).collect())?;
    row(out, "decided by", evaluations.iter().map(|e| name_of(&e.decided_by)).collect())?;
    for evaluation in evaluations {
        writeln!(out, "\n{}:", evaluation.policy)?;
        for (role, reason) in &evaluation.reasons {
            writeln!(out, "  not eligible: {} {}", name_of(role), name_of(reason))?;
        }
        for step in &evaluation.steps {
            let amount = step.amount.map(|amount| amount.to_string()).unwrap_or_default();
            writeln!(out, "  {amount:>14}  {}", step.description)?;
        }
    }
    if let Some(first) = evaluations.first() {
        writeln!(out, "\nfigures:")?;
        for figure in &first.figures {
            writeln!(out, "  {:<32} {:<20} from {}", figure.name, figure.value, name_of(&figure.source))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yuan_amounts_are_exact() {
        assert_eq!(parse_yuan("700000").unwrap(), Fen(70_000_000));
        assert_eq!(parse_yuan("0.5").unwrap(), Fen(50));
        assert_eq!(parse_yuan("12.34").unwrap(), Fen(1_234));
        for bad in ["", "1.234", "-1", "1e6", "abc", "99999999999999999999"] {
            assert!(parse_yuan(bad).is_err(), "{bad}");
        }
    }
}
