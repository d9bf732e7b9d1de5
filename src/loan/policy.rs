//! A loan centre's policy: parsed from TOML, validated with errors that name the field, the value and why.

use std::fmt;
use std::path::Path;

use serde::Deserialize;

use crate::code::{CentreCode, Fen};

/// Ratios and coefficients in basis points: 10000 = 1.0 = 100%.
pub type BasisPoints = u32;
/// 1.0 in basis points.
pub const ONE: BasisPoints = 10_000;

/// Policies that ship with liangma, by name.
pub const BUILT_IN: [(&str, &str); 2] = [
    ("jiaozuo-2024", include_str!("policies/jiaozuo-2024.toml")),
    ("jiaozuo-before-2024", include_str!("policies/jiaozuo-before-2024.toml")),
];

/// How the final amount is rounded; always down, so that rounding never breaks a cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Rounding {
    /// To the fen.
    #[serde(rename = "fen")]
    Fen,
    /// To the yuan.
    #[serde(rename = "yuan")]
    Yuan,
    /// To 100 yuan.
    #[serde(rename = "100-yuan")]
    HundredYuan,
    /// To 1,000 yuan.
    #[serde(rename = "1000-yuan")]
    ThousandYuan,
    /// To 10,000 yuan.
    #[serde(rename = "10000-yuan")]
    TenThousandYuan,
}

impl fmt::Display for Rounding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Rounding::Fen => "whole fen",
            Rounding::Yuan => "whole yuan",
            Rounding::HundredYuan => "100 yuan",
            Rounding::ThousandYuan => "1,000 yuan",
            Rounding::TenThousandYuan => "10,000 yuan",
        })
    }
}

impl Rounding {
    /// The rounding unit in fen.
    pub const fn unit_fen(self) -> u64 {
        match self {
            Rounding::Fen => 1,
            Rounding::Yuan => 100,
            Rounding::HundredYuan => 10_000,
            Rounding::ThousandYuan => 100_000,
            Rounding::TenThousandYuan => 1_000_000,
        }
    }
}

/// One step of the deposit-time coefficient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CoefficientStep {
    /// Applies from this many months of continuous deposit.
    pub from_months: u32,
    /// The coefficient.
    pub coefficient: BasisPoints,
}

/// A validated loan policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoanPolicy {
    /// Short name, e.g. `jiaozuo-2024`.
    pub name: String,
    /// The loan centre.
    pub centre: CentreCode,
    /// Human description.
    pub description: String,
    /// 倍数: the balance is multiplied by this.
    pub multiple: u32,
    /// Largest loan.
    pub absolute_cap: Fen,
    /// Fewer months of continuous deposit make a member ineligible.
    pub min_continuous_months: u32,
    /// Whether an outstanding provident-fund loan makes a member ineligible.
    pub outstanding_loan_blocks: bool,
    /// Members who have used more loans than this are ineligible; `None` = no limit.
    pub max_previous_loans: Option<u32>,
    /// Loan-to-price cap when only the borrower deposits.
    pub single_party_ratio: BasisPoints,
    /// Loan-to-price cap when the co-borrowing spouse deposits too.
    pub two_party_ratio: BasisPoints,
    /// Coefficient steps, highest `from_months` first.
    pub time_coefficient: Vec<CoefficientStep>,
    /// Longest term for any house, years.
    pub max_term_years: u32,
    /// Second-hand houses: term at most this minus the building's age.
    pub second_hand_total_years: u32,
    /// Rounding of the amount.
    pub rounding: Rounding,
}

/// A policy file problem: which field, which value, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field} = {value}: {why}")]
pub struct PolicyError {
    /// The field, e.g. `time_coefficient[1].coefficient`.
    pub field: String,
    /// The offending value as written.
    pub value: String,
    /// What is wrong.
    pub why: String,
}

