//! `liangma loan`: evaluate off-site loans offline under one or more policies, and check policy files.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context, bail};

use super::{EXIT_INVALID, EXIT_VALID, LoanCommand};
use crate::code::{Claims, Fen, Purpose};
use crate::loan::{Evaluation, House, LoanApplication, LoanPolicy, Party, Source, evaluate, name_of, policy};
use crate::trust::TrustList;
use crate::verify::{VerifierPolicy, verify_offline};

/// `700000` or `700000.5` yuan -> fen, exactly; a price must be positive.
fn parse_price_yuan(text: &str) -> anyhow::Result<Fen> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    let digits = whole.bytes().chain(fraction.bytes()).all(|b| b.is_ascii_digit());
    if whole.is_empty() || fraction.len() > 2 || !digits {
        bail!("--house-price-yuan: `{text}` is not a positive amount in yuan with at most 2 decimals");
    }
    let whole: u64 = whole.parse().context("--house-price-yuan: amount too large")?;
    let fraction: u64 = if fraction.is_empty() { 0 } else { format!("{fraction:0<2}").parse()? };
    let fen = whole.checked_mul(100).and_then(|fen| fen.checked_add(fraction));
    match fen {
        None => bail!("--house-price-yuan: amount too large"),
        Some(0) => bail!("--house-price-yuan: the house price must be positive"),
        Some(fen) => Ok(Fen(fen)),
    }
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
            for policy in policies.iter().filter(|policy| policy.centre != args.centre) {
                eprintln!(
                    "liangma: warning: policy {} belongs to centre {}, not to the evaluating centre {}",
                    policy.name, policy.centre, args.centre
                );
            }
            let house_price = parse_price_yuan(&args.house_price_yuan)?;
            let trust = TrustList::load(&args.trust)?;
            let verifier =
                VerifierPolicy { purposes: vec![Purpose::OffsiteLoan], ..VerifierPolicy::any_purpose(args.centre) };
            let now = args.time.clock().now();
            let verified = |role: &str, text: &str| -> anyhow::Result<Claims> {
                verify_offline(text, &trust, &verifier, now)
                    .map_err(|rejection| anyhow::anyhow!("{role}'s code is not valid: {rejection}"))
            };
            let borrower = verified("borrower", &args.code)?;
            let co_borrower = args.co_borrower.as_deref().map(|code| verified("co-borrower", code)).transpose()?;
            if co_borrower.is_some_and(|co| (co.issuer, co.subject) == (borrower.issuer, borrower.subject)) {
                bail!(
                    "the co-borrower's code names the same member as the borrower's: a co-borrower is another depositor"
                );
            }
            let party = |claims: Claims| Party { deposit: claims.deposit, source: Source::CodeClaims };
            let application = LoanApplication {
                borrower: party(borrower),
                co_borrower: co_borrower.map(party),
                house_price,
                house: match args.building_age {
                    Some(building_age_years) => House::SecondHand { building_age_years },
                    None => House::New,
                },
                requested_term_years: args.term,
            };
            let evaluations = policies
                .iter()
                .map(|policy| evaluate(policy, &application))
                .collect::<Result<Vec<Evaluation>, _>>()
                .context("a code's deposit figure is beyond what any home centre may publish")?;
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
    row(out, "decided by", evaluations.iter().map(|e| e.decided_by.as_ref().map_or("-".into(), name_of)).collect())?;
    if evaluations.iter().any(|e| e.requested_term_allowed.is_some()) {
        let allowed = |e: &Evaluation| match e.requested_term_allowed {
            Some(true) => "yes".into(),
            Some(false) => format!("no (at most {})", e.max_term_years),
            None => "-".into(),
        };
        row(out, "requested term allowed", evaluations.iter().map(allowed).collect())?;
    }
    for evaluation in evaluations {
        writeln!(out, "\n{}:", evaluation.policy)?;
        for reason in &evaluation.reasons {
            writeln!(out, "  not eligible: {} {}", name_of(&reason.party), name_of(&reason.reason))?;
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
        assert_eq!(parse_price_yuan("700000").unwrap(), Fen(70_000_000));
        assert_eq!(parse_price_yuan("0.5").unwrap(), Fen(50));
        assert_eq!(parse_price_yuan("12.34").unwrap(), Fen(1_234));
        for bad in ["", "1.234", "-1", "1e6", "abc", "99999999999999999999", "0", "0.00"] {
            assert!(parse_price_yuan(bad).is_err(), "{bad}");
        }
    }
}