fn error(field: impl Into<String>, value: impl fmt::Display, why: impl Into<String>) -> PolicyError {
    PolicyError { field: field.into(), value: value.to_string(), why: why.into() }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    name: String,
    centre: String,
    #[serde(default)]
    description: String,
    multiple: u32,
    absolute_cap_yuan: u64,
    min_continuous_months: u32,
    outstanding_loan_blocks: bool,
    max_previous_loans: Option<u32>,
    rounding: Rounding,
    price_ratio: RawPriceRatio,
    time_coefficient: Vec<RawStep>,
    term: RawTerm,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPriceRatio {
    single_party_percent: u32,
    two_party_percent: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    from_months: u32,
    coefficient: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTerm {
    max_years: u32,
    second_hand_total_years: u32,
}

/// `"0.8"` -> 8000: at most 4 decimals, between 0 and 1.
fn parse_coefficient(field: &str, text: &str) -> Result<BasisPoints, PolicyError> {
    let bad = || error(field, format!("\"{text}\""), "a decimal between 0 and 1 with at most 4 decimals, e.g. \"0.8\"");
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    if whole.is_empty() || fraction.len() > 4 || !(whole.bytes().chain(fraction.bytes())).all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let whole: u32 = whole.parse().map_err(|_| bad())?;
    let fraction: u32 = if fraction.is_empty() { 0 } else { format!("{fraction:0<4}").parse().map_err(|_| bad())? };
    let value = whole.checked_mul(ONE).and_then(|w| w.checked_add(fraction)).ok_or_else(bad)?;
    if value == 0 || value > ONE {
        return Err(bad());
    }
    Ok(value)
}

fn percent(field: &str, value: u32) -> Result<BasisPoints, PolicyError> {
    if (1..=100).contains(&value) { Ok(value * 100) } else { Err(error(field, value, "a percentage from 1 to 100")) }
}

impl LoanPolicy {
    /// Parses and validates a policy file's text.
    pub fn from_toml(text: &str) -> Result<Self, PolicyError> {
        let raw: RawPolicy = toml::from_str(text).map_err(|e| {
            let field = e.span().map(|span| format!("at byte {}", span.start)).unwrap_or_else(|| "policy".into());
            error(field, "(file)", e.message().to_owned())
        })?;
        if raw.name.trim().is_empty() {
            return Err(error("name", "\"\"", "give the policy a name"));
        }
        let centre = raw.centre.parse().map_err(|e| error("centre", format!("\"{}\"", raw.centre), format!("{e}")))?;
        if !(1..=100).contains(&raw.multiple) {
            return Err(error("multiple", raw.multiple, "between 1 and 100"));
        }
        if raw.absolute_cap_yuan == 0 || raw.absolute_cap_yuan > 100_000_000 {
            return Err(error("absolute_cap_yuan", raw.absolute_cap_yuan, "between 1 and 100,000,000 yuan"));
        }
        let mut steps = Vec::with_capacity(raw.time_coefficient.len());
        for (index, step) in raw.time_coefficient.iter().enumerate() {
            let field = format!("time_coefficient[{index}].coefficient");
            steps.push(CoefficientStep {
                from_months: step.from_months,
                coefficient: parse_coefficient(&field, &step.coefficient)?,
            });
        }
        if steps.is_empty() {
            return Err(error("time_coefficient", "[]", "give at least one step"));
        }
        steps.sort_by_key(|step| std::cmp::Reverse(step.from_months));
        for pair in steps.windows(2) {
            if pair[0].from_months == pair[1].from_months {
                return Err(error("time_coefficient", pair[0].from_months, "two steps start at the same month"));
            }
            if pair[0].coefficient < pair[1].coefficient {
                return Err(error(
                    "time_coefficient",
                    format!("{} months", pair[0].from_months),
                    "a longer deposit must not get a smaller coefficient",
                ));
            }
        }
        let lowest = steps.last().expect("not empty").from_months;
        if lowest > raw.min_continuous_months {
            return Err(error(
                "min_continuous_months",
                raw.min_continuous_months,
                format!("eligible members below {lowest} months would have no coefficient"),
            ));
        }
        if !(1..=50).contains(&raw.term.max_years) {
            return Err(error("term.max_years", raw.term.max_years, "between 1 and 50"));
        }
        if !(1..=100).contains(&raw.term.second_hand_total_years) {
            return Err(error("term.second_hand_total_years", raw.term.second_hand_total_years, "between 1 and 100"));
        }
        Ok(Self {
            name: raw.name,
            centre,
            description: raw.description,
            multiple: raw.multiple,
            absolute_cap: Fen(raw.absolute_cap_yuan * 100),
            min_continuous_months: raw.min_continuous_months,
            outstanding_loan_blocks: raw.outstanding_loan_blocks,
            max_previous_loans: raw.max_previous_loans,
            single_party_ratio: percent("price_ratio.single_party_percent", raw.price_ratio.single_party_percent)?,
            two_party_ratio: percent("price_ratio.two_party_percent", raw.price_ratio.two_party_percent)?,
            time_coefficient: steps,
            max_term_years: raw.term.max_years,
            second_hand_total_years: raw.term.second_hand_total_years,
            rounding: raw.rounding,
        })
    }

    /// A built-in policy by name, or a policy file by path.
    pub fn load(name_or_path: &str) -> Result<Self, PolicyError> {
        if let Some((_, text)) = BUILT_IN.iter().find(|(name, _)| *name == name_or_path) {
            return Self::from_toml(text);
        }
        let text = std::fs::read_to_string(Path::new(name_or_path)).map_err(|e| {
            let names: Vec<&str> = BUILT_IN.iter().map(|(name, _)| *name).collect();
            error("policy", name_or_path, format!("{e}; built-in policies are {}", names.join(", ")))
        })?;
        Self::from_toml(&text)
    }

    /// The coefficient for `months` of continuous deposit; `None` below the lowest step.
    pub fn coefficient(&self, months: u32) -> Option<CoefficientStep> {
        self.time_coefficient.iter().copied().find(|step| months >= step.from_months)
    }
}

/// `8000` -> `"0.8"`.
pub fn format_basis_points(value: BasisPoints) -> String {
    let text = format!("{}.{:04}", value / ONE, value % ONE);
    let trimmed = text.trim_end_matches('0');
    if trimmed.ends_with('.') { format!("{trimmed}0") } else { trimmed.to_owned() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_policies_load() {
        for (name, _) in BUILT_IN {
            let policy = LoanPolicy::load(name).unwrap();
            assert_eq!(policy.name, name);
            assert_eq!(policy.centre.to_string(), "410800");
        }
        let now = LoanPolicy::load("jiaozuo-2024").unwrap();
        assert_eq!((now.multiple, now.absolute_cap, now.single_party_ratio), (30, Fen(80_000_000), 8000));
        assert_eq!(now.coefficient(24).unwrap().coefficient, ONE);
        assert_eq!(now.coefficient(23).unwrap().coefficient, 8000);
        assert_eq!(now.coefficient(5), None);
    }

    #[test]
    fn coefficients_are_exact_decimals() {
        assert_eq!(parse_coefficient("c", "1"), Ok(10_000));
        assert_eq!(parse_coefficient("c", "0.8"), Ok(8_000));
        assert_eq!(parse_coefficient("c", "0.1234"), Ok(1_234));
        for bad in ["0", "1.5", "0.12345", ".5", "-0.5", "0,8", "abc", ""] {
            assert!(parse_coefficient("c", bad).is_err(), "{bad}");
        }
        assert_eq!(format_basis_points(8_000), "0.8");
        assert_eq!(format_basis_points(10_000), "1.0");
        assert_eq!(format_basis_points(1_234), "0.1234");
    }

    #[test]
    fn errors_name_the_field_the_value_and_why() {
        let text = BUILT_IN[0].1;
        let cases = [
            (text.replace("multiple = 30", "multiple = 0"), "multiple = 0"),
            (
                text.replace("coefficient = \"0.8\"", "coefficient = \"1.2\""),
                "time_coefficient[1].coefficient = \"1.2\"",
            ),
            (
                text.replace("single_party_percent = 80", "single_party_percent = 120"),
                "price_ratio.single_party_percent = 120",
            ),
            (text.replace("min_continuous_months = 6", "min_continuous_months = 3"), "min_continuous_months = 3"),
            (text.replace("centre = \"410800\"", "centre = \"4108\""), "centre = \"4108\""),
            (text.replace("from_months = 6", "from_months = 12"), "time_coefficient = 12"),
        ];
        for (changed, expected) in cases {
            let error = LoanPolicy::from_toml(&changed).unwrap_err().to_string();
            assert!(error.starts_with(expected), "{error}");
        }
        let typo = LoanPolicy::from_toml(&text.replace("multiple = 30", "multipel = 30")).unwrap_err();
        assert!(typo.why.contains("multipel"), "{typo}");
    }
}
